"""Faults against the real server, through the CLI: kill -9 of the engine, a backend
terminated, a server restart, rollback back to a checkpoint, two jobs in one table."""

from __future__ import annotations

import threading

from faults.faultkit import TIMEOUT, kill9, wait_for

from .pg import PgServer
from .pgkit import PgLab, pg_digest, user_tables


def _kill_after(lab: PgLab, batches: int) -> str:
    known = lab.job_ids()
    proc = lab.spawn("run", lab.pipeline, "--no-ui", "--json")
    wait_for(lambda: proc.poll() is not None or lab.committed_in_store(known) >= batches,
             timeout=TIMEOUT, every=0.003)
    assert proc.poll() is None, "the job ended before it could be killed"
    assert kill9(proc)
    new = list(lab.job_ids() - known)
    assert len(new) == 1
    return new[0]


def test_kill9_then_resume_equals_an_uninterrupted_run(pg_reference, tmp_path, pg: PgServer, orders_pg_csv):
    ref, ref_digest, ref_rejects = pg_reference
    for mode in ("append", "atomic"):
        db = pg.new_database()
        lab = PgLab(tmp_path / mode, orders_pg_csv, pg, db, mode=mode)
        job = _kill_after(lab, 4)
        assert lab.job(job)["status"] == "interrupted"
        if mode == "atomic":
            assert "orders" not in user_tables(pg, db)       # nothing published yet
        summary = lab.resume(job)
        assert summary["status"] == "succeeded"
        assert pg_digest(pg, db) == ref_digest, mode
        assert lab.rejects(job) == ref_rejects
        assert not [t for t in user_tables(pg, db) if t.startswith("_etl_stage_")]
        batches = lab.q(f"SELECT count(*), count(DISTINCT batch) FROM _etl_loads WHERE job_id = '{job}'")
        assert batches[0][0] == batches[0][1]


def test_rollback_to_a_checkpoint_then_resume_and_whole(tmp_path, pg: PgServer, pgdb: str,
                                                       orders_pg_csv):
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb)
    summary = lab.run()
    job = summary["job_id"]
    full = pg_digest(pg, pgdb)
    cps = lab.checkpoints(job)
    assert len(cps) >= 3
    cp = cps[1]
    keep = cp["checkpoint_data"]["batch"] if "checkpoint_data" in cp else cp["batch"]
    lab.rollback(job, "--to", str(cp["id"]))
    assert lab.q("SELECT max(_etl_batch) FROM orders") == [(keep,)]
    assert lab.q(f"SELECT max(batch) FROM _etl_loads WHERE job_id = '{job}'") == [(keep,)]
    assert lab.resume(job)["status"] == "succeeded"
    assert pg_digest(pg, pgdb) == full
    lab.rollback(job)
    assert "orders" not in user_tables(pg, pgdb)          # created by the job, nothing else in it
    assert lab.q("SELECT count(*) FROM _etl_loads") == [(0,)]


def test_two_jobs_in_one_table_roll_back_independently(tmp_path, pg: PgServer, pgdb: str,
                                                       orders_pg_csv):
    from faults.faultkit import write_orders
    other = tmp_path / "b.csv"
    write_orders(other, 20_000, seed=99)
    a = PgLab(tmp_path / "a", orders_pg_csv, pg, pgdb, table="shared")
    b = PgLab(tmp_path / "b", other, pg, pgdb, table="shared")
    # both at once: their rows (and any identity values) interleave
    results = {}
    threads = [threading.Thread(target=lambda lab=lab, k=k: results.__setitem__(k, lab.run()))
               for k, lab in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ja, jb = results["a"]["job_id"], results["b"]["job_id"]
    # the second job to write built the lineage index that finds each job's rows
    assert pg.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'shared' AND "
                      "indexname LIKE '_etl_lineage_%'", db=pgdb) == [(1,)]
    only_b = pg_digest(pg, pgdb, "shared", f"WHERE _etl_job_id = '{jb}'")
    a.rollback(ja)
    assert "shared" in user_tables(pg, pgdb)                # b's rows keep it
    assert pg_digest(pg, pgdb, "shared") == only_b
    assert only_b[0] == results["b"]["rows_loaded"]
    b.rollback(jb)
    # dropped if b made it; if a made it, it stays, empty (a's rollback kept it for b's rows)
    assert "shared" not in user_tables(pg, pgdb) or pg.execute("SELECT count(*) FROM shared",
                                                               db=pgdb) == [(0,)]
    assert pg.execute("SELECT count(*) FROM _etl_loads", db=pgdb) == [(0,)]


