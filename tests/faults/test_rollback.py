"""Rollback is exact (invariant 3) and survives kill -9 (idempotent); nothing is orphaned
(invariant 4)."""

from __future__ import annotations

import json
import os
import random
import time

import pytest

from .faultkit import (ROWS, TABLE, Lab, assert_conservation, digest, exact_state, hot_journal,
                       kill9, ledger, make_hand_table, run_and_kill, snapshot_of,
                       stage_tables, table_names, user_tables, wait_for)


def etl_bookkeeping(db, job_id: str) -> list:
    """Every trace the job left in the destination's bookkeeping tables."""
    with snapshot_of(db) as conn:
        found = []
        for t in ("_etl_loads", "_etl_tables"):
            if t in table_names(conn):
                found += conn.execute(f"SELECT * FROM {t} WHERE job_id = ?", (job_id,)).fetchall()
        return found


# -- 2. kill -9 during rollback, then rollback again ------------------------------------
def _journal_seen(db, proc):
    return proc.poll() is not None or os.path.exists(str(db) + "-journal")


def kill_rollback(lab: Lab, job: str, moment: str, rng: random.Random) -> str:
    """Start `rollback JOB --yes` and kill -9 it at the given kind of moment."""
    proc = lab.spawn("rollback", job, "--yes", "--json")
    journal = str(lab.dest) + "-journal"
    if moment == "random":                  # anywhere in the process's life
        time.sleep(rng.uniform(0.3, 1.0))
    elif moment == "in-commit":             # the journal is hot: the commit is under way
        wait_for(lambda: proc.poll() is not None or hot_journal(lab.dest), every=0.0001)
    elif moment == "after-commit":          # destination done, state store not yet
        wait_for(lambda: _journal_seen(lab.dest, proc), every=0.0002)
        wait_for(lambda: proc.poll() is not None or not os.path.exists(journal), every=0.0001)
    killed = kill9(proc)
    return f"{moment}: {'killed' if killed else 'finished first'}" + (
        ", hot journal left" if hot_journal(lab.dest) else "")


@pytest.mark.parametrize("moment", ["random", "in-commit", "after-commit"])
def test_kill9_during_rollback_then_rollback_again(moment, orders_csv, small_csv, tmp_path):
    rng = random.Random(f"rollback-kill-{moment}")
    lab = Lab(tmp_path, orders_csv)
    other = lab.write_pipeline("other.toml", small_csv)
    first = lab.run(other)                       # another job's rows were there before
    before = exact_state(lab.dest)
    big = lab.run()["job_id"]
    assert count_jobs_rows(lab, big) == count_jobs_rows_from_store(lab, big) > 30_000

    note = kill_rollback(lab, big, moment, rng)
    print(note)
    state = lab.store_job(big)["status"]
    assert state in ("succeeded", "rolled_back"), state
    if state == "succeeded":
        # killed before the state store heard of it: the destination is either untouched
        # or entirely rolled back -- never half
        now = digest(lab.dest, where=f"WHERE _etl_job_id = '{big}'")
        assert now.rows in (0, count_jobs_rows_from_store(lab, big)), now.short()

    res = lab.rollback(big)
    assert res.last_json()["status"] == "rolled_back"
    assert exact_state(lab.dest) == before
    assert etl_bookkeeping(lab.dest, big) == []
    assert len(ledger(lab.dest, first["job_id"])) == first["batches"]
    assert not stage_tables(lab.dest)
    assert not (lab.state.parent / "jobs" / big).exists()
    assert lab.store_job(big)["status"] == "rolled_back"
    if moment == "after-commit":
        # idempotent: once more changes nothing
        again = lab.rollback(big)
        assert again.last_json()["rows"] == 0
        assert exact_state(lab.dest) == before


def count_jobs_rows(lab: Lab, job: str) -> int:
    return digest(lab.dest, where=f"WHERE _etl_job_id = '{job}'").rows


def count_jobs_rows_from_store(lab: Lab, job: str) -> int:
    return lab.store_job(job)["rows_loaded"]


