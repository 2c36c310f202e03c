"""The lineage index is made when a table becomes shared, not while a job fills its own
table, which has only a partial index of the rows that are not the job's (ADR 0022);
rollback stays exact either way: whole, to a checkpoint, around another job's rows and
around rows written by hand."""

import sqlite3

import pyarrow as pa

from etlconsole.engine.destinations import sqlite as dest

SCHEMA = pa.schema([("x", pa.int64()), ("name", pa.string())])
INDEX = 'CREATE INDEX "_etl_lineage_t" ON "t" ("_etl_job_id", "_etl_batch")'


def foreign(job, table="t"):
    return (f'CREATE INDEX "_etl_foreign_{job}_{table}" ON "{table}" (_etl_job_id) '
            f"WHERE _etl_job_id IS NOT '{job}'")


def _batch(first, n):
    return pa.record_batch({"x": list(range(first, first + n)),
                            "name": [f"n{i}" for i in range(first, first + n)]}, schema=SCHEMA)


def _load(path, job, batches, *, mode="append", first=1, batch0=0):
    """Open the destination as job ``job`` and write ``batches`` batches of 10 rows
    (numbered after ``batch0``, as a resume numbers them)."""
    d = dest.SqliteDestination(path, job, table="t", mode=mode, timeout_ms=1000,
                               retry_attempts=1, retry_delay_ms=1)
    d.open(SCHEMA)
    for b in range(1, batches + 1):
        start = first + (b - 1) * 10
        d.write(batch0 + b, _batch(start, 10), start, start + 9)
    d.publish(SCHEMA)
    d.close()


def _indexes(path):
    db = sqlite3.connect(path)
    out = [r[0] for r in db.execute("SELECT sql FROM sqlite_master WHERE type = 'index' "
                                    "AND tbl_name = 't'")]
    db.close()
    return out


def _rows(path):
    db = sqlite3.connect(path)
    out = db.execute("SELECT x, _etl_job_id, _etl_batch FROM t ORDER BY x").fetchall()
    db.close()
    return out


def test_a_job_filling_its_own_table_keeps_no_index_until_another_job_writes(tmp_path):
    path = tmp_path / "w.db"
    _load(path, "job1", 2)
    assert _indexes(path) == [foreign("job1")]      # created by job1: no entry per row
    _load(path, "job1", 1, first=21, batch0=2)      # a resume of the same job: its own
    assert _indexes(path) == [foreign("job1")]
    _load(path, "job2", 1, first=100)               # shared from now on
    assert _indexes(path) == [INDEX]


def test_atomic_job_indexes_an_existing_table_at_publish_not_a_new_one(tmp_path):
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    _load(new, "job1", 2, mode="atomic")
    assert _indexes(new) == [foreign("job1")] and len(_rows(new)) == 20
    _load(old, "job1", 1)
    _load(old, "job2", 1, mode="atomic", first=50)
    assert _indexes(old) == [INDEX]


def test_rollback_of_an_unindexed_table_it_created_drops_it(tmp_path):
    path = tmp_path / "w.db"
    _load(path, "job1", 3)
    report = dest.SqliteDestination.rollback(path, "job1")
    assert report.dropped == ["t"] and report.rows == {"t": 30}
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone() == (0,)
    db.close()


def test_rollback_to_a_checkpoint_without_index_deletes_exactly_the_later_batches(tmp_path):
    path = tmp_path / "w.db"
    _load(path, "job1", 3)
    dry = dest.SqliteDestination.rollback(path, "job1", after_batch=1, dry_run=True)
    assert dry.rows == {"t": 20} and len(_rows(path)) == 30
    report = dest.SqliteDestination.rollback(path, "job1", after_batch=1)
    assert report.rows == {"t": 20} and report.batches == 2
    assert _rows(path) == [(x, "job1", 1) for x in range(1, 11)]


def test_a_row_written_by_hand_keeps_the_unindexed_table_and_itself(tmp_path):
    path = tmp_path / "w.db"
    _load(path, "job1", 2)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO t (x, name) VALUES (999, 'by hand')")   # no lineage
    db.commit()
    db.close()
    assert _indexes(path) == [foreign("job1")]
    report = dest.SqliteDestination.rollback(path, "job1")
    assert report.rows == {"t": 20} and "t" not in report.dropped
    assert _rows(path) == [(999, None, None)]


def test_rollback_in_a_shared_table_leaves_the_other_jobs_rows(tmp_path):
    path = tmp_path / "w.db"
    _load(path, "job1", 2)
    _load(path, "job2", 2, first=100)
    report = dest.SqliteDestination.rollback(path, "job1")
    assert report.rows == {"t": 20} and report.dropped == []
    assert _rows(path) == [(x, "job2", 1 + (x - 100) // 10) for x in range(100, 120)]
    assert _indexes(path) == [INDEX]


def test_a_replaced_table_keeps_its_foreign_row_index_until_it_is_shared(tmp_path):
    path = tmp_path / "w.db"
    _load(path, "job1", 1)
    _load(path, "job2", 2, mode="replace", first=50)    # the stage, renamed, is the table
    db = sqlite3.connect(path)
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                      "AND tbl_name = 't'")]
    db.close()
    assert names == ["_etl_foreign_job2__etl_stage_job2_t"]
    report = dest.SqliteDestination.rollback(path, "job2")
    assert report.restored == ["t"] and _rows(path) == [(x, "job1", 1) for x in range(1, 11)]
    _load(path, "job2", 2, mode="replace", first=50)
    _load(path, "job3", 1, first=200)                   # shared: the lineage index instead
    assert _indexes(path) == [INDEX]


def test_the_proof_before_a_drop_is_a_seek_in_the_foreign_row_index(tmp_path):
    path = tmp_path / "w.db"
    _load(path, "job1", 1)
    db = sqlite3.connect(path)
    plan = db.execute("EXPLAIN QUERY PLAN SELECT EXISTS (SELECT 1 FROM t WHERE "
                      "_etl_job_id IS NOT 'job1')").fetchall()
    db.close()
    assert any("_etl_foreign_job1_t" in row[-1] for row in plan)
