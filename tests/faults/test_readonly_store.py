"""Issue 17: a read-only state store can be read: ``jobs`` and ``show`` need no write (a
store on read-only media, as a real read-only tmpfs; its jobs are shown, not migrated,
not marked)."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from ._mounts import remount_readonly, tmpfs
from .faultkit import Lab, run_and_kill


@pytest.mark.parametrize("files", ["closed", "with-wal"])
def test_jobs_and_show_read_a_store_on_read_only_media(small_csv, orders_csv, tmp_path, files):
    """``closed``: the store as its last writer left it (WAL checkpointed, no -wal/-shm);
    ``with-wal``: as a killed writer left it."""
    lab = Lab(tmp_path / "lab", small_csv)
    done = lab.run()
    big = Lab(tmp_path / "lab", orders_csv, name="big.toml")
    killed = run_and_kill(big, batches=3)       # left 'running' in the store: its process is gone
    expected = {j["id"]: j for j in lab.store_jobs()}
    assert expected[killed]["status"] == "running"     # as the kill left it: nobody looked yet
    if files == "closed":
        conn = sqlite3.connect(lab.state)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()                    # the last connection: -wal and -shm go
        assert sorted(p.name for p in lab.state.parent.glob("state.db*")) == ["state.db"]
    with tmpfs(tmp_path / "ro", size="8m") as ro:
        for f in lab.state.parent.glob("state.db*"):
            shutil.copyfile(f, ro / f.name)
        remount_readonly(ro)
        lab.state = big.state = ro / "state.db"
        res = lab.cli("jobs", "--json")
        assert res.returncode == 0, str(res)
        seen = {j["id"]: j for j in res.json_lines()}
        assert set(seen) == {done["job_id"], killed}
        assert seen[done["job_id"]]["status"] == "succeeded"
        assert seen[killed]["status"] == "interrupted"       # shown so, without a write
        for job in (done["job_id"], killed):
            assert seen[job]["rows_loaded"] == expected[job]["rows_loaded"]
        res = lab.cli("jobs")
        assert res.returncode == 0 and done["job_id"] in res.stdout, str(res)
        res = lab.cli("show", done["job_id"], "--json")
        assert res.returncode == 0, str(res)
        shown = res.last_json()
        assert shown["status"] == "succeeded" and shown["rows_read"] == done["rows_read"]
        for command in (("show", killed), ("checkpoints", killed), ("batches", killed),
                        ("rejects", done["job_id"], "--json")):
            res = lab.cli(*command)
            assert res.returncode == 0, str(res)
            assert "Traceback" not in res.stderr
