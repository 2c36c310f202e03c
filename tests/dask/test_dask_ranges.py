"""Byte-range parts of one large plain file on Dask (ADR 0029): a file larger than
PIPELINE_PART_SIZE_KB is read by several tasks, each range moved onto record boundaries
the file's quoting proves, and the job loads exactly what a local run of the file loads —
the same rows, the same rejects (file, record, rule), `unique` across ranges included."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest

from daskkit import DropLab, recorded_parts
from etlconsole.engine import extract, sources
from etlconsole.engine.executors import part_files
from etlconsole.engine.executors.parts import part_of
from etlconsole.engine.executors.ranges import PartStream
from etlconsole.errors import JobFailed

PART_KB = 64
RANGES = {"PIPELINE_PART_SIZE_KB": str(PART_KB)}
DUP = 8_000_001          # a valid key in the first range and again in the last one


def _row(order_id: int, name: str = "X Y") -> list[str]:
    return [str(order_id), "1", "x@example.org", name, "new", "1", "1.00", "EUR", "2024-01-01",
            "", "BE", "Ghent", "SKU-00001", ""]


def write_big(folder: Path, rows: int = 3_000) -> Path:
    """One plain file of sample records (~370 KB: 6 ranges of 64 KB) with a key repeated
    across ranges and quoted newlines placed right at the nominal cuts (the first
    newline after each multiple of 64 KB is inside quotes)."""
    from etlconsole.sample import write_orders_csv
    whole = folder / "sample.csv"
    write_orders_csv(whole, rows, seed=21)
    with whole.open(newline="", encoding="latin-1") as f:
        header, *body = list(csv.reader(f))
    whole.unlink()
    body.insert(10, _row(DUP))
    body.append(_row(DUP))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    cut = step = PART_KB << 10
    at = len(",".join(header)) + 1
    for rec in body:
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(rec)
        if at + len(line.getvalue().encode("latin-1")) > cut - 1:
            # the record holding the cut's byte: its name, 60 lines long, holds the first
            # newline after the cut (inside quotes)
            rec = rec[:3] + ["x\n" * 60] + rec[4:]
            line = io.StringIO()
            csv.writer(line, lineterminator="\n").writerow(rec)
            cut += step
        writer.writerow(rec)
        at += len(line.getvalue().encode("latin-1"))
    path = folder / "big" / "orders_00.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(buf.getvalue().encode("latin-1"))
    return path


def _quoted_newline_at_cuts(path: Path) -> bool:
    data = path.read_bytes()
    cuts = range(PART_KB << 10, len(data), PART_KB << 10)
    naive = [data.find(b"\n", c - 1) + 1 for c in cuts]
    return all(data.count(b'"', 0, n) % 2 for n in naive)


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    path = write_big(tmp_path_factory.mktemp("big"))
    assert _quoted_newline_at_cuts(path), "the crafted file lost its quoted newlines at the cuts"
    path.chmod(0o444)
    return path


def _ranges_of(lab: DropLab, job_id: str) -> list[list]:
    """The split the job recorded (its first ``parts`` event: a resume records it again)."""
    splits = [json.loads(d)["split"] for (d,) in lab.store_query(
        "SELECT details FROM pipeline_events WHERE job_id = ? AND event = 'parts' ORDER BY id", (job_id,))]
    assert splits and all(s == splits[0] for s in splits), splits
    return splits[0]


def test_a_large_file_read_in_ranges_loads_the_same_rows_and_rejects_as_local(tmp_path, big, cluster):
    local = DropLab(tmp_path / "local", big.parent)
    expected = local.run_with("--executor", "local")
    lab = DropLab(tmp_path / "dask", big.parent)
    lab.env.update(RANGES)
    got = lab.run_with("--executor", "dask", "--scheduler", cluster.scheduler.address)
    assert got["status"] == "succeeded" and got["parts"] >= 3
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert got[key] == expected[key], key
    assert lab.digest() == local.digest()
    rejects = lab.rejects_of(got["job_id"])
    assert rejects == local.rejects_of(expected["job_id"])
    # the key of the first range is rejected in the last one, as the local run does
    dups = [r for r in rejects if r[2] == "unique" and r[0] == expected["rows_read"]]
    assert dups, "the cross-range duplicate was not rejected at the file's last record"
    # the split recorded with the job, ordered by start; each range's batches in its own range
    split = _ranges_of(lab, got["job_id"])
    assert len(split) == got["parts"] and [s[1] for s in split] == sorted(s[1] for s in split)
    numbers = {part_of(n) for (n,) in lab.store_query(
        "SELECT batch_number FROM pipeline_batches WHERE job_id = ?", (got["job_id"],))}
    assert len(numbers) >= 3
    parts = recorded_parts(lab, got["job_id"])
    assert sum(p["records"] for p in parts) == expected["rows_read"]
    header = len(big.read_bytes().split(b"\n", 1)[0]) + 1
    assert sum(p["bytes_read"] for p in parts) == big.stat().st_size - header     # each byte once


def test_a_drop_with_ranges_tells_each_reject_by_file_and_record_as_local(tmp_path, drop, cluster):
    local = DropLab(tmp_path / "local", drop)
    expected = local.run_with("--executor", "local")
    lab = DropLab(tmp_path / "dask", drop)
    lab.env.update({"PIPELINE_PART_SIZE_KB": "100"})
    got = lab.run_with("--executor", "dask", "--scheduler", cluster.scheduler.address)
    assert got["status"] == "succeeded" and got["parts"] > 6       # the plain files split
    assert lab.digest() == local.digest()
    assert lab.rejects_of(got["job_id"]) == local.rejects_of(expected["job_id"])
    told = [sorted((Path(r["file"]).name, r["file_record"], r["rule"], r["column"] or "")
                   for r in x.cli("rejects", j, "--json").json_lines())
            for x, j in ((lab, got["job_id"]), (local, expected["job_id"]))]
    assert told[0] == told[1]
    # each file's records as the local run recorded them (show's per-file lines)
    files = [(Path(f["path"]).name, f["first_record"], f["records"])
             for f in lab.job_files(got["job_id"])]
    assert files == [(Path(f["path"]).name, f["first_record"], f["records"]) for f in
                     local.job_files(expected["job_id"])]


# -- the boundaries, in-process ------------------------------------------------------------
def _records(f: sources.SourceFile, dialect, resync: bool = True, points=None) -> list[tuple]:
    out = []
    for c in PartStream(f, dialect, block_size=4096, chunk_rows=500, resync=resync, points=points):
        out += list(zip(*(c.batch.column(n).to_pylist() for n in dialect.names), strict=True))
    return out


def test_ranges_move_past_quoted_newlines_and_stop_where_quoting_cannot_be_followed(tmp_path):
    rows = [[str(i), "a\nb" if i % 3 == 0 else "p,q" if i % 3 == 1 else 'x"y', "z"] for i in range(400)]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows([["id", "v", "k"], *rows])
    data = buf.getvalue().encode()
    for bad in (False, True):
        # a quote in the middle of an unquoted field: readers differ, nothing after it is cut
        body = data.replace(b"\r\n200,", b'\r\n200x"y,', 1) if bad else data
        assert (body != data) == bad
        path = tmp_path / f"f{bad:d}.csv"
        path.write_bytes(body)
        (whole,) = sources.resolve(str(path))
        dialect = extract.sniff(whole)
        expected = _records(whole, dialect)
        for size in (7, 64, 333, 1000):
            cuts = list(range(0, len(body), size))
            # each range finding its boundaries, and all taken from one scan of the file
            points = sources.cut_points(whole, cuts[1:], dialect.quote, dialect.delimiter)
            # the same boundaries found by a chain of steps, each scanning on from the last
            since, chained = None, {}
            for c in cuts[1:]:
                found, since = sources.scan_cuts(whole, [c], dialect.quote, dialect.delimiter, since)
                chained |= found
            assert chained == points, (bad, size)
            for given in (None, points):
                got = []
                for a in cuts:
                    part = whole.part(a, a + size if a + size < len(body) else None)
                    got += _records(part, dialect, points=given)
                assert got == expected, (bad, size, given is None)
        if bad:     # the range holding the odd quote reads to the end; those after are empty
            mid = len(body) // 2
            after = sources.resync(whole.part(mid + 500, mid + 600), dialect.quote, dialect.delimiter)
            assert after.nothing


def test_the_end_check_fails_a_range_that_would_cut_a_record(tmp_path):
    """Without the proven boundaries (a naive cut at the first newline), a range ending
    inside a quoted field is caught by the reader's check at its end: the job fails,
    naming the file and the bytes, before the split record reaches a batch."""
    rows = [[str(i), "one\ntwo\nthree" if i == 50 else "plain", "z"] for i in range(100)]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["id", "v", "k"], *rows])
    path = tmp_path / "q.csv"
    path.write_bytes(buf.getvalue().encode())
    (whole,) = sources.resolve(str(path))
    dialect = extract.sniff(whole)
    cut = path.read_bytes().index(b"one\n") + 2          # the naive boundary: after "one\n"
    with pytest.raises(JobFailed, match=r"q\.csv: the byte range 0-.* ends inside a quoted field"):
        _records(whole.part(0, cut), dialect, resync=False)
    # proven boundaries: the same cut reads the record whole, in the first range
    first = _records(whole.part(0, cut), dialect)
    assert first[-1] == ("50", "one\ntwo\nthree", "z")
    assert _records(whole.part(cut, None), dialect)[0][0] == "51"


def test_what_is_split_and_what_is_not(tmp_path, drop):
    from etlconsole.engine.plan import make_plan
    from etlconsole.spec import load_spec
    lab = DropLab(tmp_path / "lab", drop)
    plan = make_plan(load_spec(lab.pipeline))
    parts = part_files(plan, 100 << 10)
    by_file = {}
    for p in parts:
        by_file.setdefault(p.path.name, []).append(p)
    assert [len(by_file[n]) for n in sorted(by_file)] == [3, 1, 3, 3, 1, 3]   # gzipped: whole
    assert all(len(ps) == 1 and not ps[0].is_part for n, ps in by_file.items() if n.endswith(".gz"))
    assert part_files(plan, 0) == part_files(plan) == list(plan.files)
    # the recorded split gives the same parts again, whatever the setting says now
    from etlconsole.engine.executors.ranges import split_of
    assert part_files(plan, ranges=split_of(parts)) == parts


def _plan_of(folder: Path, sizes: dict[str, int]):
    """A plan over plain files of about the given sizes (sample records), in name order."""
    from etlconsole.engine.plan import make_plan
    from etlconsole.sample import SAMPLE_PIPELINE_TOML, write_orders_csv
    from etlconsole.spec import load_spec
    folder.mkdir()
    for name, size in sizes.items():
        write_orders_csv(folder / name, max(1, size // 125), seed=len(name) + size)
    text = SAMPLE_PIPELINE_TOML.replace('"orders.csv"', json.dumps(str(folder / "*.csv")))
    (folder / "p.toml").write_text(text, encoding="utf-8")
    return make_plan(load_spec(folder / "p.toml"))


def test_unset_a_large_file_is_cut_only_as_far_as_the_workers_need(tmp_path, monkeypatch):
    """PIPELINE_PART_SIZE_KB unset: 4 parts a worker from the drop (fewer, a whole number,
    for a small one), never a range under the floor (32 MB; 8 KB here), a file near the
    fair share kept whole, ranges of equal size (no sliver at a file's end)."""
    import etlconsole.engine.executors as ex
    monkeypatch.setattr(ex, "AUTO_MIN_PART_BYTES", 8 << 10)
    # more files than the workers need: each whole (a range costs a scan and its ends)
    many = _plan_of(tmp_path / "many", {f"f{k}.csv": 40 << 10 for k in range(8)})
    assert part_files(many, workers=2) == list(many.files)
    # one large file: the workers' 8 parts, equal ranges
    one = _plan_of(tmp_path / "one", {"big.csv": 200 << 10})
    ranges = part_files(one, workers=2)
    size = one.files[0].size
    assert len(ranges) == 8 and all(p.is_part for p in ranges)
    assert [p.start for p in ranges] == [k * -(-size // 8) for k in range(8)] and ranges[-1].end is None
    # one large file among small ones: it alone is cut, by the drop's fair share
    mixed = _plan_of(tmp_path / "mixed", {"a.csv": 120 << 10, "b.csv": 20 << 10, "c.csv": 20 << 10})
    by_file = Counter(p.path.name for p in part_files(mixed, workers=2))
    assert by_file == {"a.csv": 6, "b.csv": 1, "c.csv": 1}
    # a drop too small for 4 ranges a worker: as many whole ones a worker as the floor
    # allows (7.3 ranges of 8 KB would leave one worker a range more: 6, 3 each)
    small = _plan_of(tmp_path / "small", {"s.csv": 58 << 10})
    assert round(small.files[0].size / (8 << 10)) == 7       # ranges of the floor: odd
    assert len(part_files(small, workers=2)) == 6
    # the floor: no range under it, whatever the workers
    assert len(part_files(one, workers=64)) == round(size / (8 << 10))
    # the setting set: ranges of that size, whatever the workers
    assert len(part_files(many, 16 << 10)) == 8 * 3


def test_unset_the_job_records_the_split_it_cut_for_its_cluster(tmp_path, drop, cluster):
    """PIPELINE_PART_SIZE_KB unset, the driver cuts once it knows the cluster's threads
    and records the split in the job's ``parts`` event before any part runs (what a
    resume runs again); the drop's small files are a part each."""
    lab = DropLab(tmp_path / "lab", drop)
    got = lab.run_with("--executor", "dask", "--scheduler", cluster.scheduler.address)
    assert got["status"] == "succeeded" and got["parts"] == 6
    [(details,)] = lab.store_query("SELECT details FROM pipeline_events WHERE job_id = ? AND "
                                   "event = 'parts'", (got["job_id"],))
    recorded = json.loads(details)
    assert recorded["split"] == [[i, 0, None] for i in range(6)] and recorded["parts"] == 6
    assert recorded["threads"] == sum(cluster.nthreads().values()) >= 1


# -- faults with ranges --------------------------------------------------------------------
BIG_RANGES = {"PIPELINE_PART_SIZE_KB": "256"}     # the big drop's plain files: 3 ranges each


@pytest.fixture(scope="module")
def reference(tmp_path_factory, big_drop):
    lab = DropLab(tmp_path_factory.mktemp("ref"), big_drop)
    summary = lab.run_with("--executor", "local")
    return summary, lab.digest(), lab.rejects_of(summary["job_id"])


def test_the_driver_killed_then_resumed_with_ranges_is_exactly_once(tmp_path, big_drop, reference):
    """The driver is killed with -9 once a range is recorded and a later one has batches
    committed; resume — told a different part size, which it must ignore — runs the
    split the job recorded and ends with the uninterrupted run's table and rejects."""
    import psutil
    from daskkit import SMALL_BATCHES, job_id_of, ledger_batches, wait_until
    from faults.faultkit import kill9
    expected, digest, rejects = reference
    lab = DropLab(tmp_path / "lab", big_drop)
    lab.env.update(SMALL_BATCHES | BIG_RANGES)
    proc = lab.spawn("run", lab.pipeline, "--no-ui", "--json", "--executor", "dask", "--workers", "2")

    def mid_job() -> bool:      # a range recorded, and one not recorded half way (~10 batches each)
        job_id = job_id_of(lab)
        if job_id is None or proc.poll() is not None:
            return proc.poll() is not None
        done = {p["part"] for p in recorded_parts(lab, job_id)}
        held = Counter(part_of(n) for n in ledger_batches(lab.out) if part_of(n) not in done)
        return bool(done) and any(2 <= n <= 5 for n in held.values())

    wait_until(mid_job, what="a range recorded and another one's batches committed")
    assert proc.poll() is None, "the job ended before the driver could be killed"
    children = psutil.Process(proc.pid).children(recursive=True)
    kill9(proc)
    wait_until(lambda: not [c for c in children if c.is_running() and c.status() != "zombie"],
               timeout=30, what="the workers of the killed driver to die")
    job_id = job_id_of(lab)
    split = _ranges_of(lab, job_id)
    assert len(split) == 14          # 4 plain files x 3 ranges, 2 gzipped files whole
    before = ledger_batches(lab.out)
    done = {p["part"] for p in recorded_parts(lab, job_id)}
    pending = {n for n in before if part_of(n) not in done}     # committed, their range not recorded
    assert pending, "every range with committed batches was recorded before the kill"
    res = lab.cli("resume", job_id, "--json", "--workers", "2", env={"PIPELINE_PART_SIZE_KB": "0"})
    assert res.returncode == 0, str(res)
    got = res.last_json()
    assert got["status"] == "succeeded" and got["parts"] == 14
    assert (got["rows_loaded"], got["rows_rejected"]) == (expected["rows_loaded"], expected["rows_rejected"])
    assert lab.digest() == digest
    assert lab.rejects_of(job_id) == rejects
    skipped = {n for p in recorded_parts(lab, job_id) for n in p["skipped"]}
    assert pending <= skipped <= set(before)     # what the ledger held was not written again


def test_a_worker_killed_mid_range_leaves_the_job_exactly_once(tmp_path, big_drop, reference, cluster):
    from daskkit import SMALL_BATCHES, kill_worker_mid_part, ledger_batches
    expected, digest, rejects = reference
    lab = DropLab(tmp_path / "lab", big_drop)
    lab.env.update(SMALL_BATCHES | BIG_RANGES)
    proc = lab.spawn("run", lab.pipeline, "--no-ui", "--json", "--executor", "dask",
                     "--scheduler", cluster.scheduler.address)
    part = kill_worker_mid_part(cluster, proc, lab, lambda: ledger_batches(lab.out))
    assert proc.wait(timeout=180) == 0, proc.err_path.read_text()[-3000:]
    got = json.loads(proc.out_path.read_text().strip().splitlines()[-1])
    assert got["status"] == "succeeded" and got["parts"] == 14
    assert (got["rows_loaded"], got["rows_rejected"]) == (expected["rows_loaded"], expected["rows_rejected"])
    assert lab.digest() == digest
    assert lab.rejects_of(got["job_id"]) == rejects
    parts = {p["part"]: p for p in recorded_parts(lab, got["job_id"])}
    assert len(parts[part]["skipped"]) >= 2


def test_the_split_a_resume_runs_is_the_jobs_first_recorded_one():
    from etlconsole.engine.executors import recorded_split
    old = [{"event": "executor", "details": {"executor": "dask", "split": [[0, 0, None]]}}]
    assert recorded_split(old) == [[0, 0, None]]               # a job from before `parts`
    new = [{"event": "executor", "details": {"executor": "dask"}},
           {"event": "parts", "details": {"split": [[0, 0, 10], [0, 10, None]]}},
           {"event": "executor", "details": {"executor": "dask"}},
           {"event": "parts", "details": {"split": [[0, 0, None]]}}]
    assert recorded_split(new) == [[0, 0, 10], [0, 10, None]]
    # stopped before its cluster was up: nothing ran, it is cut as a new job is
    assert recorded_split([{"event": "executor", "details": {"executor": "dask"}}]) is None
