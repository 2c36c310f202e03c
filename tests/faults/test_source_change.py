"""A source file that changed since the job started is refused on resume (exit 2, one line
naming the file) and nothing is touched; restored byte for byte, it resumes normally."""

from __future__ import annotations

import os
import shutil
import sqlite3


from .faultkit import (Lab, assert_conservation, digest, file_sha, ledger, run_and_kill,
                       stage_tables)


def _append_line(data: bytes) -> bytes:
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[1]
    return data + last + b"\n"


def _modify_middle(data: bytes) -> bytes:
    """Same size: one digit in the middle of the file becomes another digit."""
    i = len(data) // 2
    while not data[i:i + 1].isdigit():
        i += 1
    digit = b"7" if data[i:i + 1] != b"7" else b"3"
    return data[:i] + digit + data[i + 1:]


def _truncate_last_line(data: bytes) -> bytes:
    return data[:data.rstrip(b"\n").rfind(b"\n") + 1]


EDITS = {"appended line": _append_line, "modified bytes": _modify_middle,
         "truncated": _truncate_last_line}


def _copy_source(orders_csv, folder):
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "orders.csv"
    shutil.copyfile(orders_csv, src)
    return src


def test_changed_source_is_refused_then_restored_source_resumes(reference, orders_csv, tmp_path):
    src = _copy_source(orders_csv, tmp_path / "src")
    lab = Lab(tmp_path / "lab", src)
    job = run_and_kill(lab, batches=6, check_status=True)
    original, st = src.read_bytes(), os.stat(src)
    dest_before, tables_before = file_sha(lab.dest), stage_tables(lab.dest)
    job_before = lab.store_job(job)

    for name, edit in EDITS.items():
        src.write_bytes(edit(original))
        res = lab.cli("resume", job, "--json")
        assert res.returncode == 2, f"{name}: {res}"
        assert "Traceback" not in res.stderr + res.stdout
        assert len(res.stderr_lines) == 1, f"{name}: {res}"
        assert str(src) in res.stderr_lines[0] or src.name in res.stderr_lines[0], res.stderr
        assert res.stdout.strip() == ""
        assert file_sha(lab.dest) == dest_before, f"{name}: the destination was touched"
        assert stage_tables(lab.dest) == tables_before
        now = lab.store_job(job)
        for key in ("status", "rows_read", "rows_loaded", "rows_rejected", "resumes"):
            assert now[key] == job_before[key], (name, key, now[key], job_before[key])
        # put the original back, byte for byte and with its mtime
        src.write_bytes(original)
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))

    summary = lab.resume(job)
    assert summary["status"] == "succeeded"
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert summary[key] == reference.summary[key]
    assert_conservation(summary)
    assert digest(lab.dest) == reference.digest
    assert lab.store_rejects(job) == reference.rejects


def test_same_size_middle_edit_with_mtime_kept_is_refused(orders_csv, tmp_path):
    src = _copy_source(orders_csv, tmp_path / "src")
    assert src.stat().st_size > 3 << 20        # the middle is outside the hashed head/tail
    lab = Lab(tmp_path / "lab", src)
    job = run_and_kill(lab, batches=6)
    st = os.stat(src)
    src.write_bytes(_modify_middle(src.read_bytes()))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    dest_before = file_sha(lab.dest)
    res = lab.cli("resume", job, "--json")
    assert res.returncode == 2, str(res)
    assert file_sha(lab.dest) == dest_before


def test_same_size_edit_of_the_committed_part_before_the_whole_file_digest_is_refused(
        reference, orders_csv, tmp_path):
    """Issue 17: killed before the background whole-file digest was recorded, then a digit
    edited (same size, mtime kept) in records the job had committed, outside the hashed
    head and tail: resume must notice it from the proof its batches kept, and refuse."""
    src = _copy_source(orders_csv, tmp_path / "src")
    lab = Lab(tmp_path / "lab", src)
    job = run_and_kill(lab, batches=14, check_status=True)
    # the kill came before the digest thread's write (it is raced on a small file)
    with sqlite3.connect(lab.state) as conn:
        conn.execute("UPDATE import_jobs SET source_digest = NULL WHERE id = ?", (job,))
    conn.close()
    done = max(e[3] for e in ledger(lab.dest, job))      # last committed record
    original, st = src.read_bytes(), os.stat(src)
    at = (1 << 20) + 300_000                             # past the 1 MB head that is hashed
    while not original[at:at + 1].isdigit():
        at += 1
    record = original[:at].count(b"\n")                  # the header is line 0
    assert record < done, (record, done)
    assert at < len(original) - (1 << 20)                # before the hashed tail
    digit = b"7" if original[at:at + 1] != b"7" else b"3"
    src.write_bytes(original[:at] + digit + original[at + 1:])
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    dest_before, job_before = file_sha(lab.dest), lab.store_job(job)

    res = lab.cli("resume", job, "--json")
    assert res.returncode == 2, str(res)
    assert "Traceback" not in res.stderr + res.stdout
    assert len(res.stderr_lines) == 1 and res.stderr_lines[0].startswith("error:"), str(res)
    line = res.stderr_lines[0]
    assert str(src) in line and "changed" in line and job in line, line
    assert file_sha(lab.dest) == dest_before, "the destination was touched"
    now = lab.store_job(job)
    for key in ("status", "rows_read", "rows_loaded", "rows_rejected", "resumes"):
        assert now[key] == job_before[key], (key, now[key], job_before[key])

    src.write_bytes(original)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    summary = lab.resume(job)
    assert summary["status"] == "succeeded"
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert summary[key] == reference.summary[key]
    assert digest(lab.dest) == reference.digest
    assert lab.store_rejects(job) == reference.rejects
