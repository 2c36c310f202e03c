"""A source of many files, some compressed, killed with kill -9 mid-job and resumed, ends
with the table and the rejects of one uninterrupted run of the same records as one file
(ADR 0025); a file truncated halfway fails the job resumably, and once replaced by a
whole copy the job resumes to that same table."""

from __future__ import annotations

import gzip
from pathlib import Path

from e2e.helpers import compress, records_of      # the drop's files, as the e2e tests make them

from .faultkit import Lab, assert_conservation, digest, run_and_kill

# orders.csv cut into six files: 2 gzip, 1 bz2, 1 zstd, 1 lz4 (the lz4 tool's frame), 1 plain
NAMES = ["orders_1.csv.gz", "orders_2.csv", "orders_3.csv.bz2", "orders_4.csv.gz",
         "orders_5.csv.zst", "orders_6.csv.lz4"]


def split_into_drop(source: Path, folder: Path) -> list[tuple[Path, int]]:
    """The file's records in six files with its header each; (path, records) per file."""
    folder.mkdir(parents=True, exist_ok=True)
    header, *records = records_of(source.read_bytes())
    cuts = [0, 3_000, 11_000, 17_500, 26_000, 33_333, len(records)]
    out = []
    for name, a, b in zip(NAMES, cuts, cuts[1:], strict=False):
        path = folder / name
        path.write_bytes(compress(header + b"".join(records[a:b]), name))
        out.append((path, b - a))
    return out


def test_kill_mid_drop_then_resume_matches_one_uninterrupted_file(reference, orders_csv, tmp_path):
    drop = tmp_path / "drop"
    split_into_drop(orders_csv, drop)
    lab = Lab(tmp_path / "lab", drop / "orders_*")
    job = run_and_kill(lab, batches=7, check_status=True)    # in the third file or later
    summary = lab.resume(job)
    assert summary["status"] == "succeeded", summary
    assert_conservation(summary)
    assert digest(lab.dest) == reference.digest
    assert lab.rejects(job) == reference.rejects
    assert summary["rows_read"] == reference.summary["rows_read"]


def test_truncated_gzip_fails_resumably_and_resumes_once_whole(reference, orders_csv, tmp_path):
    drop = tmp_path / "drop"
    split_into_drop(orders_csv, drop)
    damaged = drop / "orders_4.csv.gz"
    whole = damaged.read_bytes()
    damaged.write_bytes(whole[: len(whole) // 2])
    lab = Lab(tmp_path / "lab", drop)
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json")
    assert res.returncode == 1, res
    assert "Traceback" not in res.stderr
    summary = res.last_json()
    assert summary["status"] == "failed"
    assert str(damaged) in summary["error"] and "Truncated" in summary["error"], summary
    # never silently partial: the job failed, short of the records of the whole drop
    assert summary["rows_read"] < reference.summary["rows_read"], summary
    assert lab.store_job(summary["job_id"])["resumable"] == 1
    shown = lab.cli("show", summary["job_id"])
    assert "failed" in shown.stdout and str(damaged) in shown.stdout

    damaged.write_bytes(whole)                    # the operator copies the file again
    resumed = lab.resume(summary["job_id"])
    assert resumed["status"] == "succeeded", resumed
    assert digest(lab.dest) == reference.digest
    assert lab.rejects(summary["job_id"]) == reference.rejects


def test_edited_loaded_file_is_refused_on_resume(orders_csv, tmp_path):
    """A file wholly loaded before the kill, changed before the resume (same name, other
    content): the resume is refused naming it, before anything is written."""
    drop = tmp_path / "drop"
    files = split_into_drop(orders_csv, drop)
    lab = Lab(tmp_path / "lab", drop / "orders_*")
    job = run_and_kill(lab, batches=7, check_status=True)
    first = files[0][0]
    data = gzip.decompress(first.read_bytes())
    first.write_bytes(gzip.compress(data.replace(b",paid,", b",shipped,", 1)))
    before = digest(lab.dest)
    res = lab.cli("resume", job, "--json")
    assert res.returncode == 2, res
    assert len(res.stderr_lines) == 1 and str(first) in res.stderr_lines[0], res.stderr
    assert digest(lab.dest) == before


def test_kill_mid_single_gzip_file_then_resume(reference, orders_csv, tmp_path):
    """One compressed file: resume proves the decompressed head its batches were read
    from (ADR 0017 over the decompressed stream) and ends with the uninterrupted table."""
    folder = tmp_path / "src"
    folder.mkdir()
    source = folder / "orders.csv.gz"
    source.write_bytes(gzip.compress(orders_csv.read_bytes()))
    lab = Lab(tmp_path / "lab", source)
    job = run_and_kill(lab, batches=6, check_status=True)
    summary = lab.resume(job)
    assert summary["status"] == "succeeded", summary
    assert digest(lab.dest) == reference.digest
    assert lab.rejects(job) == reference.rejects
