"""kill -9 during a replay of fixed rejects, then the same replay again: no duplicates, no
gaps, and the job's counters add up at every step (issue 16, ADR 0016).

The replay runs in batches of 10 rows (38 batches for the demo's 380 fixable rows), so a
kill lands between batches, inside a destination commit (hot journal), or between the
destination's commit and the state store's. The next replay settles the unfinished one
from the destination's ledger before it looks at the rows.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .faultkit import (hot_journal, kill9, kill_inside_commit, make_env, recover_journal,
                       wait_for)

FIX_SCRIPT = Path(__file__).resolve().parents[1] / "e2e" / "fix_demo_rejects.py"
SMALL = {"PIPELINE_BATCH_SIZE_MIN": "10", "PIPELINE_BATCH_SIZE_MAX": "10"}


def cli(folder: Path, *args, env=None, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "etlconsole", "--state", "state.db", *map(str, args)],
                          cwd=folder, env=make_env(env), capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def spawn(folder: Path, *args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "etlconsole", "--state", "state.db",
                             *map(str, args)], cwd=folder, env=make_env(env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def store(folder: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(str(folder / "state.db"), timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:      # not migrated yet
        return []
    finally:
        conn.close()


def replay_batches_committed(folder: Path) -> int:
    rows = store(folder, "SELECT count(*) FROM pipeline_batches WHERE status = 'COMMITTED' "
                         "AND json_extract(error_details, '$.replay') IS NOT NULL")
    return rows[0][0] if rows else 0


def counters(folder: Path, job: str) -> dict:
    j = json.loads(cli(folder, "show", job, "--json").stdout.splitlines()[-1])
    assert j["rows_read"] == j["rows_loaded"] + j["rows_rejected"], j
    return j


def warehouse(folder: Path) -> tuple:
    conn = sqlite3.connect(str(folder / "etlconsole-demo" / "warehouse.db"))
    try:
        return conn.execute("SELECT count(*), count(DISTINCT id) FROM orders").fetchone()
    finally:
        conn.close()


@pytest.mark.parametrize("where", ["inside_commit", "between_batches"])
def test_kill_during_replay_then_replay_again(tmp_path, where):
    folder = tmp_path
    job = json.loads(cli(folder, "demo", "--no-ui", "--json").stdout.splitlines()[-1])["job_id"]
    cli(folder, "rejects", job, "--fix", "fix.csv")
    subprocess.run([sys.executable, str(FIX_SCRIPT), "fix.csv", "fixed.csv", "20"], cwd=folder,
                   check=True)
    db = folder / "etlconsole-demo" / "warehouse.db"
    for _ in range(3):
        proc = spawn(folder, "replay", job, "fixed.csv", "--json", env=SMALL)
        wait_for(lambda proc=proc: proc.poll() is not None or replay_batches_committed(folder) >= 3,
                 every=0.002)
        killed = kill_inside_commit(proc, db) if where == "inside_commit" else kill9(proc)
        if killed:
            break
        # the replay ended first (or the kill missed the commit): undo it and try again
        last = store(folder, "SELECT max(number) FROM pipeline_replays WHERE job_id = ?", (job,))[0][0]
        cli(folder, "rollback", job, "--replay", last, "--yes")
    else:
        pytest.skip("the replay ended before it could be killed, three times")
    if where == "inside_commit":
        assert hot_journal(db)
    # After the kill: whatever committed counts once, the counters add up.
    j = counters(folder, job)
    assert j["rows_resolved"] + j["rows_rejected"] == 400
    count, distinct = warehouse(folder)
    assert count == distinct
    # The same file again: the unfinished replay is settled first; nothing twice.
    res = cli(folder, "replay", job, "fixed.csv", "--json", env=SMALL)
    s = json.loads(res.stdout.splitlines()[-1])
    assert s["rows_loaded"] + s["rows_refused"] == 380, s
    assert s["rows_rejected"] == 20, s
    assert warehouse(folder) == (19_980, 19_980)
    j = counters(folder, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (19_980, 20, 380)
    statuses = [r["status"] for r in j["replays"]]
    assert statuses[-1] == "succeeded" and "failed" in statuses, statuses
    # Every loaded row of the replays is a resolved reject, and the other way round.
    resolved = store(folder, "SELECT row FROM pipeline_rejects WHERE job_id = ? AND resolved_at "
                             "IS NOT NULL ORDER BY row", (job,))
    conn = sqlite3.connect(str(db))
    try:
        replayed = conn.execute("SELECT o.id FROM orders o JOIN _etl_loads l ON l.job_id = "
                                "o._etl_job_id AND l.batch = o._etl_batch WHERE l.rows <= 10 "
                                "ORDER BY o.id").fetchall()
    finally:
        conn.close()
    assert len(replayed) == len(resolved) == 380
    # Undoing every replay gives the job's own load back.
    for r in reversed(j["replays"]):
        if r["status"] != "rolled_back" and r["batch_first"] is not None:
            cli(folder, "rollback", job, "--replay", r["number"], "--yes")
    assert warehouse(folder) == (19_600, 19_600)
    j = counters(folder, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (19_600, 400, 0)


def branched_pipeline(folder: Path) -> Path:
    """The demo's pipeline with its load replaced by two branches: cancelled orders into a
    Parquet folder, every order into the warehouse."""
    from etlconsole.sample import SAMPLE_PIPELINE_TOML as text
    load = text[text.index("[[phases]]\ntype = \"load\""):]
    text = text.replace(load, '''[[phases]]
type = "branch"

[[phases.branches]]
name = "cancelled"
filter = "status == 'cancelled'"

[[phases.branches.phases]]
type = "load"
destination = "parquet"
path = "cancelled"

[[phases.branches]]
name = "all"

[[phases.branches.phases]]
type = "load"
destination = "sqlite"
path = "warehouse.db"
table = "orders"
''')
    path = folder / "etlconsole-demo" / "branched.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_kill_during_a_branched_replay(tmp_path):
    """Two destinations per replay batch: a kill can land between their commits. The next
    replay takes the half-written batch out of the destination that has it; in the end
    each destination holds every replayed row once."""
    import pyarrow.dataset as ds
    folder = tmp_path
    cli(folder, "demo", "--no-ui", "--json")
    (folder / "etlconsole-demo" / "warehouse.db").unlink()
    pipeline = branched_pipeline(folder)
    job = json.loads(cli(folder, "run", pipeline, "--no-ui", "--json").stdout.splitlines()[-1])["job_id"]
    cli(folder, "rejects", job, "--fix", "fix.csv")
    subprocess.run([sys.executable, str(FIX_SCRIPT), "fix.csv", "fixed.csv", "20"], cwd=folder,
                   check=True)
    # cancelled rows among the fixed ones, so both destinations take replay rows
    from etlconsole.engine.destinations import committed
    db = folder / "etlconsole-demo" / "warehouse.db"
    proc = spawn(folder, "replay", job, "fixed.csv", "--set", "status=cancelled", "--where",
                 "row % 2 == 0", "--json", env=SMALL)
    wait_for(lambda: proc.poll() is not None or replay_batches_committed(folder) >= 3, every=0.002)
    # Inside the warehouse's commit: the Parquet branch (written first) holds the batch.
    killed = kill_inside_commit(proc, db)
    if not killed:
        pytest.skip("the replay ended before it could be killed inside a commit")
    recover_journal(db)                   # the interrupted commit is rolled back
    half = ({e.batch for e in committed(folder / "etlconsole-demo" / "cancelled", job, "parquet")}
            - {e.batch for e in committed(db, job, "sqlite")})
    assert len(half) == 1, half           # one batch in one destination only
    res = cli(folder, "replay", job, "fixed.csv", "--set", "status=cancelled", "--where",
              "row % 2 == 0", "--json", env=SMALL)
    s = json.loads(res.stdout.splitlines()[-1])
    assert s["status"] == "succeeded", s
    res = cli(folder, "replay", job, "fixed.csv", "--json", env=SMALL)
    j = counters(folder, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (19_980, 20, 380), j
    assert warehouse(folder) == (19_980, 19_980)
    conn = sqlite3.connect(str(folder / "etlconsole-demo" / "warehouse.db"))
    try:
        cancelled = sorted(r[0] for r in conn.execute("SELECT id FROM orders WHERE status = 'cancelled'"))
    finally:
        conn.close()
    parts = ds.dataset(str(folder / "etlconsole-demo" / "cancelled"), format="parquet").to_table()
    assert sorted(parts.column("id").to_pylist()) == cancelled
    assert j["replays"][0]["status"] == "failed"
