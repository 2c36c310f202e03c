"""A batch goes to COPY as a stream of slices (so the server parses one slice while the
client encodes the next), and is still one COPY: one transaction, line numbers counted
across the slices, so a refused row deep in the batch is found exactly."""

from __future__ import annotations

import pyarrow as pa
import pytest
from adbc_driver_manager.dbapi import Cursor

from etlconsole.engine.destinations import postgres as pgdest
from etlconsole.engine.destinations.postgres import PostgresDestination, copy_stream, make_location

from .pg import PASSWORD, PgServer


def _batch(n: int) -> pa.RecordBatch:
    return pa.record_batch({"id": pa.array(range(n), pa.int64()),
                            "name": pa.array([f"name {i}" for i in range(n)])})


def test_a_batch_is_cut_into_zero_copy_slices_of_about_the_size():
    batch = _batch(10_000)
    table = copy_stream(batch, slice_bytes=16_384)
    chunks = table.to_batches()
    assert len(chunks) > 5
    assert all(c.nbytes <= 16_384 * 1.1 for c in chunks)
    assert table.to_batches() and pa.Table.from_batches(chunks).equals(pa.Table.from_batches([batch]))
    # slices share the batch's buffers: no copy of the data
    assert chunks[1].column(0).buffers()[1].address == batch.column(0).buffers()[1].address


def test_a_small_batch_is_one_slice():
    assert copy_stream(_batch(10), slice_bytes=1 << 20).num_rows == 10
    assert len(copy_stream(_batch(10), slice_bytes=1 << 20).to_batches()) == 1


@pytest.fixture
def dest(pg: PgServer, pgdb: str, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    d = PostgresDestination(str(make_location(pg.url(pgdb))), "job1", table="t")
    yield d
    d.close()


def test_the_copy_streams_slices_and_finds_a_refused_row_in_a_late_one(pg: PgServer, pgdb: str,
                                                                       dest, monkeypatch):
    monkeypatch.setattr(pgdest, "COPY_SLICE_BYTES", 4096)
    sent: list[object] = []
    real = Cursor.adbc_ingest

    def spy(self, table, data, *a, **kw):
        sent.append(data)
        return real(self, table, data, *a, **kw)
    monkeypatch.setattr(Cursor, "adbc_ingest", spy)
    batch = _batch(5_000)
    pg.execute("CREATE TABLE t (id bigint, name text CHECK (name <> 'name 4321'))", db=pgdb)
    dest.open(batch.schema)
    result = dest.write(1, batch, 1, 5_000)
    # what ADBC was given: a stream of many slices (each COPY, the failed ones included)
    assert sent and all(isinstance(d, pa.Table) for d in sent)
    assert len(sent[0].to_batches()) > 10 and sent[0].num_rows == 5_000
    assert [(r.index, r.rule) for r in result.refused] == [(4321, "check")]
    assert pg.execute("SELECT count(*), count(DISTINCT id), sum(id)::bigint FROM t", db=pgdb) == \
        [(4_999, 4_999, sum(range(5_000)) - 4321)]
    assert pg.execute("SELECT batch, rows FROM _etl_loads", db=pgdb) == [(1, 4_999)]


def test_a_parts_ledger_is_its_range_of_batches(pg: PgServer, pgdb: str, dest):
    """A Dask part reads its own batches of the ledger (ledger_of), not the job's whole."""
    batch = _batch(10)
    dest.open(batch.schema)
    for number in (1, 2, 1_000_001, 1_000_002, 2_000_001):
        dest.write(number, batch, number, number + 9)
    assert [e.batch for e in dest.ledger_of(1_000_001, 2_000_000)] == [1_000_001, 1_000_002]
    assert [e.batch for e in dest.ledger_of(3_000_001, 4_000_000)] == []
    assert [e.batch for e in dest.ledger()] == [1, 2, 1_000_001, 1_000_002, 2_000_001]


@pytest.mark.parametrize("mode", ["append", "atomic"])
def test_each_table_of_a_job_reads_its_own_entries_of_the_shared_ledger(pg: PgServer, pgdb: str,
                                                                        monkeypatch, mode):
    """Two branches of one job into two tables of one database share its ledger table: a
    batch committed to one table is not held by the other (resume would skip it there)."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    where = str(make_location(pg.url(pgdb)))
    paid, every = (PostgresDestination(where, "job1", table=t, mode=mode) for t in ("paid", "orders"))
    batch = _batch(10)
    for d in (paid, every):
        d.open(batch.schema)
    paid.write(1, batch, 1, 10)
    every.write(1, batch, 1, 10)
    paid.write(2, batch, 11, 20)                  # a kill here: "orders" lacks batch 2
    assert [e.batch for e in paid.ledger()] == [1, 2]
    assert [e.batch for e in every.ledger()] == [1]
    assert [e.batch for e in every.ledger_of(2, 2)] == []
    assert [e.batch for e in PostgresDestination.read_ledger(paid.path, "job1")] == [1, 1, 2]
    for d in (paid, every):
        d.close()
