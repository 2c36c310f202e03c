"""The store's console reads: updated_at kept by every write to a job row (migration 3),
job rows changed since a stamp, data_version, rejects by page, one reject in full."""

from __future__ import annotations

import json
import sqlite3

import pytest

from etlconsole.store import StateStore
from etlconsole.store.schema import MIGRATIONS, _statements


@pytest.fixture
def store(tmp_path):
    s = StateStore(tmp_path / "state.db")
    yield s
    s.close()


def stamp(store, job_id) -> str:
    return store.conn.execute("SELECT updated_at FROM import_jobs WHERE id = ?",
                                 (job_id,)).fetchone()[0]


def rejects(n: int, start: int = 1) -> list[dict]:
    return [{"row": i, "phase": "validate", "rule": "pattern", "column": "c", "message": "bad",
             "values": json.dumps({"c": f"v{i}", "d": None})} for i in range(start, start + n)]


def test_every_write_to_a_job_row_moves_updated_at(store):
    # Each write is checked against a stamp set long ago just before it: writes a
    # millisecond apart can share a stamp, so comparing them with each other proves nothing.
    def moved(write) -> bool:
        store.conn.execute("UPDATE import_jobs SET updated_at = '2000-01-01' WHERE id = 'a'")
        write()
        return stamp(store, "a") > "2000-01-01"

    store.create_job("a", pipeline_name="p")
    assert stamp(store, "a")
    assert moved(lambda: store.update_job("a", status="running"))
    assert moved(lambda: (store.begin_batch("a", 1, row_start=1, row_end=10, rejects=[]),
                          store.commit_batch("a", 1, rows_loaded=10, attempts=1, duration_ms=1.0,
                                             counters={"rows_read": 10})))
    assert moved(lambda: store.add_metric("a", {"rows_read": 10}))   # the heartbeat is a write too
    assert moved(lambda: store.reconcile("a", [{"batch": 1, "rows": 10, "row_start": 1,
                                                 "row_end": 10}]))


def test_jobs_changed_since_reads_only_the_rows_written_since(store):
    for j in "abc":
        store.create_job(j, pipeline_name="p")
    first = store.jobs_changed_since(None)
    assert {j["id"] for j in first} == {"a", "b", "c"}
    newest = max(j["updated_at"] for j in first)
    assert {j["id"] for j in store.jobs_changed_since(newest)} <= {"a", "b", "c"}
    store.conn.execute("UPDATE import_jobs SET updated_at = '2000-01-01'")   # long ago
    store.update_job("b", status="running")
    changed = store.jobs_changed_since("2000-01-02")
    assert [j["id"] for j in changed] == ["b"] and changed[0]["status"] == "running"


def test_data_version_moves_on_other_connections_commits_only(store, tmp_path):
    before = store.data_version()
    store.create_job("a", pipeline_name="p")          # this connection's own write
    assert store.data_version() == before
    other = StateStore(tmp_path / "state.db")
    other.update_job("a", status="running")
    other.close()
    assert store.data_version() != before


def test_rejects_by_page_and_one_in_full(store):
    store.create_job("a", pipeline_name="p")
    store.begin_batch("a", 1, row_start=1, row_end=250, rejects=rejects(250))
    pages = [store.reject_rows("a", limit=100, offset=o) for o in (0, 100, 200)]
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [r["row"] for p in pages for r in p] == list(range(1, 251))
    grouped = store.reject_rows("a", phase="validate", rule="pattern", column="c", grouped=True,
                                limit=10, offset=240)
    assert [r["row"] for r in grouped] == list(range(241, 251))
    one = store.reject(pages[1][0]["id"])
    assert one["row"] == 101 and one["values"] == {"c": "v101", "d": None}
    assert one["job_id"] == "a" and one["batch_number"] == 1
    assert store.reject(10 ** 9) is None


def test_a_store_of_schema_2_gets_updated_at_from_its_last_write(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:2]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO import_jobs (id, pipeline_name, status, created_at, heartbeat_at) "
                 "VALUES ('old', 'p', 'succeeded', '2025-01-01T00:00:00', '2025-01-01T00:05:00')")
    conn.close()
    store = StateStore(path)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert stamp(store, "old") == "2025-01-01T00:05:00"
        assert [j["id"] for j in store.jobs_changed_since("2025-01-01T00:01:00")] == ["old"]
    finally:
        store.close()


def test_recent_checkpoints_are_the_last_ones_oldest_first(store):
    store.create_job("a", pipeline_name="p")
    for i in range(1, 8):
        store.add_checkpoint("a", "load", {"batch": i, "last_row": i * 10, "rows_loaded": i * 9},
                             i * 10)
    last3 = store.recent_checkpoints("a", 3)
    assert [c["checkpoint_data"]["batch"] for c in last3] == [5, 6, 7]
    assert [c["id"] for c in store.recent_checkpoints("a", 100)] == \
        [c["id"] for c in store.checkpoints("a")]
