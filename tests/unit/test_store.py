"""State store: migrations, WAL, jobs, batches with rejects and counters, JSON round trips."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from etlconsole.errors import UserError
from etlconsole.store import StateStore, new_job_id
from etlconsole.store.schema import MIGRATIONS

TABLES = {"import_jobs", "pipeline_checkpoints", "pipeline_batches", "pipeline_rejects",
          "pipeline_metrics", "pipeline_events"}


@pytest.fixture
def store(tmp_path):
    s = StateStore(tmp_path / "state" / "state.db")     # parent folder is created
    yield s
    s.close()


def reject(row, message="bad", column="c", values=None):
    return {"row": row, "phase": "phase 2 (validate)", "rule": "type", "column": column,
            "message": message, "values": json.dumps(values if values is not None else {"c": "x"})}


def counts(store, job_id):
    db = store.conn
    return (db.execute("SELECT count(*) FROM pipeline_batches WHERE job_id=?", [job_id]).fetchone()[0],
            db.execute("SELECT count(*) FROM pipeline_rejects WHERE job_id=?", [job_id]).fetchone()[0])


# --- schema ------------------------------------------------------------------------------

def test_migrations_set_user_version_and_tables(store):
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 1
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert TABLES <= names
        cols = {r[1] for r in conn.execute("PRAGMA table_info(pipeline_checkpoints)")}
        assert {"id", "job_id", "phase", "checkpoint_data", "row_count", "created_at"} <= cols
        cols = {r[1] for r in conn.execute("PRAGMA table_info(pipeline_batches)")}
        assert {"id", "job_id", "batch_number", "status", "row_start", "row_end", "attempts",
                "error_details", "processed_at", "created_at"} <= cols
    finally:
        conn.close()


def test_wal_mode(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"   # persistent
    finally:
        conn.close()


def test_reopen_is_idempotent(tmp_path):
    path = tmp_path / "s.db"
    a = StateStore(path)
    a.create_job("aaaa1111", pipeline_name="p")
    a.close()
    b = StateStore(path)
    assert b.job("aaaa1111")["pipeline_name"] == "p"
    assert b.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    b.close()


def test_newer_schema_version_is_refused(tmp_path):
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    conn.close()
    with pytest.raises(UserError, match=r"future.db: the state store has schema version \d+, "
                       "written by a newer etlconsole; .*upgrade etlconsole, or give another --state"):
        StateStore(path)


def test_not_a_database_is_user_error(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="state store"):
        StateStore(path)


# --- jobs --------------------------------------------------------------------------------

def test_job_create_update_lookup(store):
    jid = store.create_job("abc12345", pipeline_name="orders", source_path="/x/orders.csv",
                           dialect={"delimiter": ";", "notes": ["sniffed"]},
                           settings={"chunk_size": 10})
    assert jid == "abc12345"
    job = store.job("abc12345")
    assert job["status"] == "pending" and job["pipeline_name"] == "orders"
    assert job["dialect"] == {"delimiter": ";", "notes": ["sniffed"]}      # JSON decoded
    assert job["settings"] == {"chunk_size": 10}
    assert job["created_at"] and job["pid"]
    store.update_job("abc12345", status="running", rows_read=10,
                     phase_stats={"phase 1 (clean)": {"rows_in": 10}})
    job = store.job("abc")                                                # unique prefix
    assert job["status"] == "running" and job["rows_read"] == 10
    assert job["phase_stats"] == {"phase 1 (clean)": {"rows_in": 10}}


def test_lookup_last_and_ambiguous_prefix(store):
    store.create_job("abc11111", pipeline_name="a")
    time.sleep(0.005)
    store.create_job("abd22222", pipeline_name="b")
    assert store.job("last")["id"] == "abd22222"
    assert store.job("abc")["id"] == "abc11111"
    assert store.job("abd22222")["pipeline_name"] == "b"
    with pytest.raises(UserError, match="ambiguous"):
        store.job("ab")
    with pytest.raises(UserError, match="no job 'zzz'"):
        store.job("zzz")
    assert [j["id"] for j in store.jobs()] == ["abd22222", "abc11111"]


def test_last_on_empty_store(store):
    with pytest.raises(UserError):
        store.job("last")


def test_bad_status_rejected_by_schema(store):
    store.create_job("abc12345", pipeline_name="p")
    with pytest.raises(sqlite3.IntegrityError):
        store.update_job("abc12345", status="bogus")
    assert store.job("abc12345")["status"] == "pending"


def test_new_job_id_shape():
    ids = {new_job_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 8 and int(i, 16) >= 0 for i in ids)


# --- batches -----------------------------------------------------------------------------

def record_batch(store, job_id, number, *, row_start, row_end, rows_loaded, rejects, attempts,
                 duration_ms, counters):
    """What the loader does around one destination commit: begin, then commit."""
    store.begin_batch(job_id, number, row_start=row_start, row_end=row_end, rejects=rejects)
    store.commit_batch(job_id, number, rows_loaded=rows_loaded, attempts=attempts,
                       duration_ms=duration_ms, counters=counters)


def test_record_batch_writes_batch_rejects_and_counters(store):
    store.create_job("job00001", pipeline_name="p")
    record_batch(store, "job00001", 1, row_start=1, row_end=10, rows_loaded=8,
                       rejects=[reject(7, values={"c": "é"}), reject(3, column=None)],
                       attempts=2, duration_ms=12.5,
                       counters={"rows_read": 10, "rows_loaded": 8, "rows_rejected": 2})
    [b] = store.batches("job00001")
    assert (b["batch_number"], b["status"], b["row_start"], b["row_end"]) == (1, "COMMITTED", 1, 10)
    assert (b["rows_loaded"], b["rows_rejected"], b["attempts"]) == (8, 2, 2)
    assert b["duration_ms"] == 12.5 and b["processed_at"]
    rej = list(store.rejects("job00001"))
    assert [r["row"] for r in rej] == [3, 7]                              # ordered by row
    assert rej[1] == {"row": 7, "phase": "phase 2 (validate)", "rule": "type", "column": "c",
                      "message": "bad", "values": {"c": "é"}}
    assert rej[0]["column"] is None
    job = store.job("job00001")
    assert (job["rows_read"], job["rows_loaded"], job["rows_rejected"]) == (10, 8, 2)
    assert job["heartbeat_at"]


def test_a_batch_of_many_rejects_is_stored_whole_and_in_order(store):
    """Rejects go in several rows per statement (store._insert_rejects): a batch of more
    than one statement's worth keeps every reject, each field in its column, in the
    order the engine gave them (their ids), with a branch on those that have one."""
    store.create_job("job00001", pipeline_name="p")
    rejects = [dict(reject(row, message=f"m{row}", values={"c": str(row)}),
                    **({"branch": "eu", "phase_label": "eu > load"} if row % 7 == 0 else {}))
               for row in range(2_500, 0, -1)]
    record_batch(store, "job00001", 1, row_start=1, row_end=2_500, rows_loaded=0, rejects=rejects,
                 attempts=1, duration_ms=1.0, counters={})
    got = store.conn.execute('SELECT job_id, batch_number, row, phase, phase_label, branch, rule, '
                             'column_name, message, "values" FROM pipeline_rejects ORDER BY id').fetchall()
    assert got == [("job00001", 1, r["row"], r["phase"], r.get("phase_label"), r.get("branch"),
                    r["rule"], r["column"], r["message"], r["values"]) for r in rejects]
    assert store.batches("job00001")[0]["rows_rejected"] == 2_500


class RecordingInserts:
    """The store's connection, noting each distinct statement that inserts rejects."""

    def __init__(self, conn):
        self.conn, self.inserts = conn, set()

    def execute(self, sql, *args):
        if sql.startswith("INSERT INTO pipeline_rejects"):
            self.inserts.add(sql)
        return self.conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_rejects_of_every_count_go_in_a_few_statement_shapes(store):
    """The connection caches every statement it prepares (~1 KB a row of a multi-row
    INSERT): batches whose rejects came in every count made one cached statement per
    count, ~60 MB, and a 2M-row job under a 200 MB budget failed. Four shapes, whatever
    the counts, and every reject stored."""
    store.create_job("job00001", pipeline_name="p")
    store.conn = recording = RecordingInserts(store.conn)
    counts = [1, 7, 49, 50, 51, 499, 500, 501, 1_234, 2_500, 333, 77, 999, 4]
    for number, n in enumerate(counts, start=1):
        store.begin_batch("job00001", number, row_start=1, row_end=n,
                          rejects=[reject(row) for row in range(1, n + 1)])
    assert len(recording.inserts) <= 4, len(recording.inserts)
    stored = dict(recording.conn.execute("SELECT batch_number, count(*) FROM pipeline_rejects "
                                         "GROUP BY batch_number").fetchall())
    assert stored == {number: n for number, n in enumerate(counts, start=1)}


