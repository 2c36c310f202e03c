"""Parquet and CSV destinations: one part file per committed batch, the folder as ledger,
modes, rollback, and what a kill between the commit steps leaves behind."""

from __future__ import annotations

import datetime as dt
import json
import os

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from etlconsole.engine import destinations
from etlconsole.engine.destinations import folder
from etlconsole.engine.destinations.csv import CsvDestination
from etlconsole.engine.destinations.parquet import ParquetDestination
from etlconsole.errors import SpecError, UserError

SCHEMA = pa.schema([("id", pa.int64()), ("day", pa.date32()), ("at", pa.timestamp("us")),
                    ("ok", pa.bool_()), ("name", pa.string())])
KINDS = {"parquet": ParquetDestination, "csv": CsvDestination}


def batch(first: int, n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([
        {"id": i, "day": dt.date(2025, 3, 1) + dt.timedelta(days=i % 3),
         "at": dt.datetime(2025, 3, 1, 12, 0, i % 60), "ok": i % 2 == 0,
         "name": None if i % 5 == 0 else f"n{i}"} for i in range(first, first + n)], schema=SCHEMA)


def load(kind, path, job, mode="append", batches=((1, 3), (4, 2))):
    d = KINDS[kind](path, job, mode=mode)
    d.check(SCHEMA)
    d.open(SCHEMA)
    for number, (first, n) in enumerate(batches, start=1):
        assert d.write(number, batch(first, n), first, first + n - 1).attempts == 1
    d.publish(SCHEMA)
    d.close()
    return d


def read_ids(kind, path) -> list[int]:
    if not path.exists():
        return []
    fmt = "parquet" if kind == "parquet" else "csv"
    files = sorted(str(p) for p in path.glob(f"*.{fmt}"))
    if not files:
        return []
    return sorted(ds.dataset(files, format=fmt).to_table().column("id").to_pylist())


@pytest.mark.parametrize("kind", KINDS)
def test_append_writes_one_part_per_batch_and_the_folder_is_the_ledger(tmp_path, kind):
    path = tmp_path / "out"
    load(kind, path, "job1")
    parts = sorted(p.name for p in path.glob(f"part-*.{kind}"))
    assert parts == [f"part-job1-00000001.{kind}", f"part-job1-00000002.{kind}"]
    assert read_ids(kind, path) == [1, 2, 3, 4, 5]
    ledger = destinations.committed(path, "job1", kind)
    assert [(e.batch, e.row_start, e.row_end, e.rows) for e in ledger] == [
        (1, 1, 3, 3), (2, 4, 5, 2)]
    assert destinations.committed(path, "other", kind) == []
    # pyarrow.dataset on the folder ignores _etl_ and dot files
    if kind == "parquet":
        assert ds.dataset(str(path), format="parquet").to_table().num_rows == 5


def test_parquet_types(tmp_path):
    load("parquet", tmp_path / "out", "j")
    schema = pq.read_schema(str(tmp_path / "out" / "part-j-00000001.parquet"))
    assert schema.field("day").type == pa.date32()
    assert schema.field("at").type == pa.timestamp("us")
    assert schema.field("ok").type == pa.bool_()


def test_csv_values_are_iso_text(tmp_path):
    load("csv", tmp_path / "out", "j", batches=((1, 2),))
    text = (tmp_path / "out" / "part-j-00000001.csv").read_text().splitlines()
    assert text[0] == '"id","day","at","ok","name"'
    assert text[1] == '1,"2025-03-02","2025-03-01T12:00:01",false,"n1"'


@pytest.mark.parametrize("kind", KINDS)
def test_uncommitted_leftovers_do_not_count(tmp_path, kind):
    """A kill before the data rename: a temp file and maybe a ledger entry, not a batch."""
    path = tmp_path / "out"
    load(kind, path, "j", batches=((1, 3),))
    (path / f".part-j-00000002.{kind}.tmp").write_bytes(b"partial")
    entry = {"job_id": "j", "batch": 2, "row_start": 4, "row_end": 9, "rows": 6,
             "file": f"part-j-00000002.{kind}", "committed_at": "x"}
    (path / "_etl_loads" / "j-00000002.json").write_text(json.dumps(entry))
    assert [e.batch for e in destinations.committed(path, "j", kind)] == [1]
    # resume writes batch 2 again: it now counts once
    d = KINDS[kind](path, "j")
    d.open(SCHEMA)
    d.write(2, batch(4, 2), 4, 5)
    assert [(e.batch, e.rows) for e in destinations.committed(path, "j", kind)] == [
        (1, 3), (2, 2)]
    assert read_ids(kind, path) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("kind", KINDS)
def test_rollback_whole_job_and_after_a_batch(tmp_path, kind):
    path = tmp_path / "out"
    load(kind, path, "old", batches=((100, 2),))
    load(kind, path, "new", batches=((1, 3), (4, 2), (6, 1)))
    dry = destinations.rollback(path, "new", kind, after_batch=1, dry_run=True)
    assert dry.batches == 2 and dry.rows == {"out": 3}
    assert read_ids(kind, path) == [1, 2, 3, 4, 5, 6, 100, 101]
    rep = destinations.rollback(path, "new", kind, after_batch=1)
    assert rep.batches == 2
    assert read_ids(kind, path) == [1, 2, 3, 100, 101]
    assert [e.batch for e in destinations.committed(path, "new", kind)] == [1]
    destinations.rollback(path, "new", kind)
    assert read_ids(kind, path) == [100, 101]
    assert destinations.committed(path, "new", kind) == []
    assert not list((path / "_etl_loads").glob("new*"))
    # the folder was made by "old": rolling it back removes the folder entirely
    rep = destinations.rollback(path, "old", kind)
    assert str(path) in rep.dropped and not path.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_atomic_stages_until_publish(tmp_path, kind):
    path = tmp_path / "out"
    d = KINDS[kind](path, "j", mode="atomic")
    d.open(SCHEMA)
    d.write(1, batch(1, 3), 1, 3)
    assert read_ids(kind, path) == []               # nothing visible before the publish
    assert (path / "_etl_stage_j" / f"part-j-00000001.{kind}").exists()
    assert [e.batch for e in destinations.committed(path, "j", kind)] == [1]
    assert folder.etl_tables(path) == [("_etl_stage_j", "j")]
    d.write(2, batch(4, 1), 4, 4)
    d.publish(SCHEMA)
    assert read_ids(kind, path) == [1, 2, 3, 4] and not (path / "_etl_stage_j").exists()
    d.publish(SCHEMA)                               # again (resume after a publish): no-op
    assert read_ids(kind, path) == [1, 2, 3, 4]


@pytest.mark.parametrize("kind", KINDS)
def test_replace_and_its_rollback(tmp_path, kind):
    path = tmp_path / "out"
    load(kind, path, "a", batches=((100, 2),))
    (path / f"by-hand.{kind}").write_bytes((path / f"part-a-00000001.{kind}").read_bytes())
    load(kind, path, "b", mode="replace", batches=((1, 2),))
    assert read_ids(kind, path) == [1, 2]
    assert sorted(p.name for p in (path / "_etl_replaced_b").iterdir()) == [
        f"by-hand.{kind}", f"part-a-00000001.{kind}"]
    rep = destinations.rollback(path, "b", kind)
    assert rep.restored and read_ids(kind, path) == [100, 100, 101, 101]
    assert not (path / "_etl_replaced_b").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_check_refuses_what_would_fail(tmp_path, kind):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        KINDS[kind](f, "j").check(SCHEMA)
    with pytest.raises(UserError, match="parent does not exist"):
        KINDS[kind](tmp_path / "no" / "out", "j").check(SCHEMA)
    load(kind, tmp_path / "out", "a")
    other = pa.schema([("id", pa.int64()), ("else", pa.string())])
    with pytest.raises(UserError, match="dataset's files have columns"):
        KINDS[kind](tmp_path / "out", "b").check(other)
    KINDS[kind](tmp_path / "out", "b", mode="replace").check(other)   # replace may change it


def test_factory_dispatches_by_kind(tmp_path):
    class L:
        destination, table, mode, on_error = "parquet", None, "append", "reject"

    class S:
        transaction_timeout_ms, batch_retry_attempts, batch_retry_delay_ms = 1000, 1, 1

    assert isinstance(destinations.open_destination(L, tmp_path / "x", "j", S), ParquetDestination)
    L.destination = "csv"
    assert isinstance(destinations.open_destination(L, tmp_path / "x", "j", S), CsvDestination)
    L.destination, L.table = "sqlite", "t"
    assert destinations.open_destination(L, tmp_path / "x.db", "j", S).kind == "sqlite"
    assert destinations.get(None).kind == "sqlite"     # jobs recorded before kinds existed
    with pytest.raises(SpecError, match="must be one of sqlite, parquet, csv(, [a-z]+)*, got 'oracle'"):
        destinations.get("oracle")
    assert os.path.basename(folder.part_name("ab", 7, "csv")) == "part-ab-00000007.csv"


@pytest.mark.parametrize("kind", KINDS)
def test_a_parts_ledger_reads_only_its_own_entries(tmp_path, kind, monkeypatch):
    """A Dask part asks for the batches of its number range (ledger_of): the folder reads
    only those entries, found by the numbers in their names — not every entry of the job
    (a job of thousands of files would read them all again for each part)."""
    path = tmp_path / "out"
    load(kind, path, "job1", batches=((1, 2), (3, 2), (5, 2), (7, 2)))
    d = KINDS[kind](path, "job1")
    read: list[str] = []
    real = folder.Path.read_text

    def spy(self, *a, **kw):
        read.append(self.name)
        return real(self, *a, **kw)
    monkeypatch.setattr(folder.Path, "read_text", spy)
    assert [(e.batch, e.row_start, e.row_end) for e in d.ledger_of(2, 3)] == [(2, 3, 4), (3, 5, 6)]
    assert read == ["job1-00000002.json", "job1-00000003.json"]
    assert d.ledger_of(5, 9) == []
    assert [e.batch for e in d.ledger_of(1, 10**6)] == [e.batch for e in d.ledger()] == [1, 2, 3, 4]


@pytest.mark.parametrize("kind", KINDS)
def test_entries_past_eight_digits_are_read_in_number_order(tmp_path, kind):
    """A Dask part p numbers its batches from p * 1,000,000 + 1: from part 100 on the
    numbers outgrow the entries' eight-digit padding, and their names no longer sort as
    their numbers do. Ranges and order go by number; a rollback after one keeps it."""
    path = tmp_path / "out"
    d = KINDS[kind](path, "job1")
    d.check(SCHEMA)
    d.open(SCHEMA)
    numbers = [99_000_001, 100_000_001, 2_000_000_001, 3]
    for k, number in enumerate(numbers):
        d.write(number, batch(10 * k + 1, 2), 10 * k + 1, 10 * k + 2)
    d.publish(SCHEMA)
    d.close()
    assert [e.batch for e in d.ledger()] == sorted(numbers)
    assert [e.batch for e in d.ledger_of(100_000_000, 2_000_000_001)] == [100_000_001, 2_000_000_001]
    KINDS[kind].rollback(path, "job1", after_batch=100_000_001)
    assert [e.batch for e in d.ledger()] == [3, 99_000_001, 100_000_001]
    assert read_ids(kind, path) == [1, 2, 11, 12, 31, 32]
