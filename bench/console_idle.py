"""The console's cost: CPU of an idle console per screen, and a job's time under it.

Idle: a store with 10 jobs whose newest has 40,000 rejects; the console runs under tmux
(a real terminal) on each screen for --seconds, and its process's CPU is sampled with
psutil (percent of one core). Goal: under 3% on every screen.

Job: --job-rows rows of the sample orders, run headless (`run --no-ui`) and under the
console (`run` in tmux: the monitor follows it), interleaved over --rounds; reports the
job's own elapsed_s (min and median) and the console's CPU seconds. Goal: within 5%.
On a shared machine the spread between runs is larger than that: look at the minimum.

    python bench/console_idle.py [--seconds 30] [--job-rows 2000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ETL = [sys.executable, "-m", "etlconsole"]
SCREENS = {"jobs": None, "rejects": "x", "monitor": "m", "builder": "p"}


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True).stdout.strip()


def start_console(session: str, folder: Path, *args: str) -> psutil.Process:
    tmux("kill-session", "-t", session)
    cmd = " ".join([*ETL, *args])
    tmux("new-session", "-d", "-s", session, "-x", "140", "-y", "45", f"cd {folder} && exec {cmd}")
    return psutil.Process(int(tmux("display", "-p", "-t", session, "#{pane_pid}")))


def stop_console(session: str) -> None:
    tmux("send-keys", "-t", session, "q")
    time.sleep(1.5)
    tmux("kill-session", "-t", session)


def idle_store(folder: Path, rejects: int = 40_000) -> None:
    """10 demo jobs; the newest one's rejects copied until it has ``rejects``."""
    subprocess.run([*ETL, "demo", "--no-ui", "--rows", "2000"], cwd=folder, check=True,
                   capture_output=True)
    for _ in range(9):
        subprocess.run([*ETL, "run", "etlconsole-demo/pipeline.toml", "--no-ui"], cwd=folder,
                       check=True, capture_output=True)
    conn = sqlite3.connect(folder / ".etlconsole" / "state.db")
    job = conn.execute("SELECT id FROM import_jobs ORDER BY created_at DESC LIMIT 1").fetchone()[0]
    have, k = 0, 1
    while have < rejects:
        conn.execute('INSERT INTO pipeline_rejects (job_id, batch_number, row, phase, rule, '
                     'column_name, message, "values") SELECT job_id, batch_number, row + ? * 2000, '
                     'phase, rule, column_name, message, "values" FROM pipeline_rejects '
                     'WHERE job_id = ? AND row <= 2000', (k, job))
        k += 1
        have = conn.execute("SELECT count(*) FROM pipeline_rejects WHERE job_id = ?",
                            (job,)).fetchone()[0]
    conn.execute("UPDATE import_jobs SET rows_rejected = ? WHERE id = ?", (have, job))
    conn.commit()
    conn.close()


def idle_cpu(folder: Path, key: str | None, seconds: float) -> float:
    proc = start_console("etl-idle", folder, "ui")
    time.sleep(4)
    if key:
        tmux("send-keys", "-t", "etl-idle", key)
    time.sleep(4)
    proc.cpu_percent(None)
    time.sleep(seconds)
    pct = proc.cpu_percent(None)
    stop_console("etl-idle")
    return pct


def last_job(folder: Path) -> dict:
    conn = sqlite3.connect(folder / ".etlconsole" / "state.db")
    row = conn.execute("SELECT id, status, elapsed_s FROM import_jobs ORDER BY created_at DESC "
                       "LIMIT 1").fetchone()
    conn.close()
    return {"id": row[0], "status": row[1], "elapsed_s": row[2]}


def job_headless(folder: Path) -> float:
    res = subprocess.run([*ETL, "run", "etlconsole-demo/pipeline.toml", "--no-ui", "--json"],
                         cwd=folder, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.splitlines()[-1])["elapsed_s"]


def job_console(folder: Path) -> tuple[float, float]:
    before = last_job(folder)["id"]
    proc = start_console("etl-job", folder, "run", "etlconsole-demo/pipeline.toml")
    while True:
        time.sleep(0.5)
        job = last_job(folder)
        if job["id"] != before and job["status"] not in ("running", "pending"):
            break
    t = proc.cpu_times()
    stop_console("etl-job")
    return job["elapsed_s"], t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--job-rows", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("tmux"):
        sys.exit("needs tmux")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        idle_store(folder)
        for name, key in SCREENS.items():
            print(f"idle {name:<8} {idle_cpu(folder, key, args.seconds):5.2f}% of a core "
                  f"over {args.seconds:.0f} s", flush=True)
        if args.job_rows:
            subprocess.run([*ETL, "demo", "--no-ui", "--rows", str(args.job_rows)], cwd=folder,
                           check=True, capture_output=True)
            headless, console, cpu = [], [], []
            for _ in range(args.rounds):
                headless.append(job_headless(folder))
                elapsed, seconds = job_console(folder)
                console.append(elapsed)
                cpu.append(seconds)
            print(f"job {args.job_rows:,} rows  headless s {headless}  console s {console}")
            print(f"  min {min(headless):.2f} vs {min(console):.2f} "
                  f"({min(console) / min(headless) - 1:+.1%}); median "
                  f"{statistics.median(headless):.2f} vs {statistics.median(console):.2f} "
                  f"({statistics.median(console) / statistics.median(headless) - 1:+.1%}); "
                  f"console CPU s per run {[round(c, 2) for c in cpu]}")


if __name__ == "__main__":
    main()