def test_record_batch_replaces_same_batch_number(store):
    store.create_job("job00001", pipeline_name="p")
    for attempt in (1, 2):
        record_batch(store, "job00001", 1, row_start=1, row_end=5, rows_loaded=5, rejects=[],
                           attempts=attempt, duration_ms=1.0, counters={"rows_read": 5})
    [b] = store.batches("job00001")
    assert b["attempts"] == 2


def test_record_batch_is_atomic(store):
    store.create_job("job00001", pipeline_name="p")
    record_batch(store, "job00001", 1, row_start=1, row_end=5, rows_loaded=5, rejects=[],
                       attempts=1, duration_ms=1.0, counters={"rows_read": 5, "rows_loaded": 5})
    # the second reject breaks a NOT NULL constraint half-way through the transaction
    bad = [reject(6), reject(8, message=None)]
    with pytest.raises(sqlite3.IntegrityError):
        record_batch(store, "job00001", 2, row_start=6, row_end=10, rows_loaded=3, rejects=bad,
                           attempts=1, duration_ms=1.0,
                           counters={"rows_read": 10, "rows_loaded": 8, "rows_rejected": 2})
    assert counts(store, "job00001") == (1, 0)          # nothing of batch 2 is left
    assert store.job("job00001")["rows_read"] == 5


