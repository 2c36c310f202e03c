"""The PostgreSQL suite's fixtures: one server for the session (see pg.py), one fresh
database per test."""

from __future__ import annotations

import pytest

from .pg import PgServer, start_or_skip


@pytest.fixture(scope="session")
def pg_server():
    server = start_or_skip()
    yield server
    server.stop()


@pytest.fixture
def pg(pg_server: PgServer) -> PgServer:
    return pg_server


@pytest.fixture
def pgdb(pg_server: PgServer) -> str:
    """A new, empty database for the test."""
    return pg_server.new_database()
