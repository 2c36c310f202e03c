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
    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None, silence_logs=logging.ERROR)
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