def test_a_part_is_recorded_from_its_pack_renumbered_whole_and_once(store):
    """A Dask part (StateStore.record_part): its batches COMMITTED, its rejects copied from
    the worker's pack in their order, each field in its column, records renumbered after
    the parts before it (a reject of no record stays so), the job's fields and the part's
    checkpoint — recorded again (a resume re-running it), it replaces itself."""
    from etlconsole.store.packed import RejectPack, unpack
    store.create_job("job00001", pipeline_name="p")
    pack = RejectPack()
    first = [dict(reject(2, message="m2", values={"c": "é"}), branch="eu", phase_label="eu > load"),
             reject(1, column=None)]
    pack.add(1_000_001, first)
    pack.add(1_000_002, [reject(None, message="no record")])
    data = pack.pack()
    assert [(r["batch_number"], r["row"], r["message"]) for r in unpack(data)] == \
        [(1_000_001, 2, "m2"), (1_000_001, 1, "bad"), (1_000_002, None, "no record")]
    batches = [{"batch_number": 1_000_001, "row_start": 101, "row_end": 105, "rows_loaded": 3,
                "rows_rejected": 2, "attempts": 1, "duration_ms": 2.0},
               {"batch_number": 1_000_002, "row_start": 106, "row_end": 110, "rows_loaded": 5,
                "rows_rejected": 1, "attempts": 2, "duration_ms": 3.0}]
    for _ in range(2):
        store.record_part("job00001", batches, data, row_offset=100, row_count=110,
                          job_fields={"rows_read": 110},
                          checkpoint={"part": 1, "records": 10})
        got = store.conn.execute('SELECT job_id, batch_number, row, phase, phase_label, branch, rule, '
                                 'column_name, message, "values" FROM pipeline_rejects ORDER BY id')
        assert got.fetchall() == [
            ("job00001", 1_000_001, 102, first[0]["phase"], "eu > load", "eu", "type", "c", "m2",
             first[0]["values"]),
            ("job00001", 1_000_001, 101, first[1]["phase"], None, None, "type", None, "bad",
             first[1]["values"]),
            ("job00001", 1_000_002, None, first[1]["phase"], None, None, "type", "c", "no record",
             first[1]["values"])]
        assert [(b["batch_number"], b["status"], b["row_start"], b["row_end"], b["rows_loaded"],
                 b["rows_rejected"], b["attempts"]) for b in store.batches("job00001")] == \
            [(1_000_001, "COMMITTED", 101, 105, 3, 2, 1), (1_000_002, "COMMITTED", 106, 110, 5, 1, 2)]
    assert [(c["phase"], c["checkpoint_data"], c["row_count"]) for c in store.checkpoints("job00001")] == \
        [("part", {"part": 1, "records": 10}, 110)] * 2
    job = store.job("job00001")
    assert job["rows_read"] == 110
    assert store.conn.execute("PRAGMA database_list").fetchall()[1:] == []    # the pack detached


