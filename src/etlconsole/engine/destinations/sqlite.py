"""SQLite destination: Arrow-native bulk insert (ADBC) inside one transaction per batch.

Each batch commits its rows *and* its ledger entry (``_etl_loads``) together, so the
destination itself knows which batches of which job it holds; every row carries its
lineage (``_etl_job_id``, ``_etl_batch``). ``adbc_ingest`` binds Arrow arrays in C and
joins the surrounding transaction; dates and timestamps land as ISO 8601 text.

Write modes: ``append`` writes into the target table; ``atomic`` and ``replace`` write into
a staging table ``_etl_stage_<job>_<table>`` and publish it in one transaction at the end
(``replace`` keeps the previous table as ``_etl_replaced_<job>_<table>`` so the job can be
rolled back). Rollback deletes exactly the ledger's rows, in one transaction, so a
rollback killed half-way leaves either everything or nothing undone.
"""

from __future__ import annotations

import random
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import adbc_driver_sqlite.dbapi as adbc
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import JobFailed, UserError
from .. import types
from . import WriteResult

LEDGER = "_etl_loads"
TABLES = "_etl_tables"      # tables a job created or replaced, for an exact rollback
LINEAGE = [("_etl_job_id", "TEXT"), ("_etl_batch", "INTEGER")]
STAGE_PREFIX = "_etl_stage_"
REPLACED_PREFIX = "_etl_replaced_"
SQLITE_MAX_COLUMNS = 2000     # SQLite's default SQLITE_MAX_COLUMN
# Errors tied to one row: the batch is not lost, the row is refused with this message.
_ROW_ERRORS = ("constraint failed", "datatype mismatch", "string or blob too big")
_TRANSIENT = ("database is locked", "database table is locked", "busy", "disk i/o error",
              "unable to open database")
_BOOKKEEPING = (
    f"CREATE TABLE IF NOT EXISTS {LEDGER} (job_id TEXT NOT NULL, table_name TEXT NOT NULL, "
    "batch INTEGER NOT NULL, row_start INTEGER, row_end INTEGER, rows INTEGER NOT NULL, "
    "rowid_first INTEGER, rowid_last INTEGER, committed_at TEXT NOT NULL, "
    "PRIMARY KEY (job_id, table_name, batch))",
    f"CREATE TABLE IF NOT EXISTS {TABLES} (job_id TEXT NOT NULL, table_name TEXT NOT NULL, "
    "action TEXT NOT NULL, backup_name TEXT, at TEXT NOT NULL)",
)


def quote(name: str) -> str:
    """SQLite identifier quoting: any header text becomes a safe identifier."""
    return '"' + name.replace('"', '""') + '"'


def stage_name(job_id: str, table: str) -> str:
    return f"{STAGE_PREFIX}{job_id}_{table}"


