"""The job's start is single-threaded: the check's session is the one the open uses (one
connect, not two), and a check with no open after it (``etlconsole check``) leaves no
session behind."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from etlconsole.engine.destinations import postgres as pgdest
from etlconsole.engine.destinations.postgres import PostgresDestination, make_location

from .pg import PASSWORD, PgServer
from .pgkit import PgLab


def _sessions(pg: PgServer, db: str, *, settle_to: int | None = None) -> int:
    """Sessions in ``db`` other than the one asking; with ``settle_to``, asked again (up to
    about 10 s) until the count is that: a closed session's backend leaves the list when it
    has exited, a moment after the client's close."""
    sql = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
           "AND pid <> pg_backend_pid()")
    n = pg.execute(sql, db=db)[0][0]
    for _ in range(200):
        if settle_to is None or n == settle_to:
            break
        time.sleep(0.05)
        n = pg.execute(sql, db=db)[0][0]
    return n


@pytest.fixture
def connects(monkeypatch) -> list[object]:
    made: list[object] = []
    real = pgdest._connect

    def counting(*a, **kw):
        conn = real(*a, **kw)
        made.append(conn)
        return conn
    monkeypatch.setattr(pgdest, "_connect", counting)
    return made


@pytest.mark.parametrize("mode", ["append", "atomic", "replace"])
def test_the_open_takes_the_checks_session(pg: PgServer, pgdb: str, monkeypatch, connects, mode):
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    d = PostgresDestination(str(make_location(pg.url(pgdb))), "job1", table="t", mode=mode)
    batch = pa.record_batch({"id": pa.array([1, 2, 3], pa.int64())})
    try:
        d.check(batch.schema)
        assert len(connects) == 1 and _sessions(pg, pgdb) == 1     # kept, idle, no transaction
        d.open(batch.schema)
        d.write(1, batch, 1, 3)
        d.publish(batch.schema)
        assert len(connects) == 1
    finally:
        d.close()
    assert _sessions(pg, pgdb, settle_to=0) == 0
    assert pg.execute("SELECT sum(id)::bigint FROM t", db=pgdb) == [(6,)]


def test_a_refused_check_keeps_no_session(pg: PgServer, pgdb: str, monkeypatch, connects):
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    pg.execute("CREATE TABLE t (id integer, note date)", db=pgdb)
    d = PostgresDestination(str(make_location(pg.url(pgdb))), "job1", table="t")
    with pytest.raises(pgdest.DestinationUnusable, match="column 'note' is date"):
        d.check(pa.schema([("id", pa.int64()), ("note", pa.string())]))
    assert d._conn is None and connects and connects[0]._closed
    d.close()


def test_the_check_command_closes_the_session_it_kept(tmp_path, pg: PgServer, pgdb: str,
                                                       orders_pg_csv, monkeypatch, connects):
    from etlconsole import api
    from etlconsole.config import Settings
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb)
    api.check(lab.pipeline, Settings())
    assert len(connects) == 1 and connects[0]._closed    # not left to the garbage collector


def test_a_session_lost_between_check_and_open_is_made_again(pg: PgServer, pgdb: str, monkeypatch,
                                                             connects):
    """The kept session may die before the open (a server restart, an administrator's
    pg_terminate_backend): the open's retry connects again, as for any transient error."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    d = PostgresDestination(str(make_location(pg.url(pgdb))), "job1", table="t",
                            retry_delay_ms=1)
    batch = pa.record_batch({"id": pa.array([1, 2, 3], pa.int64())})
    try:
        d.check(batch.schema)
        assert pg.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                          f"datname = '{pgdb}' AND pid <> pg_backend_pid()", db=pgdb) == [(1,)]
        d.open(batch.schema)
        d.write(1, batch, 1, 3)
        assert len(connects) == 2 and d.retries == 1
    finally:
        d.close()
    assert pg.execute("SELECT sum(id)::bigint FROM t", db=pgdb) == [(6,)]
