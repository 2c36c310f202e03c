"""Helpers of the fault suite: real CLI subprocesses, kill -9, and destination digests.

Every engine call is ``python -m etlconsole --state STATE ...`` in its own process,
with an environment scrubbed of the developer's ``PIPELINE_*`` settings, ``PYTHONPATH``
pointing at this checkout's ``src`` and small batches/checkpoints so a 40k-row file gives
about twenty batches and eight checkpoints.

Destinations are compared by *content*: a sha256 over every data column of the table
(lineage columns excluded, since job ids differ between runs), ordered by all columns,
plus the row count and ``count(DISTINCT id)``. Rejects are compared as the multiset of
``(row, phase, rule, column, message)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
ROWS = 40_000
SEED = 424_242
TABLE = "orders"
TIMEOUT = 90
if str(SRC) not in sys.path:     # this checkout's engine, not another installed copy
    sys.path.insert(0, str(SRC))

# Fixed 2000-row batches (min = max): batch k holds the same records in every run, so a
# killed run can be compared batch by batch with the reference. test_crash.py lets the
# sizer vary the sizes instead.
FAST = {"PIPELINE_BATCH_SIZE_MIN": "2000", "PIPELINE_BATCH_SIZE_MAX": "2000", "PIPELINE_CHUNK_SIZE": "2000",
        "PIPELINE_CHECKPOINT_INTERVAL": "5000"}


def make_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIPELINE_") and k != "ETLCONSOLE_DEBUG"}
    env["PYTHONPATH"] = str(SRC)
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONFAULTHANDLER"] = "1"     # a crash of the engine shows every thread's stack
    env.update(FAST)
    env.update(extra or {})
    return env


# -- sample data and pipelines -------------------------------------------------------
def write_orders(path: Path, rows: int = ROWS, seed: int = SEED):
    from etlconsole.sample import write_orders_csv
    return write_orders_csv(path, rows, seed=seed)


def pipeline_text(source: Path, *, mode: str = "append", table: str = TABLE,
                  dest: str = "warehouse.db", on_error: str = "reject") -> str:
    from etlconsole.sample import SAMPLE_PIPELINE_TOML as text
    swaps = [('path = "orders.csv"', f"path = {json.dumps(str(source))}"),
             ('mode = "append"', f'mode = "{mode}"'),
             ('table = "orders"', f"table = {json.dumps(table)}"),
             ('path = "warehouse.db"', f"path = {json.dumps(dest)}"),
             ('on_error = "reject"', f'on_error = "{on_error}"')]
    for old, new in swaps:
        assert text.count(old) == 1, f"sample pipeline changed: {old!r} not found once"
        text = text.replace(old, new)
    return text


# -- subprocesses --------------------------------------------------------------------
@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]

    def last_json(self) -> dict[str, Any]:
        lines = [ln for ln in self.stdout.splitlines() if ln.strip()]
        assert lines, f"no stdout\n{self}"
        return json.loads(lines[-1])

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(ln) for ln in self.stdout.splitlines() if ln.strip()]

    def __str__(self) -> str:
        return (f"$ etlconsole {' '.join(self.args)}\nexit {self.returncode}\n--- stdout\n"
                f"{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}")


LABS: list["Lab"] = []      # every lab made, for the conservation sweep (conftest.py)


class Lab:
    """One scenario: a folder with a pipeline file, a destination and a state store."""

    def __init__(self, folder: Path, source: Path, *, mode: str = "append",
                 table: str = TABLE, on_error: str = "reject", name: str = "pipeline.toml"):
        LABS.append(self)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state = self.folder / "state" / "state.db"
        self.dest = self.folder / "warehouse.db"
        self.table = table
        self.pipeline = self.write_pipeline(name, source, mode=mode, table=table,
                                            on_error=on_error)
        self.env: dict[str, str] = {}     # settings for every command of this scenario
        self._n = 0

    def write_pipeline(self, name: str, source: Path, **kw) -> Path:
        path = self.folder / name
        path.write_text(pipeline_text(Path(source), **kw), encoding="utf-8")
        return path

    def argv(self, *args) -> list[str]:
        return [sys.executable, "-m", "etlconsole", "--state", str(self.state),
                *map(str, args)]

    def cli(self, *args, env: Mapping[str, str] | None = None,
            timeout: float = TIMEOUT) -> Result:
        t0 = time.monotonic()
        try:
            return self._cli(*args, env=env, timeout=timeout)
        finally:
            if os.environ.get("FAULTS_TIMING"):
                print(f"[{time.monotonic() - t0:5.2f}s] {self.folder.name}: {args[0]}",
                      file=sys.__stderr__)

    def _cli(self, *args, env, timeout) -> Result:
        proc = subprocess.run(self.argv(*args), cwd=self.folder, env=make_env({**self.env, **(env or {})}),
                              capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=timeout)
        return Result(list(map(str, args)), proc.returncode, proc.stdout, proc.stderr)

    def spawn(self, *args, env: Mapping[str, str] | None = None, **popen) -> subprocess.Popen:
        """Start a CLI process; its output goes to files (a full pipe must never block it)."""
        self._n += 1
        out = open(self.folder / f"proc{self._n}.out", "w")
        err = open(self.folder / f"proc{self._n}.err", "w")
        proc = subprocess.Popen(self.argv(*args), cwd=self.folder, env=make_env({**self.env, **(env or {})}),
                                stdout=out, stderr=err, **popen)
        out.close()
        err.close()
        proc.out_path, proc.err_path = self.folder / f"proc{self._n}.out", self.folder / f"proc{self._n}.err"
        return proc

    # -- commands ------------------------------------------------------------------
    def run(self, pipeline: Path | None = None, *, expect: int = 0, **kw) -> dict[str, Any]:
        res = self.cli("run", pipeline or self.pipeline, "--no-ui", "--json", **kw)
        assert res.returncode == expect, str(res)
        summary = res.last_json()
        if summary["status"] == "succeeded":
            assert_conservation(summary)
        return summary

    def resume(self, job: str, *, expect: int = 0) -> dict[str, Any]:
        res = self.cli("resume", job, "--json")
        assert res.returncode == expect, str(res)
        return res.last_json()

    def rollback(self, job: str, *args, expect: int = 0) -> Result:
        res = self.cli("rollback", job, "--yes", "--json", *args)
        assert res.returncode == expect, str(res)
        return res

    def jobs(self) -> list[dict[str, Any]]:
        res = self.cli("jobs", "--json", "--limit", "1000")
        assert res.returncode == 0, str(res)
        return res.json_lines()

    def job(self, job_id: str) -> dict[str, Any]:
        found = [j for j in self.jobs() if j["id"] == job_id]
        assert found, f"job {job_id} not in jobs --json"
        return found[0]

    def rejects(self, job: str) -> Counter:
        res = self.cli("rejects", job, "--json")
        assert res.returncode == 0, str(res)
        return Counter((r["row"], r["phase"], r["rule"], r["column"], r["message"])
                       for r in res.json_lines())

    # -- direct reads of the state store (cheap; the store is WAL, readers never block) --
    def store_query(self, sql: str, params: tuple = ()) -> list[tuple]:
        if not self.state.exists():
            return []
        conn = sqlite3.connect(f"file:{self.state}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            conn.close()

    def store_job(self, job_id: str) -> dict[str, Any]:
        conn = sqlite3.connect(f"file:{self.state}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute("SELECT * FROM import_jobs WHERE id = ?", (job_id,)).fetchone()
        finally:
            conn.close()
        assert row is not None, job_id
        return dict(row)

    def job_files(self, job_id: str) -> list[dict[str, Any]]:
        """The files of a job of many files as ``show --json`` tells them (the fingerprint
        of each, with what reading it learned: first_record, records, content)."""
        res = self.cli("show", job_id, "--json")
        assert res.returncode == 0, str(res)
        return res.last_json()["source_fingerprint"]["files"]

    def store_jobs(self) -> list[dict[str, Any]]:
        if not self.state.exists():
            return []
        conn = sqlite3.connect(f"file:{self.state}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM import_jobs")]
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def store_rejects(self, job_id: str) -> Counter:
        """The same rows as ``rejects JOB --json`` (store.rejects), read directly."""
        return Counter(self.store_query(
            "SELECT row, phase, rule, column_name, message FROM pipeline_rejects WHERE job_id = ?",
            (job_id,)))

    def job_started(self) -> bool:
        """Does the store show a job of this lab running (or already past it)?"""
        try:
            return bool(self.store_query(
                "SELECT 1 FROM import_jobs WHERE status != 'pending' LIMIT 1"))
        except sqlite3.DatabaseError:      # the engine is still creating the store
            return False

    def job_ids(self) -> set[str]:
        return {r[0] for r in self.store_query("SELECT id FROM import_jobs")}

    def committed_in_store(self, ignore: set[str] | frozenset = frozenset()) -> int:
        """Batches the jobs of this lab (but those in `ignore`) have committed so far."""
        rows = self.store_query("SELECT job_id, count(*) FROM pipeline_batches "
                                "WHERE status = 'COMMITTED' GROUP BY job_id")
        return sum(n for job, n in rows if job not in ignore)

    def checkpoints(self, job: str) -> list[dict[str, Any]]:
        res = self.cli("checkpoints", job, "--json")
        assert res.returncode == 0, str(res)
        return res.json_lines()


def kill9(proc: subprocess.Popen) -> bool:
    """SIGKILL the process if it still runs; True if it was killed (not already done)."""
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return alive and proc.returncode == -signal.SIGKILL


def stamp_epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def wait_for(predicate, timeout: float = 30.0, every: float = 0.001):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


# -- reading a destination without disturbing it -------------------------------------
def _copy_db(db: Path, into: Path) -> Path:
    """A copy of the database with its journal/WAL, so a hot journal is rolled back on the
    copy only: the engine must find the destination exactly as the kill left it."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / db.name
    for suffix in ("", "-journal", "-wal", "-shm"):
        src = Path(str(db) + suffix)
        if src.exists():
            shutil.copyfile(src, Path(str(target) + suffix))
    return target