class _Blocked:
    """A second job appending to a table that a test session holds locked: its first COPY
    waits on the lock, so the fault lands mid-job whatever the machine's speed."""

    def __init__(self, tmp_path, pg: PgServer, source, env=None):
        self.pg, self.db = pg, pg.new_database()
        first = PgLab(tmp_path / "first", source, pg, self.db)
        self.first = first.run()                     # makes the table (lineage)
        self.lab = PgLab(tmp_path / "lab", source, pg, self.db)
        self.locker = pg.connect(self.db, autocommit=False)
        self.locker.cursor().execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        self.known = self.lab.job_ids()
        self.proc = self.lab.spawn("run", self.lab.pipeline, "--no-ui", "--json", env=env)
        wait_for(lambda: self.proc.poll() is not None or self.pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
            f"datname = '{self.db}'")[0][0], timeout=TIMEOUT, every=0.01)
        assert self.proc.poll() is None, self.proc.err_path.read_text()

    def release(self) -> None:
        try:
            self.locker.rollback()
            self.locker.close()
        except Exception:
            pass                                     # a restart took it already

    def finish(self, ref_digest, ref_rejects) -> str:
        assert self.proc.wait(timeout=TIMEOUT) in (0, 1), self.proc.err_path.read_text()
        job = list(self.lab.job_ids() - self.known)[0]
        if self.lab.job(job)["status"] != "succeeded":   # retries exhausted: resumable
            assert self.lab.resume(job)["status"] == "succeeded"
        assert pg_digest(self.pg, self.db, where=f"WHERE _etl_job_id = '{job}'") == ref_digest
        assert self.lab.rejects(job) == ref_rejects
        return job


def test_backend_terminated_mid_job_is_retried_and_exact(pg_reference, tmp_path, pg: PgServer, orders_pg_csv):
    ref, ref_digest, ref_rejects = pg_reference
    blocked = _Blocked(tmp_path, pg, orders_pg_csv)
    killed = pg.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                        f"wait_event_type = 'Lock' AND datname = '{blocked.db}'")[0][0]
    assert killed == 1
    blocked.release()
    job = blocked.finish(ref_digest, ref_rejects)
    summary = blocked.lab.cli("show", job, "--json").last_json()
    assert summary["status"] == "succeeded"
    assert summary["retries"] >= 1                      # reconnected and retried, not resumed


def test_server_restart_mid_job_then_resume_is_exact(pg_reference, tmp_path, pg: PgServer, orders_pg_csv):
    ref, ref_digest, ref_rejects = pg_reference
    blocked = _Blocked(tmp_path, pg, orders_pg_csv)
    pg.restart()                                   # pg_ctl restart -m fast: every session cut
    blocked.release()
    blocked.finish(ref_digest, ref_rejects)


def test_cleanup_drops_a_killed_jobs_stage_and_an_expired_backup(tmp_path, pg: PgServer, pgdb: str,
                                                                orders_pg_csv):
    pg.execute("CREATE TABLE orders (id bigint, note text)", db=pgdb)
    replace = PgLab(tmp_path / "replace", orders_pg_csv, pg, pgdb, mode="replace")
    replace.run()
    atomic = PgLab(tmp_path / "atomic", orders_pg_csv, pg, pgdb, mode="atomic", table="other")
    atomic.state = replace.state                          # one store: cleanup sees both jobs
    job = _kill_after(atomic, 3)
    stages = [t for t in user_tables(pg, pgdb) if t.startswith("_etl_stage_")]
    assert stages == [f"_etl_stage_{job}_other"]
    dry = atomic.cli("cleanup", "--older-than", "0", "--dry-run")
    assert dry.returncode == 0, str(dry)
    # the leftovers named as people read a PostgreSQL destination, never with the URL's user
    assert "postgres://" in dry.stdout and "public._etl_replaced_" in dry.stdout, dry.stdout
    assert "postgresql://" not in dry.stdout and "@" not in dry.stdout, dry.stdout
    assert stages == [t for t in user_tables(pg, pgdb) if t.startswith("_etl_stage_")]
    res = atomic.cli("cleanup", "--older-than", "0")
    assert res.returncode == 0, str(res)
    left = user_tables(pg, pgdb)
    assert not [t for t in left if t.startswith(("_etl_stage_", "_etl_replaced_"))], left
    assert "other" not in left and "orders" in left
    assert atomic.job(job)["status"] == "rolled_back"


