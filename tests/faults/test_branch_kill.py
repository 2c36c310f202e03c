"""A branched job (SQLite + Parquet) killed with kill -9, then resumed: each destination
holds exactly the rows of an uninterrupted run (invariant 2, per destination), including
a kill between the two destinations' commits of one batch; rollback undoes both."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from .faultkit import Lab, TIMEOUT, digest, kill9, pipeline_text, run_and_kill, wait_for

BRANCHES = '''
[[phases]]
type = "branch"

[[phases.branches]]
name = "cancelled"
filter = "status == 'cancelled'"

[[phases.branches.phases]]
type = "map"
columns = { id = "id", status = "status", total = "total" }

[[phases.branches.phases]]
type = "load"
destination = "parquet"
path = "cancelled"

[[phases.branches]]
name = "all"

[[phases.branches.phases]]
type = "load"
path = "warehouse.db"
table = "orders"
'''


def branched(lab: Lab, source: Path) -> Path:
    text = pipeline_text(source)
    path = lab.folder / "branched.toml"
    path.write_text(text[: text.rindex("[[phases]]")] + BRANCHES, encoding="utf-8")
    return path


def parquet_rows(folder: Path) -> list[tuple]:
    files = sorted(str(p) for p in folder.glob("*.parquet"))
    if not files:
        return []
    return sorted(tuple(r.values()) for r in ds.dataset(files, format="parquet").to_table().to_pylist())


def parquet_batches(folder: Path) -> list[int]:
    return sorted(int(p.stem.rsplit("-", 1)[1]) for p in folder.glob("*.parquet"))


def sqlite_batches(db: Path, job: str) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT batch FROM _etl_loads WHERE job_id = ? "
                                           "ORDER BY batch", (job,))]
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def rejects(lab: Lab, job: str) -> Counter:
    res = lab.cli("rejects", job, "--json")
    assert res.returncode == 0, str(res)
    return Counter((r["row"], r["phase"], r["rule"], r["column"]) for r in
                   (json.loads(line) for line in res.stdout.splitlines() if line.strip()))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, orders_csv) -> dict:
    lab = Lab(tmp_path_factory.mktemp("ref-branched"), orders_csv)
    summary = lab.run(branched(lab, orders_csv))
    rows = parquet_rows(lab.folder / "cancelled")
    assert rows and all(r[1] == "cancelled" for r in rows)
    return {"summary": summary, "sqlite": digest(lab.dest), "parquet": rows,
            "rejects": rejects(lab, summary["job_id"]),
            "batches": summary["batches"]}


def assert_like_reference(lab: Lab, job: str, summary: dict, reference: dict) -> None:
    assert summary["status"] == "succeeded", summary
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert summary[key] == reference["summary"][key], key
    assert digest(lab.dest) == reference["sqlite"]
    assert parquet_rows(lab.folder / "cancelled") == reference["parquet"]
    n = len(sqlite_batches(lab.dest, job))
    assert parquet_batches(lab.folder / "cancelled") == list(range(1, n + 1))   # one part per batch
    assert rejects(lab, job) == reference["rejects"]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill9_then_resume_branched_is_exactly_once_per_destination(tmp_path, orders_csv,
                                                                     reference, seed):
    rng = random.Random(seed)
    lab = Lab(tmp_path, orders_csv)
    job = run_and_kill(lab, branched(lab, orders_csv), batches=rng.randint(1, reference["batches"] - 3),
                       extra_delay=rng.uniform(0, 0.3))
    if seed == 4:        # kill the resume too
        known = lab.job_ids()
        proc = lab.spawn("resume", job, "--json")
        time.sleep(rng.uniform(0.2, 0.8))
        kill9(proc)                 # may miss: the resume may have finished already
        assert lab.job_ids() == known
    summary = lab.resume(job)
    if summary.get("nothing_to_do"):
        summary = lab.cli("show", job, "--json").last_json()
    assert_like_reference(lab, job, summary, reference)
    lab.rollback(job)
    assert not (lab.folder / "cancelled").exists()
    assert digest(lab.dest).rows == 0


LOCK = '''
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
'''


def test_kill_between_the_two_destinations_commits(tmp_path, orders_csv, reference):
    """SQLite is locked by another process after a few batches: Parquet commits the next
    batch, SQLite waits (retrying) — the kill lands between the two commits of one batch."""
    lab = Lab(tmp_path, orders_csv)
    pipeline = branched(lab, orders_csv)
    env = {"PIPELINE_TRANSACTION_TIMEOUT_MS": "100", "PIPELINE_BATCH_RETRY_ATTEMPTS": "50",
           "PIPELINE_BATCH_RETRY_DELAY_MS": "50"}
    known = lab.job_ids()
    proc = lab.spawn("run", pipeline, "--no-ui", "--json", env=env)
    wait_for(lambda: lab.committed_in_store(known) >= 3 or proc.poll() is not None,
             timeout=TIMEOUT, every=0.003)
    locker = subprocess.Popen([sys.executable, "-c", LOCK, str(lab.dest)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    [job] = lab.job_ids() - known
    held = len(sqlite_batches(lab.dest, job))
    wait_for(lambda: len(parquet_batches(lab.folder / "cancelled")) > held, timeout=TIMEOUT)
    time.sleep(0.3)
    assert proc.poll() is None and kill9(proc)
    locker.communicate("\n", timeout=30)
    ahead, behind = parquet_batches(lab.folder / "cancelled"), sqlite_batches(lab.dest, job)
    assert len(ahead) == len(behind) + 1, (ahead, behind)     # one batch in Parquet only
    summary = lab.resume(job)
    assert_like_reference(lab, job, summary, reference)