class snapshot_of:
    """``with snapshot_of(db) as conn:`` a connection to a throw-away copy of db."""

    def __init__(self, db: Path):
        self.db = Path(db)

    def __enter__(self) -> sqlite3.Connection | None:
        self._dir = Path(tempfile.mkdtemp(prefix="etlsnap"))
        if not self.db.exists():
            self.conn = None
            return None
        self.conn = sqlite3.connect(str(_copy_db(self.db, self._dir)))
        return self.conn

    def __exit__(self, *exc):
        if self.conn is not None:
            self.conn.close()
        shutil.rmtree(self._dir, ignore_errors=True)


JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")


def hot_journal(db: Path) -> bool:
    """Is a rollback journal of db finalized (synced, so SQLite must play it back)?"""
    try:
        with open(str(db) + "-journal", "rb") as f:
            return f.read(8) == JOURNAL_MAGIC
    except FileNotFoundError:
        return False


def recover_journal(db: Path) -> None:
    """What any read-write SQLite client does on open: roll a hot journal back."""
    conn = sqlite3.connect(str(db))
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    finally:
        conn.close()


def kill_inside_commit(proc: subprocess.Popen, db: Path, after_s: float = 0.0) -> bool:
    """kill -9 the process while its destination journal is hot (inside a commit)."""
    t0 = time.monotonic()
    while proc.poll() is None:
        if hot_journal(db) and time.monotonic() - t0 >= after_s:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    return proc.returncode == -signal.SIGKILL and hot_journal(db)


