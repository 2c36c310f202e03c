"""The fixture itself: a real server, reachable on loopback with a password only."""

from __future__ import annotations

from .pg import PgServer


def test_server_answers_on_loopback(pg: PgServer, pgdb: str):
    assert pg.execute("SELECT current_setting('listen_addresses')") == [("127.0.0.1",)]
    assert pg.execute("SELECT current_database()", db=pgdb) == [(pgdb,)]
