"""Recovery benchmark: how long rollback and resume take compared with the load itself.

For a ROWS-row sample orders file (default 1M), interleaved over --rounds:
  load      an uninterrupted `etlconsole run` of the full sample pipeline
  rollback  `etlconsole rollback JOB --yes` of that finished job: it created the table and
            nothing else wrote to it, so the table is dropped whole (ADR 0014)
  resume    into a table that already holds another job's rows, a run killed (SIGKILL)
            once ~80% of the rows are committed, then `resume` (the resume alone is timed)
  rollback by lineage
            `rollback JOB --yes` of that resumed job: the other job's rows stay, so its
            rows are deleted through the lineage index
and checks the resumed job's rows equal the uninterrupted run's, and that the lineage
rollback leaves exactly the other job's rows.

    python bench/recovery_bench.py [--rows 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

COLUMNS = ("id, customer_id, email, customer_name, status, quantity, unit_price, total, "
           "currency, ordered_on, shipped_at, country")


def cli(*args: str, state: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etlconsole", "--state", str(state), *args],
                          capture_output=True, text=True, **kw)


def digest(db: Path, job: str) -> str:
    con = sqlite3.connect(db)
    h = hashlib.sha256()
    for row in con.execute(f"SELECT {COLUMNS} FROM orders WHERE _etl_job_id = ? ORDER BY id", (job,)):
        h.update(repr(row).encode())
    con.close()
    return h.hexdigest()


def count(db: Path) -> int:
    con = sqlite3.connect(db)
    n = con.execute("SELECT count(*) FROM orders").fetchone()[0]
    con.close()
    return n


def committed_rows(db: Path, other: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        n = con.execute("SELECT coalesce(max(row_end), 0) FROM _etl_loads WHERE job_id != ?",
                        (other,)).fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(__file__).parent / "out" / "recovery")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"orders_{args.rows}.csv"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "etlconsole.sample", str(data), str(args.rows),
                        "--seed", "7"], check=True, capture_output=True)
    small = work / "orders_other.csv"
    if not small.exists():
        subprocess.run([sys.executable, "-m", "etlconsole.sample", str(small), "20000",
                        "--seed", "8"], check=True, capture_output=True)
    from etlconsole.sample import SAMPLE_PIPELINE_TOML
    pipeline = work / "pipeline.toml"
    pipeline.write_text(SAMPLE_PIPELINE_TOML.replace("orders.csv", data.name))
    other_pipeline = work / "other.toml"
    other_pipeline.write_text(SAMPLE_PIPELINE_TOML.replace("orders.csv", small.name))
    times: dict[str, list[float]] = {"load": [], "rollback": [], "resume": [], "lineage": []}
    killed_at: list[float] = []
    for rnd in range(args.rounds):
        state = work / f"state{rnd}"
        shutil.rmtree(state, ignore_errors=True)
        ref, crash = work / "ref.db", work / "crash.db"
        for f in (ref, crash):
            f.unlink(missing_ok=True)
        t0 = time.perf_counter()
        out = cli("run", str(pipeline), "--no-ui", "--json", "--dest", str(ref), state=state / "s.db")
        times["load"].append(time.perf_counter() - t0)
        job = json.loads(out.stdout.strip().splitlines()[-1])
        reference = digest(ref, job["job_id"])

        t0 = time.perf_counter()
        cli("rollback", job["job_id"], "--yes", state=state / "s.db", check=True)
        times["rollback"].append(time.perf_counter() - t0)

        other = cli("run", str(other_pipeline), "--no-ui", "--json", "--dest", str(crash),
                    state=state / "s.db")
        other_id = json.loads(other.stdout.strip().splitlines()[-1])["job_id"]
        others = count(crash)
        proc = subprocess.Popen([sys.executable, "-m", "etlconsole", "--state", str(state / "s.db"),
                                 "run", str(pipeline), "--no-ui", "--dest", str(crash)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while committed_rows(crash, other_id) < 0.8 * args.rows and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at.append(committed_rows(crash, other_id) / args.rows)
        t0 = time.perf_counter()
        res = cli("resume", "last", "--json", state=state / "s.db")
        times["resume"].append(time.perf_counter() - t0)
        summary = json.loads(res.stdout.strip().splitlines()[-1])
        if summary["status"] != "succeeded" or digest(crash, summary["job_id"]) != reference:
            print("FAIL: the resumed destination differs from the uninterrupted run", file=sys.stderr)
            return 1
        t0 = time.perf_counter()
        cli("rollback", summary["job_id"], "--yes", state=state / "s.db", check=True)
        times["lineage"].append(time.perf_counter() - t0)
        if count(crash) != others:
            print("FAIL: the lineage rollback did not leave exactly the other job's rows",
                  file=sys.stderr)
            return 1
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"| {args.rows:,} rows | median of {args.rounds} | ratio to load |")
    print("| --- | --- | --- |")
    print(f"| load (uninterrupted run) | {med['load']:.2f} s | 1.00 |")
    print(f"| rollback of the finished job (table dropped) | {med['rollback']:.2f} s | "
          f"{med['rollback'] / med['load']:.2f} |")
    print(f"| rollback of the resumed job by lineage (table shared) | {med['lineage']:.2f} s | "
          f"{med['lineage'] / med['load']:.2f} |")
    print(f"| resume after kill -9 at {statistics.median(killed_at):.0%} committed | "
          f"{med['resume']:.2f} s | {med['resume'] / med['load']:.2f} |")
    print("resumed job's rows identical to the uninterrupted run: yes; the lineage rollback "
          "left exactly the other job's rows: yes")
    (work / "results.json").write_text(json.dumps({"times": times, "killed_at": killed_at}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