def test_what_reading_files_learned_is_a_row_per_file_merged_into_the_fingerprint(store):
    """A job of many files: each file's facts (note_files, or a part's record) go to its own
    row, kept when a later note leaves them out; reading the job (by id, in the list, by
    pid, as changed) gives the fingerprint's files with them, and a job from before,
    whose fingerprint holds them, keeps them."""
    files = [{"path": f"f{i}.csv", "index": i, "size": 10} for i in range(3)]
    store.create_job("job00001", pipeline_name="p", pid=4242, source_fingerprint={"size": 30, "files": files})
    store.note_files("job00001", [{"index": 0, "first_record": 1}])
    store.note_files("job00001", [{"index": 0, "records": 5, "content_bytes": 10, "content_sha256": "x"},
                                  {"index": 1, "first_record": 6}])
    store.record_part("job00001", [], None, row_offset=5, row_count=9, job_fields={"rows_read": 9},
                      checkpoint={"part": 1}, files=[{"index": 1, "records": 4}])
    want = [{"path": "f0.csv", "index": 0, "size": 10, "first_record": 1, "records": 5,
             "content_bytes": 10, "content_sha256": "x"},
            {"path": "f1.csv", "index": 1, "size": 10, "first_record": 6, "records": 4},
            {"path": "f2.csv", "index": 2, "size": 10}]
    assert store.job("job00001")["source_fingerprint"]["files"] == want
    assert store.jobs()[0]["source_fingerprint"]["files"] == want
    assert store.job_by_pid(4242)["source_fingerprint"]["files"] == want
    assert store.jobs_changed_since("")[0]["source_fingerprint"]["files"] == want
    raw = store.conn.execute("SELECT source_fingerprint FROM import_jobs").fetchone()[0]
    assert json.loads(raw)["files"] == files       # what the job began with, never rewritten
    before = [dict(f, first_record=1 + 10 * f["index"], records=10) for f in files]
    store.create_job("job00002", pipeline_name="p", source_fingerprint={"size": 30, "files": before})
    assert store.job("job00002")["source_fingerprint"]["files"] == before


def test_a_part_whose_record_fails_leaves_nothing_of_it(store):
    from etlconsole.store.packed import RejectPack
    store.create_job("job00001", pipeline_name="p")
    pack = RejectPack()
    pack.add(7, [reject(1), reject(2, message=None)])
    with pytest.raises(sqlite3.IntegrityError):     # the second reject breaks a NOT NULL
        store.record_part("job00001", [{"batch_number": 7, "row_start": 1, "row_end": 5, "rows_loaded": 1}],
                          pack.pack(), row_offset=0, row_count=5, job_fields={"rows_read": 5},
                          checkpoint={"part": 0})
    assert counts(store, "job00001") == (0, 0)
    assert store.checkpoints("job00001") == [] and store.job("job00001")["rows_read"] != 5
    assert store.conn.execute("PRAGMA database_list").fetchall()[1:] == []


# --- checkpoints, metrics, events ----------------------------------------------------------

def test_checkpoints_round_trip_json(store):
    store.create_job("job00001", pipeline_name="p")
    data = {"batch": 3, "last_row": 300, "counters": {"rows_read": 300},
            "fingerprint": {"size": 1234, "sha256_head_tail": "ab" * 32}, "note": "ünï"}
    store.add_checkpoint("job00001", "phase 4 (load)", data, row_count=290)
    store.add_checkpoint("job00001", "phase 4 (load)", {"batch": 4}, row_count=390)
    cps = store.checkpoints("job00001")
    assert [c["row_count"] for c in cps] == [290, 390]
    assert cps[0]["checkpoint_data"] == data
    assert cps[0]["phase"] == "phase 4 (load)" and cps[0]["created_at"]
    assert store.checkpoints("other") == []


def test_metrics_round_trip_and_limit(store):
    store.create_job("job00001", pipeline_name="p")
    for i in range(5):
        store.add_metric("job00001", {"rows_read": i * 10, "rss_mb": 50.5 + i, "queue_depth": i})
    ms = store.metrics("job00001")
    assert [m["rows_read"] for m in ms] == [0, 10, 20, 30, 40]
    assert ms[-1]["rss_mb"] == 54.5 and ms[-1]["queue_depth"] == 4
    assert [m["rows_read"] for m in store.metrics("job00001", limit=2)] == [30, 40]   # latest, in order
    assert store.job("job00001")["heartbeat_at"]


