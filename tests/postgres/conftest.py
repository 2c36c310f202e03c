"""The PostgreSQL suite's fixtures: one server for the session (see pg.py), one fresh
database per test, and the shared source files."""

from __future__ import annotations

from pathlib import Path

import pytest

from faults.faultkit import write_orders

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


@pytest.fixture(scope="session")
def orders_pg_csv(tmp_path_factory) -> Path:
    """40k generated orders (the fault suite's generator), with rows its pipeline rejects."""
    path = tmp_path_factory.mktemp("pg-source") / "orders.csv"
    write_orders(path, 40_000)
    path.chmod(0o444)
    return path


@pytest.fixture(scope="session")
def pg_reference(pg_server: PgServer, orders_pg_csv, tmp_path_factory):
    """An uninterrupted append run of the shared file: (summary, digest, rejects)."""
    from .pgkit import PgLab, pg_digest
    db = pg_server.new_database()
    lab = PgLab(tmp_path_factory.mktemp("pg-ref"), orders_pg_csv, pg_server, db)
    summary = lab.run()
    return summary, pg_digest(pg_server, db), lab.rejects(summary["job_id"])
