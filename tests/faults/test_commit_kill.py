"""kill -9 *inside* a destination commit, deterministically.

The destination uses SQLite's rollback journal. While a transaction commits, the journal
is synced and its header carries the journal magic: it is "hot". A process killed at that
moment leaves the hot journal behind, and the next connection that opens the database
read-write rolls it back (the batch was never committed). These tests wait for that exact
moment (after a few batches have committed) and kill the engine there.
"""

from __future__ import annotations

import pytest

from .faultkit import (TABLE, Lab, assert_conservation, digest, exact_state, file_sha,
                       make_hand_table,
                       hot_journal, kill_inside_commit, ledger, stage_tables, user_tables,
                       wait_for)


def killed_inside_commit(lab: Lab, *, min_batches: int = 4, tries: int = 3) -> str:
    """Run the lab's pipeline and kill it inside a commit after `min_batches` batches."""
    for _ in range(tries):
        known = lab.job_ids()
        proc = lab.spawn("run", lab.pipeline, "--no-ui", "--json")
        wait_for(lambda proc=proc, known=known: proc.poll() is not None
                 or lab.committed_in_store(known) >= min_batches, every=0.002)
        if kill_inside_commit(proc, lab.dest):
            jobs = lab.jobs()
            assert jobs[0]["status"] == "interrupted", jobs[0]
            return jobs[0]["id"]
        # the job ended first (or the kill missed the commit): roll it back and try again
        lab.rollback("last")
    pytest.fail("could not kill the engine inside a commit")


# Regression: a hot journal left by a kill inside a commit used to make every later
# read-only open fail ('attempt to write a readonly database').



@pytest.mark.parametrize("mode", ["append"])   # atomic fails the same way (same check())
def test_resume_after_kill_inside_commit(mode, references, orders_csv, tmp_path):
    ref = references[mode]
    lab = Lab(tmp_path, orders_csv, mode=mode)
    job = killed_inside_commit(lab)
    assert hot_journal(lab.dest)
    res = lab.cli("resume", job, "--json")
    assert res.returncode == 0, str(res)
    summary = res.last_json()
    assert summary["status"] == "succeeded"
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert summary[key] == ref.summary[key]
    assert_conservation(summary)
    assert digest(lab.dest) == ref.digest
    assert lab.store_rejects(job) == ref.rejects


def test_rollback_after_kill_inside_commit(orders_csv, tmp_path):
    """Rollback opens the destination read-write: the journal is recovered, the rows of
    the committed batches go, and the destination equals its state before the job."""
    lab = Lab(tmp_path, orders_csv)
    make_hand_table(lab.dest, rows=40)
    before = digest(lab.dest)                  # data columns (the job adds lineage columns)
    job = killed_inside_commit(lab)
    res = lab.rollback(job)
    assert res.last_json()["status"] == "rolled_back"
    assert digest(lab.dest) == before
    assert ledger(lab.dest, job) == []
    assert not stage_tables(lab.dest)
    assert not hot_journal(lab.dest)


def test_cleanup_after_kill_inside_commit(orders_csv, small_csv, tmp_path):
    """An atomic job killed inside a staging commit: cleanup drops its staging table and
    leaves the target (loaded before by another job) exactly as it was."""
    lab = Lab(tmp_path, orders_csv, mode="atomic")
    other = lab.write_pipeline("other.toml", small_csv)
    lab.run(other)
    before = exact_state(lab.dest)[TABLE]
    job = killed_inside_commit(lab)
    res = lab.cli("cleanup", "--older-than", "0", "--json")
    assert res.returncode == 0, str(res)
    dropped = [a for a in res.json_lines() if a["action"] == "roll back"]
    assert [a["job_id"] for a in dropped] == [job], res.json_lines()
    assert not stage_tables(lab.dest)
    assert exact_state(lab.dest)[TABLE] == before
    assert user_tables(lab.dest) == [TABLE]
    assert file_sha(lab.dest)      # still a database
