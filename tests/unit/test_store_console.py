"""State store: the small read queries the console polls."""

from __future__ import annotations

import json

import pytest

from etlconsole.store import StateStore


@pytest.fixture
def store(tmp_path):
    s = StateStore(tmp_path / "state.db")
    s.create_job("aaaa0001", pipeline_name="p")
    yield s
    s.close()


def reject(row, rule="type", column="c", phase="validate"):
    return {"row": row, "phase": phase, "rule": rule, "column": column, "message": f"bad {row}",
            "values": json.dumps({"c": "[/x]"})}


def test_job_by_pid(store):
    import os
    assert store.job_by_pid(os.getpid())["id"] == "aaaa0001"
    assert store.job_by_pid(1 << 30) is None


def test_metrics_since_is_bounded_and_ordered(store):
    for i in range(10):
        store.add_metric("aaaa0001", {"rows_read": i})
    last3 = store.metrics_since("aaaa0001", 0, limit=3)
    assert [m["rows_read"] for m in last3] == [7, 8, 9]
    newer = store.metrics_since("aaaa0001", last3[0]["id"])
    assert [m["rows_read"] for m in newer] == [8, 9]
    assert store.metrics_since("aaaa0001", last3[-1]["id"]) == []


def test_recent_events_and_batches(store):
    for i in range(5):
        store.add_event("aaaa0001", f"e{i}", n=i)
    assert [e["event"] for e in store.recent_events("aaaa0001", 2)] == ["e3", "e4"]
    assert store.recent_events("aaaa0001", 2)[1]["details"] == {"n": 4}
    for b in range(1, 6):
        store.begin_batch("aaaa0001", b, row_start=b, row_end=b, rejects=[])
    assert [b["batch_number"] for b in store.recent_batches("aaaa0001", 2)] == [4, 5]


def test_reject_groups_and_rows(store):
    store.begin_batch("aaaa0001", 1, row_start=1, row_end=9, rejects=[
        reject(3), reject(1), reject(2, rule="pattern", column="email"),
        reject(5, rule="ragged", column=None, phase="extract")])
    groups = store.reject_groups("aaaa0001")
    assert groups[0] == {"phase": "validate", "rule": "type", "column": "c", "count": 2,
                         "open": 2, "resolved": 0}
    assert {(g["rule"], g["column"], g["count"]) for g in groups[1:]} == {
        ("pattern", "email", 1), ("ragged", None, 1)}
    rows = store.reject_rows("aaaa0001")
    assert [r["row"] for r in rows] == [1, 2, 3, 5]
    assert rows[0]["values"] == {"c": "[/x]"}
    typed = store.reject_rows("aaaa0001", phase="validate", rule="type", column="c", grouped=True)
    assert [r["row"] for r in typed] == [1, 3]
    ragged = store.reject_rows("aaaa0001", phase="extract", rule="ragged", column=None, grouped=True)
    assert [r["row"] for r in ragged] == [5]
    assert len(store.reject_rows("aaaa0001", limit=2)) == 2
    # a replay resolved one (issue 16): the group splits open/resolved, the row says by which
    store.conn.execute("UPDATE pipeline_rejects SET resolved_at = '2025-01-01T00:00:00', "
                          "resolved_by = 1 WHERE row = 3")
    assert {k: store.reject_groups("aaaa0001")[0][k] for k in ("count", "open", "resolved")} == {
        "count": 2, "open": 1, "resolved": 1}
    typed = store.reject_rows("aaaa0001", phase="validate", rule="type", column="c", grouped=True)
    assert [(r["row"], r["resolved_by"]) for r in typed] == [(1, None), (3, 1)]