def test_kill9_mid_publish_then_resume_publishes_once(pg_reference, tmp_path, pg: PgServer, pgdb: str,
                                                     orders_pg_csv):
    """The atomic job's publish (INSERT … SELECT from its stage) waits on a lock the test
    holds; the engine is killed there. The server rolls the publish back when it finds the
    client gone; resume publishes exactly once."""
    ref, ref_digest, ref_rejects = pg_reference
    first = PgLab(tmp_path / "first", orders_pg_csv, pg, pgdb)
    first.run()                                   # the target exists, with lineage and index
    lab = PgLab(tmp_path / "lab", orders_pg_csv, pg, pgdb, mode="atomic")
    locker = pg.connect(pgdb, autocommit=False)
    locker.cursor().execute("LOCK TABLE orders IN SHARE MODE")   # blocks INSERT, not reads
    known = lab.job_ids()
    proc = lab.spawn("run", lab.pipeline, "--no-ui", "--json")
    wait_for(lambda: proc.poll() is not None or pg.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
        f"datname = '{pgdb}' AND query LIKE 'INSERT INTO%'")[0][0], timeout=TIMEOUT, every=0.01)
    assert kill9(proc)
    locker.rollback()
    locker.close()
    job = list(lab.job_ids() - known)[0]
    wait_for(lambda: not pg.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                    f"datname = '{pgdb}' AND state <> 'idle' "
                                    "AND pid <> pg_backend_pid()")[0][0],
             timeout=TIMEOUT, every=0.05)
    assert lab.q(f"SELECT count(*) FROM orders WHERE _etl_job_id = '{job}'") == [(0,)]
    assert lab.resume(job)["status"] == "succeeded"
    assert pg_digest(pg, pgdb, where=f"WHERE _etl_job_id = '{job}'") == ref_digest
    assert lab.rejects(job) == ref_rejects
    assert not [t for t in user_tables(pg, pgdb) if t.startswith("_etl_stage_")]


def _branched(lab: PgLab) -> None:
    """The lab's pipeline split in three branches: paid orders and all orders into two
    tables of one PostgreSQL database (one ledger table for both), all into a SQLite file."""
    text = lab.pipeline.read_text()
    head, sep, load = text.rpartition("[[phases]]\ntype = \"load\"")
    assert sep
    url = lab.pg.url(lab.db)
    lab.pipeline.write_text(head + f'''[[phases]]
type = "branch"

[[phases.branches]]
name = "paid"
filter = "status == 'paid'"

[[phases.branches.phases]]
type = "load"
destination = "postgres"
url = "{url}"
table = "paid"

[[phases.branches]]
name = "all"

[[phases.branches.phases]]
type = "load"
destination = "postgres"
url = "{url}"
table = "orders"

[[phases.branches]]
name = "copy"

[[phases.branches.phases]]
type = "load"
path = "copy.db"
table = "orders"
''')


def _assert_branches_exact(lab: PgLab, pg_reference) -> None:
    paid = lab.q("SELECT count(*) FROM paid")[0][0]
    assert paid > 0 and lab.q("SELECT count(*) FROM orders WHERE status = 'paid'") == [(paid,)]
    assert lab.q("SELECT count(*), count(DISTINCT id) FROM paid")[0] == (paid, paid)
    total = lab.q("SELECT count(*) FROM orders")[0][0]
    assert lab.q("SELECT count(DISTINCT id) FROM orders") == [(total,)]
    assert lab.q("SELECT table_name, sum(rows)::bigint FROM _etl_loads GROUP BY 1 ORDER BY 1") == \
        [("orders", total), ("paid", paid)]
    from .pgkit import sqlite_digest
    assert pg_digest(lab.pg, lab.db) == sqlite_digest(lab.folder / "copy.db")
    ref, ref_digest, _ = pg_reference     # unbranched, uninterrupted
    assert pg_digest(lab.pg, lab.db) == ref_digest