def index_is_torn(path) -> bool:
    """Is the unique rule's index (a workspace unique.db) damaged? Checked on a copy."""
    if not os.path.exists(path):
        return False
    folder = tempfile.mkdtemp(prefix="etlidx")
    try:
        copy = os.path.join(folder, "unique.db")
        shutil.copyfile(path, copy)
        conn = sqlite3.connect(copy)
        try:
            return conn.execute("PRAGMA quick_check").fetchall() != [("ok",)]
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return True
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def unique_index(lab: "Lab", job_id: str) -> Path:
    return lab.state.parent / "jobs" / job_id / "unique.db"


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


def data_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({q(table)})")
            if not r[1].startswith("_etl_")]


@dataclass(frozen=True)
class Digest:
    exists: bool
    rows: int = 0
    distinct_ids: int = 0
    sha256: str = ""
    columns: tuple = ()

    def short(self) -> str:
        return (f"Digest(rows={self.rows}, distinct_ids={self.distinct_ids}, "
                f"sha={self.sha256[:12]})" if self.exists else "Digest(absent)")


def digest_conn(conn: sqlite3.Connection | None, table: str = TABLE, where: str = "") -> Digest:
    if conn is None or table not in table_names(conn):
        return Digest(False)
    cols = data_columns(conn, table)
    sel = ", ".join(q(c) for c in cols)
    h = hashlib.sha256()
    n = 0
    for row in conn.execute(f"SELECT {sel} FROM {q(table)} {where} ORDER BY {sel}"):
        h.update(repr(row).encode())
        h.update(b"\n")
        n += 1
    idcol = "id" if "id" in cols else cols[0]
    distinct = conn.execute(f"SELECT count(DISTINCT {q(idcol)}) FROM {q(table)} {where}").fetchone()[0]
    return Digest(True, n, distinct, h.hexdigest(), tuple(cols))