def _stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _is_transient(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(t in text for t in _TRANSIENT)


def _row_error(exc: Exception) -> str | None:
    """The database's own words if ``exc`` is about a row's values, else None."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not any(t in text.lower() for t in _ROW_ERRORS):
        return None
    return text.removeprefix("INTERNAL: ").removeprefix("failed to execute: ")


def refused_column(message: str) -> str | None:
    """'NOT NULL constraint failed: orders.email' names its column; CHECK does not."""
    _, sep, where = message.partition(" constraint failed: ")
    if sep and "." in where and " " not in where and "," not in where:
        return where.split(".", 1)[1]
    return None


def refused_rule(message: str) -> str:
    """'NOT NULL constraint failed: …' -> 'not_null'; other database refusals -> 'database'."""
    head, sep, _ = message.partition(" constraint failed")
    return head.lower().replace(" ", "_") if sep else "database"


class RowRefused(Exception):
    """The database refused a row of the batch and the job said not to isolate it."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index, self.message = index, message


def _table_exists(cur, name: str) -> bool:
    cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return cur.fetchone() is not None


def _create_table_sql(name: str, schema: pa.Schema) -> str:
    columns = [f"{quote(f.name)} {types.sqlite_type(f.type)}" for f in schema]
    columns += [f"{quote(n)} {t}" for n, t in LINEAGE]
    return f"CREATE TABLE IF NOT EXISTS {quote(name)} ({', '.join(columns)})"


# Days from 1970-01-01 to 0001-01-01 and to 9999-12-31: the years both ADBC and Arrow
# print with four digits (ADBC refuses later ones; those are left to it).
_FIRST_DAY, _LAST_DAY = -719_162, 2_932_896
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _as_iso_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Dates and timestamps as the ISO 8601 text ADBC would write (2025-03-01,
    2025-03-01T12:00:00[.ffffff], UTC), made by Arrow's vectorized cast. ADBC formats them
    value by value with snprintf, which cost more than the rest of the insert. Timestamps
    without fractions drop them (…T12:00:00, not …T12:00:00.000000)."""
    for i, field in enumerate(batch.schema):
        col = batch.column(i)
        if pa.types.is_timestamp(field.type):
            col = col.cast(pa.timestamp(field.type.unit))     # the UTC instant, as ADBC
            if field.type.unit != "s":
                try:
                    col = pc.cast(col, pa.timestamp("s"))      # safe: exact only
                except pa.ArrowInvalid:
                    pass
            per_day = 86_400 * _PER_SECOND[col.type.unit]
            if _within(col, _FIRST_DAY * per_day, (_LAST_DAY + 1) * per_day - 1):
                text = pc.replace_substring(pc.cast(col, pa.string()), " ", "T", max_replacements=1)
                batch = batch.set_column(i, field.name, text)
            else:
                batch = batch.set_column(i, field.name, col)
        elif pa.types.is_date32(field.type) and _within(col, _FIRST_DAY, _LAST_DAY):
            batch = batch.set_column(i, field.name, pc.cast(col, pa.string()))
    return batch


def _within(col: pa.Array, low: int, high: int) -> bool:
    bounds = pc.min_max(col.view(pa.int32() if pa.types.is_date32(col.type) else pa.int64()))
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    return lo is None or (lo >= low and hi <= high)


class SqliteDestination:
    kind = "sqlite"

    def __init__(self, path: Path, table: str, job_id: str, *, mode: str = "append",
                 timeout_ms: int, retry_attempts: int, retry_delay_ms: int, isolate: bool = True):
        self.path, self.table, self.job_id, self.mode = path, table, job_id, mode
        self.isolate = isolate          # refuse bad rows one by one (else the batch fails)
        self._triggers = False
        self.write_table = table if mode == "append" else stage_name(job_id, table)
        self.timeout_ms = timeout_ms
        self.retry_attempts, self.retry_delay_ms = retry_attempts, retry_delay_ms
        self.retries = 0
        self._conn = None

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "table": self.table, "mode": self.mode}

    # -- before anything is written ------------------------------------------
    def check(self, schema: pa.Schema) -> None:
        """Refuse (UserError) what would fail later: a missing folder, an incompatible table."""
        if not self.path.parent.is_dir():
            raise UserError(f"{self.path}: destination folder does not exist")
        if self.path.is_dir():
            raise UserError(f"{self.path}: destination is a directory, expected a SQLite file")
        if not self.path.exists() or self.mode == "replace":
            return
        try:
            db = _open_existing(self.path, self.timeout_ms)
            existing = [r[1] for r in db.execute(f"PRAGMA table_info({quote(self.table)})")]
            db.close()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: not a SQLite database ({exc})") from None
        if existing:
            missing = [n for n in schema.names if n not in existing]
            if missing:
                raise UserError(f"{self.path}: table {self.table!r} has no column {missing[0]!r} "
                                f"(it has: {', '.join(existing)}); map to existing columns or "
                                "load into a new table")

    def open(self, schema: pa.Schema) -> None:
        """Connect, then create the table, lineage columns and ledger if missing."""
        self._conn = adbc.connect(str(self.path))
        cur = self._conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(self.timeout_ms)}")
        cur.fetchall()
        self._retrying(self._create, schema)

    def _create(self, schema: pa.Schema) -> None:
        cur = self._conn.cursor()
        for sql in _BOOKKEEPING:
            cur.execute(sql)
        if not _table_exists(cur, self.write_table):
            cur.execute(_create_table_sql(self.write_table, schema))
            if self.mode == "append":
                cur.execute(f"INSERT INTO {TABLES} VALUES (?, ?, 'created', NULL, ?)",
                            (self.job_id, self.table, _stamp()))
        self._add_lineage(cur, self.write_table)
        cur.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                    (self.write_table,))
        self._triggers = cur.fetchone()[0] > 0
        self._conn.commit()

    def _add_lineage(self, cur, table: str) -> None:
        cur.execute(f"PRAGMA table_info({quote(table)})")
        existing = {r[1] for r in cur.fetchall()}
        if all(name in existing for name, _ in LINEAGE):
            return
        for name, type_ in LINEAGE:   # appending to a table made before etlconsole
            if name not in existing:
                cur.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {type_}")
        # A full rollback of this job takes the columns away again.
        cur.execute(f"INSERT INTO {TABLES} VALUES (?, ?, 'lineage_added', NULL, ?)",
                    (self.job_id, table, _stamp()))

    # -- per batch ------------------------------------------------------------
    @staticmethod
    def prepare(batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch as it will be bound (ISO text for dates and timestamps); the runner
        calls this outside the loader thread, and ``write`` finds nothing left to do."""
        return _as_iso_text(batch)

    def write(self, batch_number: int, batch: pa.RecordBatch, row_start: int, row_end: int, *,
              before_commit=None) -> WriteResult:
        """Commit one batch with its ledger entry. Rows the database refuses (a constraint)
        are left out and returned; ``before_commit(refused)`` runs inside the transaction,
        so whatever it records is kept exactly when the batch is."""
        n = batch.num_rows
        batch = _as_iso_text(batch)
        batch = batch.append_column("_etl_job_id", pa.repeat(pa.scalar(self.job_id), n))
        batch = batch.append_column("_etl_batch", pa.repeat(pa.scalar(batch_number, pa.int64()), n))
        attempts, refused = self._retrying(self._write_once, batch_number, batch, row_start,
                                           row_end, before_commit)
        return WriteResult(attempts, refused)

    def _write_once(self, batch_number, batch, row_start, row_end, before_commit):
        cur = self._conn.cursor()
        refused = self._insert(cur, batch) if batch.num_rows else []
        n = batch.num_rows - len(refused)
        # The write lock is ours since the insert, so the batch's rowids are consecutive.
        cur.execute(f"SELECT coalesce(max(rowid), 0) FROM {quote(self.write_table)}")
        last = cur.fetchone()[0] if n else None
        cur.execute(f"INSERT INTO {LEDGER} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.job_id, self.write_table, batch_number, row_start, row_end, n,
                     last - n + 1 if n else None, last, _stamp()))
        if before_commit is not None:
            before_commit(refused)
        self._conn.commit()
        return refused

    # -- partial success: isolate the rows the database refuses ---------------
    def _insert(self, cur, batch: pa.RecordBatch) -> list[tuple[int, str]]:
        """Insert the batch, leaving out refused rows. SQLite does not say which row failed,
        but the bulk insert stops at it: the rows this connection inserted so far give its
        index (exact when no trigger writes too, and checked by inserting that row alone).
        Otherwise the batch is bisected under savepoints, as pgloader does."""
        refused: list[tuple[int, str]] = []
        offset, n = 0, batch.num_rows
        while offset < n:
            before = self._changes(cur)
            cur.execute("SAVEPOINT etl_rows")
            try:
                cur.adbc_ingest(self.write_table, batch.slice(offset), mode="append")
                cur.execute("RELEASE etl_rows")
                return refused
            except Exception as exc:
                message = _row_error(exc)
                if message is None:
                    raise
                bad = offset + self._changes(cur) - before
                if not self.isolate:
                    raise RowRefused(bad, message) from None
                if self._triggers or bad >= n or not self._refuses(cur, batch.slice(bad, 1)):
                    cur.execute("ROLLBACK TO etl_rows")
                    cur.execute("RELEASE etl_rows")
                    self._bisect(cur, batch, offset, n, refused)
                    return refused
                cur.execute("RELEASE etl_rows")
                refused.append((bad, message))
                offset = bad + 1
        return refused

    @staticmethod
    def _changes(cur) -> int:
        cur.execute("SELECT total_changes()")
        return cur.fetchone()[0]

    def _attempt(self, cur, rows: pa.RecordBatch, keep: bool) -> str | None:
        """Insert ``rows`` under a savepoint; the database's message if it refused them."""
        cur.execute("SAVEPOINT etl_try")
        try:
            cur.adbc_ingest(self.write_table, rows, mode="append")
        except Exception as exc:
            message = _row_error(exc)
            cur.execute("ROLLBACK TO etl_try")
            cur.execute("RELEASE etl_try")
            if message is None:
                raise
            return message
        if not keep:
            cur.execute("ROLLBACK TO etl_try")
        cur.execute("RELEASE etl_try")
        return None

    def _refuses(self, cur, row: pa.RecordBatch) -> bool:
        return self._attempt(cur, row, keep=False) is not None

    def _bisect(self, cur, batch, lo: int, hi: int, refused: list) -> None:
        message = self._attempt(cur, batch.slice(lo, hi - lo), keep=True)
        if message is None:
            return
        if hi - lo == 1:
            refused.append((lo, message))
            return
        mid = (lo + hi) // 2
        self._bisect(cur, batch, lo, mid, refused)
        self._bisect(cur, batch, mid, hi, refused)

    # -- the end of an atomic or replace job ------------------------------------
    def publish(self, schema: pa.Schema) -> None:
        if self.mode != "append":
            self._retrying(self._publish_once, schema)

    def _publish_once(self, schema: pa.Schema) -> None:
        cur = self._conn.cursor()
        stage, target = quote(self.write_table), quote(self.table)
        if not _table_exists(cur, self.write_table):
            return                                  # published before a crash
        if self.mode == "replace":
            backup = None
            if _table_exists(cur, self.table):
                backup = f"{REPLACED_PREFIX}{self.job_id}_{self.table}"
                cur.execute(f"ALTER TABLE {target} RENAME TO {quote(backup)}")
            cur.execute(f"INSERT INTO {TABLES} VALUES (?, ?, ?, ?, ?)",
                        (self.job_id, self.table, "replaced" if backup else "created", backup,
                         _stamp()))
            cur.execute(f"ALTER TABLE {stage} RENAME TO {target}")
            cur.execute(f"UPDATE {LEDGER} SET table_name = ? WHERE job_id = ? AND table_name = ?",
                        (self.table, self.job_id, self.write_table))
        else:
            if not _table_exists(cur, self.table):
                cur.execute(_create_table_sql(self.table, schema))
                cur.execute(f"INSERT INTO {TABLES} VALUES (?, ?, 'created', NULL, ?)",
                            (self.job_id, self.table, _stamp()))
            self._add_lineage(cur, self.table)
            cur.execute(f"SELECT coalesce(max(rowid), 0) FROM {target}")
            base = cur.fetchone()[0]
            cur.execute(f"SELECT coalesce(min(rowid), 1) FROM {stage}")
            shift = base + 1 - cur.fetchone()[0]
            names = ", ".join(quote(f.name) for f in schema) + ", " + ", ".join(
                quote(n) for n, _ in LINEAGE)
            # ORDER BY rowid keeps the stage's consecutive rowids consecutive in the target.
            cur.execute(f"INSERT INTO {target} ({names}) SELECT {names} FROM {stage} ORDER BY rowid")
            cur.execute(f"UPDATE {LEDGER} SET table_name = ?, rowid_first = rowid_first + ?, "
                        "rowid_last = rowid_last + ? WHERE job_id = ? AND table_name = ?",
                        (self.table, shift, shift, self.job_id, self.write_table))
            cur.execute(f"DROP TABLE {stage}")
        self._conn.commit()

    def _retrying(self, fn, *args) -> tuple[int, object]:
        """Run fn in a transaction; retry transient errors with exponential backoff + jitter.
        Returns (attempts, what fn returned)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return attempt, fn(*args)
            except RowRefused:
                self._conn.rollback()
                raise
            except Exception as exc:  # driver errors come in several classes
                try:
                    self._conn.rollback()
                except Exception:
                    pass
                if attempt > self.retry_attempts or not _is_transient(exc):
                    raise JobFailed(f"{self.path}: table {self.table!r}: {exc}".splitlines()[0]) from exc
                self.retries += 1
                delay = self.retry_delay_ms / 1000 * 2 ** (attempt - 1)
                time.sleep(delay * random.uniform(0.5, 1.5))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- reading and undoing a job's effect ------------------------------------------
def _open_existing(path: Path, timeout_ms: int = 30_000) -> sqlite3.Connection:
    """A connection that never creates the file, but may write: a process killed inside a
    commit leaves a hot journal that SQLite replays on first read, which needs write access
    (a read-only connection fails with "attempt to write a readonly database")."""
    return sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=timeout_ms / 1000)


def _connect(path: Path, timeout_ms: int) -> sqlite3.Connection:
    return sqlite3.connect(str(path), timeout=timeout_ms / 1000, isolation_level=None)


def committed(path: Path, job_id: str) -> list[dict]:
    """The job's ledger entries in this destination (what it really holds), by batch."""
    if not path.exists():
        return []
    db = _open_existing(path)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (LEDGER,)).fetchone():
            return []
        cols = ["table_name", "batch", "row_start", "row_end", "rows", "rowid_first", "rowid_last"]
        rows = db.execute(f"SELECT {', '.join(cols)} FROM {LEDGER} WHERE job_id = ? ORDER BY batch",
                          (job_id,)).fetchall()
        return [dict(zip(cols, r)) for r in rows]
    finally:
        db.close()