def test_events_round_trip_json(store):
    store.create_job("job00001", pipeline_name="p")
    store.add_event("job00001", "started", source="orders.csv", sniff={"delimiter": ","})
    store.add_event("job00001", "retry", level="warning", attempt=2)
    store.add_event(None, "cleanup")                    # events need not belong to a job
    ev = store.events("job00001")
    assert [(e["event"], e["level"]) for e in ev] == [("started", "info"), ("retry", "warning")]
    assert ev[0]["details"] == {"source": "orders.csv", "sniff": {"delimiter": ","}}
    assert ev[1]["details"] == {"attempt": 2}


def test_clone_is_a_second_connection_on_the_same_file(store):
    store.create_job("job00001", pipeline_name="p")
    other = store.clone()
    try:
        assert other.conn is not store.conn
        assert other.job("job00001")["pipeline_name"] == "p"
    finally:
        other.close()


def test_many_processes_opening_a_new_store_at_once(tmp_path):
    """Two jobs started together on a fresh machine both migrate the new store: one must
    wait for the other, not fail with 'table import_jobs already exists'."""
    import sqlite3
    import subprocess
    import sys
    code = "import sys; from etlconsole.store import StateStore; StateStore(sys.argv[1])"
    for i in range(3):
        path = tmp_path / f"state{i}.db"
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE)
                 for _ in range(4)]
        results = [(p.wait(timeout=60), p.stderr.read().decode()) for p in procs]
        assert all(rc == 0 for rc, _ in results), results
        from etlconsole.store.schema import MIGRATIONS
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_a_store_opened_while_another_process_locks_it_is_retried(tmp_path, monkeypatch):
    """SQLite says "database is locked" at once (no busy wait) when two processes opening a
    new store both want the lock the switch to WAL needs; the open tries again."""
    from etlconsole.store import schema
    from etlconsole.store import store as store_module
    real, calls = schema.migrate, []

    def locked_twice(conn):
        calls.append(1)
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        real(conn)

    monkeypatch.setattr(store_module, "migrate", locked_twice)
    s = StateStore(tmp_path / "state.db")
    s.create_job("a", pipeline_name="p")
    assert s.job("a")["id"] == "a" and len(calls) == 3
    s.close()


def test_a_store_that_stays_locked_is_one_clear_error(tmp_path, monkeypatch):
    from etlconsole.store import store as store_module

    def locked(conn):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store_module, "migrate", locked)
    monkeypatch.setattr(store_module.time, "sleep", lambda s: None)
    with pytest.raises(UserError, match="cannot open the state store: database is locked"):
        StateStore(tmp_path / "state.db")


# --- jobs whose engine is gone ----------------------------------------------------------------

def test_a_job_whose_process_is_gone_is_marked_interrupted(store, monkeypatch):
    from etlconsole.store import store as store_module
    store.create_job("job00001", pipeline_name="p")
    store.update_job("job00001", status="running", pid=999_999_999)
    monkeypatch.setattr(store_module, "_alive", lambda pid, started: False)
    assert store.mark_dead_jobs() == ["job00001"]
    job = store.job("job00001")
    assert job["status"] == "interrupted" and "stopped without finishing" in job["error"]


def test_a_job_that_ends_while_it_is_looked_at_keeps_its_end(store, monkeypatch):
    """The console looks for running jobs whose process is gone. A job whose engine writes
    its end and exits between that look and the mark keeps its end: seen in CI, a job that
    succeeded was shown — and stored — as interrupted 13 ms later."""
    from etlconsole.store import store as store_module
    store.create_job("job00001", pipeline_name="p")
    store.update_job("job00001", status="running", pid=999_999_999)
    engine = store.clone()

    def finished_then_exited(pid, started):     # the engine's last write, then its exit
        engine.update_job("job00001", status="succeeded", error=None)
        return False
    monkeypatch.setattr(store_module, "_alive", finished_then_exited)
    assert store.mark_dead_jobs() == []
    job = store.job("job00001")
    assert (job["status"], job["error"]) == ("succeeded", None)
    engine.close()