def digest(db: Path, table: str = TABLE, where: str = "") -> Digest:
    with snapshot_of(db) as conn:
        return digest_conn(conn, table, where)


def exact_state(db: Path) -> dict[str, Any]:
    """Everything a user could see in the destination: every table's schema and every row,
    lineage included (for 'equals its state before the job' comparisons)."""
    with snapshot_of(db) as conn:
        if conn is None:
            return {}
        state = {}
        for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' "
                                      "ORDER BY name").fetchall():
            if name in ("_etl_loads", "_etl_tables"):
                continue   # bookkeeping is compared separately where it matters
            rows = conn.execute(f"SELECT * FROM {q(name)}").fetchall()
            h = hashlib.sha256("\n".join(sorted(map(repr, rows))).encode()).hexdigest()
            state[name] = (sql, len(rows), h)
        return state


def ledger(db: Path, job_id: str) -> list[tuple]:
    with snapshot_of(db) as conn:
        if conn is None or "_etl_loads" not in table_names(conn):
            return []
        return conn.execute("SELECT table_name, batch, row_start, row_end, rows FROM _etl_loads "
                            "WHERE job_id = ? ORDER BY batch", (job_id,)).fetchall()


def tables(db: Path) -> list[str]:
    with snapshot_of(db) as conn:
        return [] if conn is None else table_names(conn)


def stage_tables(db: Path) -> list[str]:
    return [t for t in tables(db) if t.startswith("_etl_stage_")]


def user_tables(db: Path) -> list[str]:
    return [t for t in tables(db) if not t.startswith("_etl_")]