def rollback(path: Path, job_id: str, *, after_batch: int | None = None, dry_run: bool = False,
             timeout_ms: int = 30_000) -> dict:
    """Remove the job's rows (of batches after `after_batch`, or all) in one transaction.

    Idempotent: the ledger rows go in the same transaction as the data rows, so running it
    again after a crash finds nothing, or everything, left to do.
    """
    report = {"path": str(path), "rows": {}, "batches": 0, "dropped": [], "restored": []}
    if not path.exists():
        return report
    db = _connect(path, timeout_ms)
    try:
        db.execute("BEGIN IMMEDIATE")
        cur = db.cursor()
        if not _table_exists(cur, LEDGER):
            db.execute("ROLLBACK")
            return report
        limit = -1 if after_batch is None else after_batch
        entries = db.execute(
            f"SELECT table_name, batch, rowid_first, rowid_last, rows FROM {LEDGER} "
            "WHERE job_id = ? AND batch > ? ORDER BY batch", (job_id, limit)).fetchall()
        report["batches"] = len(entries)
        by_table: dict[str, list] = {}
        for table, batch, first, last, rows in entries:
            by_table.setdefault(table, []).append((first, last, batch))
        for table, ranges in by_table.items():
            if not _table_exists(cur, table):
                continue
            if dry_run:
                n = sum(db.execute(f"SELECT count(*) FROM {quote(table)} WHERE rowid BETWEEN ? AND ? "
                                   "AND _etl_job_id = ?", (f, l, job_id)).fetchone()[0]
                        for f, l, _ in ranges if f is not None)
            else:
                before = db.total_changes
                db.executemany(f"DELETE FROM {quote(table)} WHERE rowid BETWEEN ? AND ? "
                               "AND _etl_job_id = ? AND _etl_batch = ?",
                               [(f, l, job_id, b) for f, l, b in ranges if f is not None])
                n = db.total_changes - before
            report["rows"][table] = n
        if not dry_run:
            db.execute(f"DELETE FROM {LEDGER} WHERE job_id = ? AND batch > ?", (job_id, limit))
        if after_batch is None:
            _undo_tables(db, cur, job_id, report, dry_run)
        db.execute("ROLLBACK" if dry_run else "COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise JobFailed(f"{path}: rollback of job {job_id} failed: {exc}") from exc
    finally:
        db.close()
    return report


def _undo_tables(db, cur, job_id: str, report: dict, dry_run: bool) -> None:
    """Drop the job's staging table, restore a replaced table, drop tables it created."""
    prefix = f"{STAGE_PREFIX}{job_id}_"
    stages = [n for (n,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?",
        (len(prefix), prefix))]
    for name in stages:
        report["dropped"].append(name)
        if not dry_run:
            db.execute(f"DROP TABLE {quote(name)}")
    if not _table_exists(cur, TABLES):
        return
    for table, action, backup in db.execute(
            f"SELECT table_name, action, backup_name FROM {TABLES} WHERE job_id = ?",
            (job_id,)).fetchall():
        if action == "replaced" and backup and _table_exists(cur, backup):
            report["restored"].append(table)
            if not dry_run:
                db.execute(f"DROP TABLE IF EXISTS {quote(table)}")
                db.execute(f"ALTER TABLE {quote(backup)} RENAME TO {quote(table)}")
        elif action == "lineage_added" and _table_exists(cur, table):
            tagged = db.execute(f"SELECT count(*) FROM {quote(table)} WHERE _etl_job_id IS NOT NULL "
                                "AND _etl_job_id IS NOT ?", (job_id,)).fetchone()[0]
            if tagged == 0:     # no other job's rows rely on them: the schema as it was
                try:
                    if not dry_run:
                        for name, _ in reversed(LINEAGE):
                            db.execute(f"ALTER TABLE {quote(table)} DROP COLUMN {quote(name)}")
                    report["dropped"].append(f"{table}.{', '.join(n for n, _ in LINEAGE)}")
                except sqlite3.OperationalError:
                    pass        # an index or view uses them: they stay, empty
        elif action == "created" and _table_exists(cur, table):
            others = db.execute(f"SELECT count(*) FROM {quote(table)} WHERE _etl_job_id IS NOT ?",
                                (job_id,)).fetchone()[0]
            if others == 0:     # nothing but this job's rows: the table goes as it came
                report["dropped"].append(table)
                if not dry_run:
                    db.execute(f"DROP TABLE {quote(table)}")
    if not dry_run:
        db.execute(f"DELETE FROM {TABLES} WHERE job_id = ?", (job_id,))


def etl_tables(path: Path) -> list[tuple[str, str]]:
    """(table, job id) of every staging or replaced-table backup in the destination."""
    if not path.exists():
        return []
    db = _open_existing(path)
    try:
        names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    finally:
        db.close()
    found = []
    for name in names:
        for prefix in (STAGE_PREFIX, REPLACED_PREFIX):
            if name.startswith(prefix):
                found.append((name, name[len(prefix):].split("_", 1)[0]))
    return found


def drop_table(path: Path, table: str, timeout_ms: int = 30_000) -> None:
    db = _connect(path, timeout_ms)
    try:
        db.execute(f"DROP TABLE IF EXISTS {quote(table)}")
    finally:
        db.close()
