"""Partial success at the destination: rows SQLite refuses are isolated, the rest of the
batch commits; transient errors are retried without duplicating a row."""

import sqlite3

import pyarrow as pa
import pytest

from etlconsole.engine.destinations import (RefusedRow, TerminalDestinationError,
                                            TransientDestinationError)
from etlconsole.engine.destinations import sqlite as dest
from etlconsole.errors import JobFailed

SCHEMA = pa.schema([("x", pa.int64()), ("name", pa.string())])


def _batch(n=20, null_at=()):
    return pa.record_batch({"x": list(range(1, n + 1)),
                            "name": [None if i + 1 in null_at else f"n{i + 1}" for i in range(n)]},
                           schema=SCHEMA)


def _destination(path, *, isolate=True, attempts=3, triggers=False):
    db = sqlite3.connect(path)
    db.execute('CREATE TABLE t (x INTEGER CHECK (x % 7 != 0), name TEXT NOT NULL)')
    if triggers:   # a trigger that writes too makes SQLite's change count useless -> bisect
        db.execute("CREATE TABLE audit (x INTEGER)")
        db.execute("CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN "
                   "INSERT INTO audit VALUES (new.x); INSERT INTO audit VALUES (new.x); END")
    db.commit()
    db.close()
    d = dest.SqliteDestination(path, "job1", table="t", timeout_ms=1000, retry_attempts=attempts,
                               retry_delay_ms=1, isolate=isolate)
    d.open(SCHEMA)
    return d


def _table(path):
    db = sqlite3.connect(path)
    rows = [r[0] for r in db.execute("SELECT x FROM t ORDER BY rowid")]
    ledger = db.execute("SELECT batch, rows FROM _etl_loads").fetchall()
    db.close()
    return rows, ledger


@pytest.mark.parametrize("triggers", [False, True], ids=["row-index", "bisect"])
def test_refused_rows_are_isolated_and_the_rest_commits(tmp_path, triggers):
    path = tmp_path / "w.db"
    d = _destination(path, triggers=triggers)
    seen = []
    result = d.write(1, _batch(20, null_at={10}), 1, 20, before_commit=seen.append)
    d.close()
    refused = {r.index: r for r in result.refused}
    assert sorted(refused) == [6, 9, 13]            # x=7, x=10 (NULL name), x=14
    assert "CHECK constraint failed" in refused[6].message
    assert refused[6].rule == "check" and refused[6].column is None
    assert refused[9] == RefusedRow(9, "not_null", "name", "NOT NULL constraint failed: t.name")
    assert seen == [result.refused]                 # told inside the transaction
    rows, ledger = _table(path)
    assert rows == [x for x in range(1, 21) if x not in (7, 10, 14)]
    assert ledger == [(1, 17)]                      # exact count


def test_without_isolation_a_refused_row_fails_the_batch_and_nothing_commits(tmp_path):
    path = tmp_path / "w.db"
    d = _destination(path, isolate=False)
    with pytest.raises(dest.RowRefused) as err:
        d.write(1, _batch(20), 1, 20)
    d.close()
    assert err.value.row.index == 6 and "CHECK" in err.value.row.message
    assert isinstance(err.value, TerminalDestinationError)
    assert _table(path) == ([], [])


@pytest.mark.parametrize("failures, attempts", [(0, 1), (2, 3), (3, 4)])
def test_a_batch_failing_n_times_then_succeeding_commits_once(tmp_path, monkeypatch, failures, attempts):
    path = tmp_path / "w.db"
    d = _destination(path, attempts=3)
    real = d._insert
    left = [failures]

    def flaky(cur, batch):       # the rows are in, then the commit path fails: must roll back
        refused = real(cur, batch)
        if left[0]:
            left[0] -= 1
            raise sqlite3.OperationalError("database is locked")
        return refused

    monkeypatch.setattr(d, "_insert", flaky)
    result = d.write(1, _batch(6), 1, 6)
    d.close()
    assert result.attempts == attempts and d.retries == failures
    assert _table(path) == ([1, 2, 3, 4, 5, 6], [(1, 6)])


def test_more_failures_than_retries_fail_the_job_with_nothing_written(tmp_path, monkeypatch):
    path = tmp_path / "w.db"
    d = _destination(path, attempts=2)

    def locked(cur, batch):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(d, "_insert", locked)
    with pytest.raises(TransientDestinationError, match="database is locked"):
        d.write(1, _batch(6), 1, 6)
    d.close()
    assert d.retries == 2
    assert _table(path) == ([], [])


def test_terminal_errors_are_not_retried(tmp_path, monkeypatch):
    path = tmp_path / "w.db"
    d = _destination(path, attempts=5)
    calls = []

    def broken(cur, batch):
        calls.append(1)
        raise sqlite3.OperationalError("no such column: nope")

    monkeypatch.setattr(d, "_insert", broken)
    with pytest.raises(TerminalDestinationError, match="no such column") as err:
        d.write(1, _batch(3), 1, 3)
    assert isinstance(err.value, JobFailed)         # the job fails, resumably
    d.close()
    assert len(calls) == 1 and d.retries == 0


def test_a_destination_without_its_own_ranged_ledger_filters_the_whole(tmp_path):
    """``Destination.ledger_of`` by default: the job's ledger, the batches of the range."""
    d = _destination(tmp_path / "d.db")
    ok = pa.record_batch({"x": [1, 2], "name": ["a", "b"]}, schema=SCHEMA)
    for number in (1, 2, 1_000_001):
        d.write(number, ok, number, number + 1)
    d.close()
    assert [e.batch for e in d.ledger_of(2, 1_000_000)] == [2]
    assert [e.batch for e in d.ledger_of(1_000_001, 2_000_000)] == [1_000_001]


@pytest.mark.parametrize("mode", ["append", "atomic"])
def test_each_table_of_a_job_reads_its_own_entries_of_the_shared_ledger(tmp_path, mode):
    """Two branches of one job into two tables of one file share its ledger table: a batch
    committed to one table is not held by the other (resume would skip it there)."""
    paid, every = (dest.SqliteDestination(tmp_path / "d.db", "job1", table=t, mode=mode)
                   for t in ("paid", "orders"))
    ok = pa.record_batch({"x": [1, 2], "name": ["a", "b"]}, schema=SCHEMA)
    for d in (paid, every):
        d.open(SCHEMA)
    paid.write(1, ok, 1, 2)
    every.write(1, ok, 1, 2)
    paid.write(2, ok, 3, 4)                       # a kill here: "orders" lacks batch 2
    assert [e.batch for e in paid.ledger()] == [1, 2]
    assert [e.batch for e in every.ledger()] == [1]
    assert [e.batch for e in every.ledger_of(2, 2)] == []
    assert [e.batch for e in dest.SqliteDestination.read_ledger(tmp_path / "d.db", "job1")] == [1, 1, 2]
    for d in (paid, every):
        d.close()