def count_rows(db: Path, table: str) -> int:
    with snapshot_of(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {q(table)}").fetchone()[0]


# -- invariants -----------------------------------------------------------------------
def assert_conservation(summary: Mapping[str, Any]) -> None:
    assert summary["rows_read"] == summary["rows_loaded"] + summary["rows_rejected"], (
        f"conservation broken: rows_read {summary['rows_read']} != rows_loaded "
        f"{summary['rows_loaded']} + rows_rejected {summary['rows_rejected']} ({summary})")


@dataclass
class Reference:
    """An uninterrupted run of the shared file."""

    mode: str
    folder: Path
    dest: Path
    job_id: str
    summary: dict[str, Any]
    digest: Digest
    rejects: Counter
    checkpoints: list[dict[str, Any]]
    wall_s: float              # process lifetime of the run
    job_created_s: float       # from spawn to the job record's created_at
    run_s: float               # from the moment the store shows it running to the exit


def run_and_kill(lab: Lab, pipeline: Path | None = None, *, batches: int = 5,
                 extra_delay: float = 0.0, recover: bool = True, check_status: bool = False,
                 env: Mapping[str, str] | None = None) -> str:
    """Run a pipeline and kill -9 it once its job committed `batches` batches; returns
    the job id (checked to show as interrupted). With `recover`, a hot journal left by a
    kill that landed inside a commit is recovered as a read-write client would (see
    test_commit_kill.py for why that matters)."""
    known = lab.job_ids()
    proc = lab.spawn("run", pipeline or lab.pipeline, "--no-ui", "--json", env=env)
    wait_for(lambda: proc.poll() is not None or lab.committed_in_store(known) >= batches,
             timeout=TIMEOUT, every=0.003)
    assert proc.poll() is None, f"the job ended before {batches} batches committed"
    # The extra delay moves the kill off the commit boundary, but it must not outlive the
    # job: a short job can commit its last batches within a few tenths of a second (seen:
    # 12 batches in under 0.18 s), so the kill lands no later than the next commit.
    end = time.monotonic() + extra_delay
    wait_for(lambda: time.monotonic() >= end or lab.committed_in_store(known) > batches,
             timeout=TIMEOUT, every=0.003)
    assert kill9(proc), "the job ended before the kill"
    if recover and hot_journal(lab.dest):
        recover_journal(lab.dest)
    if check_status:     # the CLI must see the dead engine's job as interrupted
        new = [j for j in lab.jobs() if j["id"] not in known]
        assert len(new) == 1 and new[0]["status"] == "interrupted", new
        return new[0]["id"]
    new = list(lab.job_ids() - known)
    assert len(new) == 1, new
    return new[0]


def make_reference(folder: Path, source: Path, mode: str) -> Reference:
    lab = Lab(folder, source, mode=mode)
    t0 = time.time()
    proc = lab.spawn("run", lab.pipeline, "--no-ui", "--json")
    wait_for(lambda: proc.poll() is not None or lab.job_started(), every=0.002)
    t_running = time.time()
    assert proc.wait(timeout=TIMEOUT) == 0, proc.err_path.read_text()
    wall = time.time() - t0
    summary = json.loads(proc.out_path.read_text().strip().splitlines()[-1])
    assert summary["status"] == "succeeded", summary
    assert_conservation(summary)
    job = lab.job(summary["job_id"])
    created = stamp_epoch(job["created_at"]) - t0
    ref = Reference(mode, lab.folder, lab.dest, summary["job_id"], summary, digest(lab.dest),
                    lab.rejects(summary["job_id"]), lab.checkpoints(summary["job_id"]),
                    wall, max(0.0, created), wall - (t_running - t0))
    assert ref.digest.rows == summary["rows_loaded"] == ref.digest.distinct_ids
    assert sum(ref.rejects.values()) == summary["rows_rejected"]
    assert len(ref.checkpoints) >= 3, ref.checkpoints
    return ref


HAND_COLUMNS = [("id", "INTEGER"), ("customer_id", "INTEGER"), ("email", "TEXT"),
                ("customer_name", "TEXT"), ("status", "TEXT"), ("quantity", "INTEGER"),
                ("unit_price", "REAL"), ("total", "REAL"), ("currency", "TEXT"),
                ("ordered_on", "TEXT"), ("shipped_at", "TEXT"), ("country", "TEXT")]


def make_hand_table(db: Path, rows: int = 50, table: str = TABLE, *,
                    extra_column: bool = False) -> None:
    """A table made by hand before etlconsole ever ran: no lineage columns."""
    cols = list(HAND_COLUMNS) + ([("legacy_note", "TEXT")] if extra_column else [])
    conn = sqlite3.connect(str(db))
    try:
        conn.execute(f"CREATE TABLE {q(table)} ({', '.join(f'{q(n)} {t}' for n, t in cols)})")
        values = []
        for k in range(rows):
            row = [9_000_000 + k, 42, f"hand{k}@example.org", f"Hand Made {k}", "paid", k % 7 + 1,
                   1.5 * k, round(1.5 * k * (k % 7 + 1), 2), "EUR", "2020-01-01",
                   None if k % 3 else "2020-01-02T10:00:00", "NL"]
            values.append(row + ([f"legacy {k}"] if extra_column else []))
        conn.executemany(f"INSERT INTO {q(table)} VALUES ({', '.join('?' * len(cols))})", values)
        conn.commit()
    finally:
        conn.close()


def file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if Path(path).exists() else ""
