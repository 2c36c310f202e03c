"""Fixtures of the fault suite: one generated source file and one uninterrupted reference
run per load mode, shared (read-only) by every test of the session."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .faultkit import LABS, ROWS, Reference, make_reference, write_orders

MODES = ("append", "atomic")


@pytest.fixture(scope="session")
def orders_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("source") / "orders.csv"
    manifest = write_orders(path, ROWS)
    assert manifest.expected_rejected > 0
    path.chmod(0o444)          # shared by every test: nobody may change it
    return path


@pytest.fixture(scope="session")
def references(tmp_path_factory, orders_csv) -> dict[str, Reference]:
    """Uninterrupted runs in append and atomic mode, run side by side: the kill scenarios
    also run two at a time, so the durations measured here are the ones they will see."""
    folders = {m: tmp_path_factory.mktemp(f"ref-{m}") for m in MODES}
    with ThreadPoolExecutor(len(MODES)) as pool:
        futures = {m: pool.submit(make_reference, folders[m], orders_csv, m) for m in MODES}
        refs = {m: f.result() for m, f in futures.items()}
    assert refs["append"].digest == refs["atomic"].digest
    assert refs["append"].rejects == refs["atomic"].rejects
    return refs


@pytest.fixture(scope="session")
def reference(references) -> Reference:
    """The uninterrupted append run of the shared file."""
    return references["append"]


@pytest.fixture(scope="session")
def small_csv(tmp_path_factory) -> Path:
    """A 5k-row file of other orders: the 'other job' that loaded into the table before."""
    path = tmp_path_factory.mktemp("source-small") / "other_orders.csv"
    write_orders(path, 5_000, seed=77)
    path.chmod(0o444)
    return path


@pytest.fixture(scope="session")
def b_csv(tmp_path_factory) -> Path:
    """A 20k-row file, loaded concurrently with the shared one."""
    path = tmp_path_factory.mktemp("source-b") / "orders_b.csv"
    write_orders(path, 20_000, seed=99)
    path.chmod(0o444)
    return path


@pytest.fixture(autouse=True)
def conservation_of_every_job():
    """Invariant 1 for every job any test made, whatever became of it (succeeded, failed,
    interrupted, rolled back): rows_read == rows_loaded + rows_rejected in the state store."""
    yield
    while LABS:
        lab = LABS.pop()
        for job in lab.store_jobs():
            assert job["rows_read"] == job["rows_loaded"] + job["rows_rejected"], (
                f"conservation broken for job {job['id']} ({job['status']}) in {lab.folder}: "
                f"read {job['rows_read']} != loaded {job['rows_loaded']} + rejected "
                f"{job['rows_rejected']}")