# -- 3. exact with rows of other origins in the same table ------------------------------
@pytest.mark.parametrize("mode_b", ["append", "atomic"])
def test_rollback_leaves_hand_rows_and_other_jobs_exactly(mode_b, orders_csv, small_csv,
                                                          tmp_path, reference):
    lab = Lab(tmp_path, orders_csv, mode=mode_b)
    make_hand_table(lab.dest, rows=60)
    hand = digest(lab.dest)
    other = lab.write_pipeline("other.toml", small_csv)      # job A: append
    a = lab.run(other)
    assert digest(lab.dest, where="WHERE _etl_job_id IS NULL") == hand   # lineage added, rows kept
    before = exact_state(lab.dest)
    ledger_a = ledger(lab.dest, a["job_id"])

    b = lab.run()                                             # job B, the shared file
    assert b["rows_loaded"] == reference.summary["rows_loaded"]
    assert digest(lab.dest, where=f"WHERE _etl_job_id = '{b['job_id']}'") == reference.digest
    assert digest(lab.dest).rows == hand.rows + a["rows_loaded"] + b["rows_loaded"]

    res = lab.rollback(b["job_id"])
    out = res.last_json()
    assert out["rows"] == b["rows_loaded"], out
    assert exact_state(lab.dest) == before
    assert digest(lab.dest, where="WHERE _etl_job_id IS NULL") == hand
    assert ledger(lab.dest, a["job_id"]) == ledger_a
    assert etl_bookkeeping(lab.dest, b["job_id"]) == []
    assert user_tables(lab.dest) == [TABLE] and not stage_tables(lab.dest)
    # and A can still be rolled back exactly: only the hand rows stay, and the lineage
    # columns A added are gone again
    lab.rollback(a["job_id"])
    assert digest(lab.dest) == hand
    assert digest(lab.dest).rows == hand.rows
    schema_sql = exact_state(lab.dest)[TABLE][0]
    assert "_etl_job_id" not in schema_sql and "_etl_batch" not in schema_sql, schema_sql


# -- 4. rollback --to a middle checkpoint, then resume ----------------------------------
@pytest.mark.parametrize("case", ["append", "atomic-killed"])
def test_rollback_to_middle_checkpoint_then_resume(case, references, orders_csv, tmp_path):
    mode = case.split("-")[0]
    ref = references[mode]
    lab = Lab(tmp_path, orders_csv, mode=mode)
    if case.endswith("killed"):
        job = run_and_kill(lab, batches=12)
    else:
        job = lab.run()["job_id"]
    cps = lab.checkpoints(job)
    assert len(cps) >= 2, cps
    cp = cps[len(cps) // 2 - 1] if case.endswith("killed") else cps[len(cps) // 2]
    batch, last_row = cp["checkpoint_data"]["batch"], cp["checkpoint_data"]["last_row"]
    assert 0 < last_row < ROWS

    dry = lab.cli("rollback", job, "--to", cp["id"], "--dry-run", "--json")
    assert dry.returncode == 0, str(dry)
    expected_gone = (digest(lab.dest).rows if mode == "append" or not case.endswith("killed")
                     else digest(lab.dest, table=stage_tables(lab.dest)[0]).rows) - \
        digest(ref.dest, where=f"WHERE _etl_batch <= {batch}").rows
    assert dry.last_json()["rows"] == expected_gone

    out = lab.rollback(job, "--to", cp["id"]).last_json()
    assert out["status"] == "interrupted", out
    # the destination holds exactly the rows of batches <= the checkpoint's batch
    prefix = digest(ref.dest, where=f"WHERE _etl_batch <= {batch}")
    where = "orders" if not stage_tables(lab.dest) else stage_tables(lab.dest)[0]
    assert digest(lab.dest, table=where) == prefix
    assert digest(lab.dest, table=where, where=f"WHERE _etl_batch > {batch}").rows == 0
    entries = ledger(lab.dest, job)
    assert [e[1] for e in entries] == list(range(1, batch + 1))
    assert entries[-1][3] == last_row
    if mode == "atomic" and case.endswith("killed"):
        assert TABLE not in user_tables(lab.dest)   # still unpublished
    expected_rejects = {k: v for k, v in ref.rejects.items() if k[0] <= last_row}
    assert lab.store_rejects(job) == expected_rejects
    assert all(json.loads(d)["batch"] <= batch for (d,) in lab.store_query(
        "SELECT checkpoint_data FROM pipeline_checkpoints WHERE job_id = ?", (job,)))

    summary = lab.resume(job)
    assert summary["status"] == "succeeded"
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert summary[key] == ref.summary[key], (key, summary, ref.summary)
    assert_conservation(summary)
    assert digest(lab.dest) == ref.digest
    assert lab.store_rejects(job) == ref.rejects
    assert not stage_tables(lab.dest)
    assert lab.store_job(job)["status"] == "succeeded"


def test_rollback_restores_the_schema_of_a_hand_made_table(small_csv, tmp_path):
    lab = Lab(tmp_path, small_csv)
    make_hand_table(lab.dest, rows=30)
    before = exact_state(lab.dest)
    job = lab.run()["job_id"]
    lab.rollback(job)
    assert digest(lab.dest).rows == 30
    assert exact_state(lab.dest) == before
