"""Fixtures of the Dask executor's tests: one LocalCluster per module (real worker
processes, each with its nanny), shared by the tests' in-process runs and by CLI runs
given its address (--scheduler), and one drop of files per session."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from daskkit import write_drop



@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster
    from postgres.pg import PASSWORD
    # Workers of a shared cluster find a database's password in their own environment
    # (the driver never ships it): the nannies give it to every worker, restarted ones too.
    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=":0", silence_logs=logging.ERROR,
                         env={"PGPASSWORD": PASSWORD})
    client = Client(local)
    try:
        yield client
    finally:
        client.close()
        local.close()


@pytest.fixture(scope="session")
def drop(tmp_path_factory) -> Path:
    """6 files of 2,000 sample records (2 gzipped), read-only for every test."""
    folder = write_drop(tmp_path_factory.mktemp("drop"))
    for f in folder.iterdir():
        f.chmod(0o444)
    return folder


@pytest.fixture(scope="session")
def big_drop(tmp_path_factory) -> Path:
    """6 files of 6,000 records (2 gzipped): 30 batches a file at SMALL_BATCHES, so a
    part runs long enough to be killed in the middle."""
    folder = write_drop(tmp_path_factory.mktemp("big"), rows=6_000)
    for f in folder.iterdir():
        f.chmod(0o444)
    return folder


@pytest.fixture(scope="session")
def pg_server():
    """The PostgreSQL suite's throwaway server (tests/postgres/pg.py)."""
    from postgres.pg import start_or_skip
    server = start_or_skip()
    yield server
    server.stop()