def test_branches_into_two_postgres_tables_and_a_sqlite_file_resume_and_roll_back(pg_reference,
        tmp_path, pg: PgServer, pgdb: str, orders_pg_csv):
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb)
    _branched(lab)
    job = _kill_after(lab, 3)
    summary = lab.resume(job)
    assert summary["status"] == "succeeded"
    # (the resumed run's branch counters cover what it loaded itself)
    _assert_branches_exact(lab, pg_reference)
    lab.rollback(job)
    assert user_tables(pg, pgdb) == ["_etl_loads", "_etl_tables"]


def test_kill_between_two_tables_commits_of_one_batch(pg_reference, tmp_path, pg: PgServer,
                                                       pgdb: str, orders_pg_csv):
    """"orders" is locked by another session after a few batches: "paid" commits the next
    batch, "orders" waits for the lock, and the kill lands between the two tables' commits.
    Both tables' ledger entries live in one ledger table: resume must not count the batch
    "paid" holds as held by "orders" too, or "orders" would lose it."""
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb)
    _branched(lab)
    known = lab.job_ids()
    proc = lab.spawn("run", lab.pipeline, "--no-ui", "--json")
    wait_for(lambda: proc.poll() is not None or lab.committed_in_store(known) >= 3,
             timeout=TIMEOUT, every=0.003)
    locker = pg.connect(pgdb, autocommit=False)
    try:
        locker.cursor().execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        [job] = lab.job_ids() - known

        def batches(table: str) -> int:
            return lab.q(f"SELECT count(*) FROM _etl_loads WHERE job_id = '{job}' "
                         f"AND table_name = '{table}'")[0][0]
        wait_for(lambda: proc.poll() is not None or batches("paid") > batches("orders"),
                 timeout=TIMEOUT, every=0.01)
        assert proc.poll() is None and kill9(proc)
    finally:
        locker.rollback()
        locker.close()
    assert batches("paid") == batches("orders") + 1          # one batch in "paid" only
    assert lab.resume(job)["status"] == "succeeded"
    _assert_branches_exact(lab, pg_reference)


def test_lock_timeout_fails_the_job_resumably_with_the_servers_words(pg_reference, tmp_path, pg: PgServer,
                                                                    orders_pg_csv):
    """PIPELINE_TRANSACTION_TIMEOUT_MS is the session's lock_timeout: a table locked by
    someone else gives 55P03, retried, then the job fails resumably; resume is exact."""
    ref, ref_digest, ref_rejects = pg_reference
    db = pg.new_database()
    PgLab(tmp_path / "first", orders_pg_csv, pg, db).run()
    lab = PgLab(tmp_path / "lab", orders_pg_csv, pg, db)
    locker = pg.connect(db, autocommit=False)
    locker.cursor().execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    try:
        summary = lab.run(expect=1, env={"PIPELINE_TRANSACTION_TIMEOUT_MS": "300",
                                         "PIPELINE_BATCH_RETRY_ATTEMPTS": "2",
                                         "PIPELINE_BATCH_RETRY_DELAY_MS": "20"})
    finally:
        locker.rollback()
        locker.close()
    assert summary["status"] == "failed"
    assert "lock timeout" in summary["error"] and "55P03" in summary["error"], summary["error"]
    assert summary["retries"] == 2
    job = summary["job_id"]
    assert lab.resume(job)["status"] == "succeeded"
    assert pg_digest(pg, db, where=f"WHERE _etl_job_id = '{job}'") == ref_digest
    assert lab.rejects(job) == ref_rejects


def test_kill9_mid_copy_then_resume_is_exact(pg_reference, tmp_path, pg: PgServer, orders_pg_csv):
    """The engine killed while its COPY is in flight (waiting on a lock the test holds): the
    server rolls the batch back when it finds the client gone; resume is exact."""
    ref, ref_digest, ref_rejects = pg_reference
    blocked = _Blocked(tmp_path, pg, orders_pg_csv)
    assert kill9(blocked.proc)
    blocked.release()
    job = list(blocked.lab.job_ids() - blocked.known)[0]
    assert blocked.lab.job(job)["status"] == "interrupted"
    assert blocked.lab.resume(job)["status"] == "succeeded"
    assert pg_digest(pg, blocked.db, where=f"WHERE _etl_job_id = '{job}'") == ref_digest
    assert blocked.lab.rejects(job) == ref_rejects
