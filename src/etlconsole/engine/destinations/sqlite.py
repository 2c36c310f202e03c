"""SQLite destination: Arrow-native bulk insert (ADBC) inside one transaction per batch.

Each batch commits its rows *and* its ledger entry (``_etl_loads``) together, so the
destination itself knows which batches of which job it holds; every row carries its
lineage (``_etl_job_id``, ``_etl_batch``). ``adbc_ingest`` binds Arrow arrays in C and
joins the surrounding transaction; dates and timestamps land as ISO 8601 text.

Write modes: ``append`` writes into the target table; ``atomic`` and ``replace`` write into
a staging table ``_etl_stage_<job>_<table>`` and publish it in one transaction at the end
(``replace`` keeps the previous table as ``_etl_replaced_<job>_<table>`` so the job can be
rolled back).

Rollback runs in one transaction, so a rollback killed half-way leaves either everything
or nothing undone. A table the job created and that the ledger proves nothing else wrote
to is dropped whole; otherwise the job's rows are deleted by lineage (``_etl_job_id``,
``_etl_batch``). Nothing depends on ``rowid``: a user's column may be named ``rowid``,
``oid`` or ``_rowid_`` and then shadows SQLite's alias (ADR 0014). The index
``_etl_lineage_<table>`` on the lineage is made when a table becomes shared (a job writes
to a table it did not create), not while a job fills its own table: kept per row, it cost
~0.4 s of CPU per 1M rows on the loader's critical path. A job's own table has instead a
partial index of the rows that are not the job's, empty while it fills it (ADR 0022).
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import adbc_driver_sqlite.dbapi as adbc
import pyarrow as pa
import pyarrow.compute as pc

from .. import types
from .base import (Destination, DestinationBusy, DestinationError, DestinationFailed,
                   DestinationUnusable, LedgerEntry, Leftover, RefusedRow, RollbackReport,
                   RowRefused, WriteResult, probe_writable)

LEDGER = "_etl_loads"
TABLES = "_etl_tables"      # tables a job created or replaced, for an exact rollback
LINEAGE = [("_etl_job_id", "TEXT"), ("_etl_batch", "INTEGER")]
ROLLBACK_CACHE_KB = 65_536   # the rollback connection's page cache (see _rollback)
INDEX_PREFIX = "_etl_lineage_"  # the lineage index of a table: how rollback finds rows
FOREIGN_PREFIX = "_etl_foreign_"  # + job + table: a job's own table's rows not of the job
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


def refused(index: int, message: str) -> RefusedRow:
    return RefusedRow(index, refused_rule(message), refused_column(message), message)


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


def _index_of(cur, table: str) -> str | None:
    """The name of an index on exactly (_etl_job_id, _etl_batch) of ``table``, if any
    (after a ``replace`` the table carries the index its staging table was made with)."""
    cur.execute(f"PRAGMA index_list({quote(table)})")
    for name in [r[1] for r in cur.fetchall()]:
        cur.execute(f"PRAGMA index_info({quote(name)})")
        if [r[2] for r in cur.fetchall()] == [n for n, _ in LINEAGE]:
            return name
    return None


def _ensure_lineage_index(cur, table: str) -> None:
    """Rollback finds a job's rows in a shared table through this index, never by rowid
    (a column can shadow it). Made when a job first writes to a table it did not create
    (one scan of the rows already there); from then on SQLite keeps it per row, and the
    creator's foreign-row index, which it makes redundant, goes."""
    if _index_of(cur, table) is None:
        cur.execute(f"CREATE INDEX IF NOT EXISTS {quote(INDEX_PREFIX + table)} ON {quote(table)} "
                    f"({', '.join(quote(n) for n, _ in LINEAGE)})")
    # (by prefix: after a replace the index has its staging table's name)
    cur.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND substr(name, 1, ?) = ?", (table, len(FOREIGN_PREFIX), FOREIGN_PREFIX))
    for (name,) in cur.fetchall():
        cur.execute(f"DROP INDEX {quote(name)}")


def _not_of(job_id: str) -> str:
    """The condition "a row of no job or of another job" with the id as a literal: a
    partial index is used only for a query whose WHERE holds the same expression."""
    return "_etl_job_id IS NOT '" + job_id.replace("'", "''") + "'"


def _make_foreign_index(cur, table: str, job_id: str) -> None:
    """A job's own table gets a partial index of the rows that are *not* the job's: while
    the job fills it, no row enters it (SQLite only tests the condition: ~0.06 s of CPU per
    1M rows end to end, where the lineage index cost ~0.4 s), and a rollback proves the
    table holds nothing else with one seek before dropping it (ADR 0022)."""
    # Named after the job too: index names are the database's, and a table renamed away
    # (a replace's backup) keeps its index and its name.
    cur.execute(f"CREATE INDEX IF NOT EXISTS {quote(f'{FOREIGN_PREFIX}{job_id}_{table}')} ON "
                f"{quote(table)} (_etl_job_id) WHERE {_not_of(job_id)}")


class SqliteDestination(Destination):
    kind = "sqlite"
    title = "SQLite"
    has_tables = True
    shared_ledger = True        # _etl_loads: a row per (job, table, batch)
    refuses_rows = True
    lineage_columns = tuple(n for n, _ in LINEAGE)
    max_columns = SQLITE_MAX_COLUMNS
    folds_case = True
    atomic_publish = True

    def __init__(self, path: Path, job_id: str, *, table: str | None = None, **kw):
        if not table:
            raise ValueError("a SQLite destination needs a table")
        super().__init__(path, job_id, table=table, **kw)
        self.table: str = table
        self._triggers = False
        self.write_table: str = table if self.mode == "append" else stage_name(job_id, table)
        self._conn: Any = None          # an ADBC connection while open

    # -- before anything is written ------------------------------------------
    def check(self, schema: pa.Schema) -> None:
        """Refuse what would fail later: a missing or read-only folder, a file that is no
        database, a table that lacks a column of the job."""
        if not self.path.parent.is_dir():
            raise DestinationUnusable(f"{self.path}: destination folder does not exist")
        if self.path.is_dir():
            raise DestinationUnusable(f"{self.path}: destination is a directory, expected a SQLite file")
        # SQLite writes a journal beside the file: the folder must be writable, not only it.
        probe_writable(self.path.parent, "destination")
        if not self.path.exists():
            return
        if not os.access(self.path, os.W_OK) or not _opens_for_writing(self.path):
            raise DestinationUnusable(f"{self.path}: the destination file is read-only; "
                                      "nothing was written")
        if self.mode == "replace":
            return
        try:
            db = _open_existing(self.path, self.timeout_ms)
            existing = [r[1] for r in db.execute(f"PRAGMA table_info({quote(self.table)})")]
            db.close()
        except sqlite3.DatabaseError as exc:
            raise DestinationUnusable(f"{self.path}: not a SQLite database ({exc})") from None
        if existing:
            missing = [n for n in schema.names if n not in existing]
            if missing:
                raise DestinationUnusable(
                    f"{self.path}: table {self.table!r} has no column {missing[0]!r} "
                    f"(it has: {', '.join(existing)}); map to existing columns or "
                    "load into a new table")

    def open(self, schema: pa.Schema) -> None:
        """Connect, then create the table, lineage columns and index, and ledger if missing."""
        try:
            self._conn = adbc.connect(str(self.path))
            cur = self._conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(self.timeout_ms)}")
            cur.fetchall()
        except Exception as exc:
            raise self.classify(exc) from exc
        self.retrying(self._create, schema)

    def _create(self, schema: pa.Schema) -> None:
        cur = self._conn.cursor()
        for sql in _BOOKKEEPING:
            cur.execute(sql)
        if not _table_exists(cur, self.write_table):
            cur.execute(_create_table_sql(self.write_table, schema))
            _make_foreign_index(cur, self.write_table, self.job_id)
            if self.mode == "append":
                cur.execute(f"INSERT INTO {TABLES} VALUES (?, ?, 'created', NULL, ?)",
                            (self.job_id, self.table, _stamp()))
        self._add_lineage(cur, self.write_table)
        if not self._own_table(cur):
            _ensure_lineage_index(cur, self.write_table)
        cur.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
                    (self.write_table,))
        self._triggers = cur.fetchone()[0] > 0
        self._conn.commit()

    def _own_table(self, cur) -> bool:
        """Is the table written to this job's alone: its staging table, or a table it
        created (a resume or replay of the job finds it made)? Its rollback drops it whole,
        or scans it, so it needs no lineage index while the job fills it (ADR 0022)."""
        if self.write_table != self.table:
            return True
        cur.execute(f"SELECT 1 FROM {TABLES} WHERE job_id = ? AND table_name = ? "
                    "AND action = 'created'", (self.job_id, self.table))
        return bool(cur.fetchall())

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

    # -- errors ---------------------------------------------------------------
    def classify(self, exc: Exception) -> DestinationError:
        message = f"{self.path}: table {self.table!r}: {exc}".splitlines()[0]
        return DestinationBusy(message) if _is_transient(exc) else DestinationFailed(message)

    def rolled_back(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rollback()
        except Exception:
            pass

    # -- per batch ------------------------------------------------------------
    def prepare(self, batch: pa.RecordBatch) -> pa.RecordBatch:
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
        attempts, rows = self.retrying(self._write_once, batch_number, batch, row_start,
                                       row_end, before_commit)
        return WriteResult(attempts, rows)

    def _write_once(self, batch_number, batch, row_start, row_end, before_commit):
        cur = self._conn.cursor()
        refused_rows = self._insert(cur, batch) if batch.num_rows else []
        n = batch.num_rows - len(refused_rows)
        # No rowid range: rollback goes by lineage (a user's column may shadow rowid).
        cur.execute(f"INSERT INTO {LEDGER} VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                    (self.job_id, self.write_table, batch_number, row_start, row_end, n, _stamp()))
        if before_commit is not None:
            before_commit(refused_rows)
        self._conn.commit()
        return refused_rows

    # -- partial success: isolate the rows the database refuses ---------------
    def _insert(self, cur, batch: pa.RecordBatch) -> list[RefusedRow]:
        """Insert the batch, leaving out refused rows. SQLite does not say which row failed,
        but the bulk insert stops at it: the rows this connection inserted so far give its
        index (exact when no trigger writes too, and checked by inserting that row alone).
        Otherwise the batch is bisected under savepoints, as pgloader does."""
        out: list[RefusedRow] = []
        offset, n = 0, batch.num_rows
        while offset < n:
            before = self._changes(cur)
            cur.execute("SAVEPOINT etl_rows")
            try:
                cur.adbc_ingest(self.write_table, batch.slice(offset), mode="append")
                cur.execute("RELEASE etl_rows")
                return out
            except Exception as exc:
                message = _row_error(exc)
                if message is None:
                    raise
                bad = offset + self._changes(cur) - before
                if not self.isolate:
                    raise RowRefused(refused(bad, message)) from None
                if self._triggers or bad >= n or not self._refuses(cur, batch.slice(bad, 1)):
                    cur.execute("ROLLBACK TO etl_rows")
                    cur.execute("RELEASE etl_rows")
                    self._bisect(cur, batch, offset, n, out)
                    return out
                cur.execute("RELEASE etl_rows")
                out.append(refused(bad, message))
                offset = bad + 1
        return out

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

    def _bisect(self, cur, batch, lo: int, hi: int, out: list[RefusedRow]) -> None:
        message = self._attempt(cur, batch.slice(lo, hi - lo), keep=True)
        if message is None:
            return
        if hi - lo == 1:
            out.append(refused(lo, message))
            return
        mid = (lo + hi) // 2
        self._bisect(cur, batch, lo, mid, out)
        self._bisect(cur, batch, mid, hi, out)

    # -- the end of an atomic or replace job ------------------------------------
    def publish(self, schema: pa.Schema) -> None:
        if self.mode != "append":
            self.retrying(self._publish_once, schema)

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
        else:
            existed = _table_exists(cur, self.table)
            if not existed:
                cur.execute(_create_table_sql(self.table, schema))
                _make_foreign_index(cur, self.table, self.job_id)
                cur.execute(f"INSERT INTO {TABLES} VALUES (?, ?, 'created', NULL, ?)",
                            (self.job_id, self.table, _stamp()))
            self._add_lineage(cur, self.table)
            if existed:
                _ensure_lineage_index(cur, self.table)     # now shared with older rows
            names = ", ".join(quote(f.name) for f in schema) + ", " + ", ".join(
                quote(n) for n, _ in LINEAGE)
            # A plain scan reads the stage in insertion order (no ORDER BY rowid: a column
            # named rowid would shadow it).
            cur.execute(f"INSERT INTO {target} ({names}) SELECT {names} FROM {stage}")
            cur.execute(f"DROP TABLE {stage}")
        cur.execute(f"UPDATE {LEDGER} SET table_name = ? WHERE job_id = ? AND table_name = ?",
                    (self.table, self.job_id, self.write_table))
        self._conn.commit()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the recovery half -----------------------------------------------------
    @classmethod
    def read_ledger(cls, path: Path, job_id: str) -> list[LedgerEntry]:
        return _read_ledger(Path(path), job_id)

    @classmethod
    def rollback(cls, path: Path, job_id: str, *, after_batch: int | None = None,
                 dry_run: bool = False, timeout_ms: int = 30_000) -> RollbackReport:
        return _rollback(Path(path), job_id, after_batch=after_batch, dry_run=dry_run,
                         timeout_ms=timeout_ms)

    @classmethod
    def leftovers(cls, path: Path) -> list[Leftover]:
        return [Leftover(name, job, "stage" if name.startswith(STAGE_PREFIX) else "replaced")
                for name, job in etl_tables(Path(path))]

    @classmethod
    def remove_leftover(cls, path: Path, leftover: Leftover, timeout_ms: int = 30_000) -> None:
        drop_table(Path(path), leftover.name, timeout_ms)


# -- reading and undoing a job's effect ------------------------------------------
def _opens_for_writing(path: Path) -> bool:
    """Can the file be opened for writing (an immutable file, a read-only mount)?"""
    try:
        fd = os.open(str(path), os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def _open_existing(path: Path, timeout_ms: int = 30_000) -> sqlite3.Connection:
    """A connection that never creates the file, but may write: a process killed inside a
    commit leaves a hot journal that SQLite replays on first read, which needs write access
    (a read-only connection fails with "attempt to write a readonly database")."""
    return sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=timeout_ms / 1000)


def _connect(path: Path, timeout_ms: int) -> sqlite3.Connection:
    """A connection for rollback and cleanup. ``secure_delete = FAST``: Debian's SQLite
    (Python's sqlite3 here) defaults to secure_delete on, which zeroes every page a drop or
    delete frees, through the journal: 10x the I/O of the drop itself (1M rows: 1.1 s, with
    FAST 0.1 s). FAST still overwrites deleted rows on pages that are written anyway; the
    loader's own connection (ADBC's SQLite) never had secure_delete on."""
    db = sqlite3.connect(str(path), timeout=timeout_ms / 1000, isolation_level=None)
    db.execute("PRAGMA secure_delete = FAST")
    return db


def _read_ledger(path: Path, job_id: str) -> list[LedgerEntry]:
    """The job's ledger entries in this destination (what it really holds), by batch."""
    if not path.exists():
        return []
    db = _open_existing(path)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (LEDGER,)).fetchone():
            return []
        rows = db.execute(f"SELECT batch, row_start, row_end, rows, table_name FROM {LEDGER} "
                          "WHERE job_id = ? ORDER BY batch", (job_id,)).fetchall()
        return [LedgerEntry(*r) for r in rows]
    finally:
        db.close()


def _foreign_rows(db, table: str, job_id: str) -> bool:
    """Does ``table`` hold a row that is not this job's? Three seeks in the lineage index
    (rows of no job, of a job id before, of one after); in a table that never became
    shared, one seek in its creator's foreign-row index (or, without it, a scan that stops
    at the first such row)."""
    t = quote(table)
    if _index_of(db.cursor(), table) is None:
        return bool(db.execute(f"SELECT EXISTS (SELECT 1 FROM {t} WHERE {_not_of(job_id)})"
                               ).fetchone()[0])
    return bool(db.execute(
        f"SELECT EXISTS (SELECT 1 FROM {t} WHERE _etl_job_id IS NULL) "
        f"OR EXISTS (SELECT 1 FROM {t} WHERE _etl_job_id < ?) "
        f"OR EXISTS (SELECT 1 FROM {t} WHERE _etl_job_id > ?)", (job_id, job_id)).fetchone()[0])


def _whole(db, table: str, job_id: str) -> bool:
    """May the job's rows in ``table`` go by dropping it? Only a staging table of the job,
    or a table the job created when the ledger holds no other job's batch in it and no
    row outside any job is there."""
    if table.startswith(f"{STAGE_PREFIX}{job_id}_"):
        return True
    if not _table_exists(db.cursor(), TABLES):
        return False
    made = db.execute(f"SELECT 1 FROM {TABLES} WHERE job_id = ? AND table_name = ? AND action "
                      "IN ('created', 'replaced')", (job_id, table)).fetchone()
    if not made:
        return False
    others = db.execute(f"SELECT 1 FROM {LEDGER} WHERE table_name = ? AND job_id != ? LIMIT 1",
                        (table, job_id)).fetchone()
    return others is None and not _foreign_rows(db, table, job_id)


def _rollback(path: Path, job_id: str, *, after_batch: int | None, dry_run: bool,
              timeout_ms: int) -> RollbackReport:
    """Remove the job's rows (of batches after `after_batch`, or all) in one transaction.

    Idempotent: the ledger rows go in the same transaction as the data rows, so running it
    again after a crash finds nothing, or everything, left to do.
    """
    report = RollbackReport(str(path), "sqlite")
    if not path.exists():
        return report
    db = _connect(path, timeout_ms)
    # A delete touches every page of the job's rows; with SQLite's 2 MB default cache the
    # dirty pages spill many times, each spill an fsync of the journal (155 for 1M rows).
    db.execute(f"PRAGMA cache_size = -{ROLLBACK_CACHE_KB}")
    try:
        db.execute("BEGIN IMMEDIATE")
        cur = db.cursor()
        if not _table_exists(cur, LEDGER):
            db.execute("ROLLBACK")
            return report
        limit = -1 if after_batch is None else after_batch
        per_table = db.execute(
            f"SELECT table_name, count(*), sum(rows) FROM {LEDGER} WHERE job_id = ? AND batch > ? "
            "GROUP BY table_name ORDER BY table_name", (job_id, limit)).fetchall()
        report.batches = sum(n for _, n, _ in per_table)
        for table, _, rows in per_table:
            if not _table_exists(cur, table):
                continue
            if after_batch is None and _whole(db, table, job_id):
                # The ledger counts exactly the rows its batches committed.
                report.rows[table] = rows or 0
                report.dropped.append(table)
                if not dry_run:
                    db.execute(f"DROP TABLE {quote(table)}")
                continue
            where = f"FROM {quote(table)} WHERE _etl_job_id = ? AND _etl_batch > ?"
            if dry_run:
                n = db.execute(f"SELECT count(*) {where}", (job_id, limit)).fetchone()[0]
            else:
                before = db.total_changes
                db.execute(f"DELETE {where}", (job_id, limit))
                n = db.total_changes - before
            report.rows[table] = n
        if not dry_run:
            db.execute(f"DELETE FROM {LEDGER} WHERE job_id = ? AND batch > ?", (job_id, limit))
        if after_batch is None:
            _undo_tables(db, cur, job_id, report, dry_run)
        db.execute("ROLLBACK" if dry_run else "COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        error = DestinationBusy if _is_transient(exc) else DestinationFailed
        raise error(f"{path}: rollback of job {job_id} failed: {exc}") from exc
    finally:
        db.close()
    return report


def _undo_tables(db, cur, job_id: str, report: RollbackReport, dry_run: bool) -> None:
    """Drop the job's staging table, restore a replaced table, drop tables it created."""
    prefix = f"{STAGE_PREFIX}{job_id}_"
    stages = [n for (n,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?",
        (len(prefix), prefix))]
    for name in stages:
        if name not in report.dropped:
            report.dropped.append(name)
        if not dry_run:
            db.execute(f"DROP TABLE IF EXISTS {quote(name)}")
    if not _table_exists(cur, TABLES):
        return
    for table, action, backup in db.execute(
            f"SELECT table_name, action, backup_name FROM {TABLES} WHERE job_id = ?",
            (job_id,)).fetchall():
        if action == "replaced" and backup and _table_exists(cur, backup):
            report.restored.append(table)
            if table in report.dropped:
                report.dropped.remove(table)    # said as "restored": it comes back as it was
            if not dry_run:
                db.execute(f"DROP TABLE IF EXISTS {quote(table)}")
                db.execute(f"ALTER TABLE {quote(backup)} RENAME TO {quote(table)}")
        elif action == "lineage_added" and _table_exists(cur, table):
            _drop_lineage(db, table, job_id, report, dry_run)
        elif (action == "created" and table not in report.dropped and _table_exists(cur, table)
              and not _foreign_rows(db, table, job_id)):
            # nothing but this job's rows (none left): the table goes as it came
            report.dropped.append(table)
            if not dry_run:
                db.execute(f"DROP TABLE {quote(table)}")
    if not dry_run:
        db.execute(f"DELETE FROM {TABLES} WHERE job_id = ?", (job_id,))


def _drop_lineage(db, table: str, job_id: str, report: RollbackReport, dry_run: bool) -> None:
    """The job added the lineage columns to a table made before etlconsole: when no other
    job's rows rely on them, the table gets its schema back (index, then columns)."""
    tagged = db.execute(f"SELECT EXISTS (SELECT 1 FROM {quote(table)} WHERE _etl_job_id < ?) "
                        f"OR EXISTS (SELECT 1 FROM {quote(table)} WHERE _etl_job_id > ?)",
                        (job_id, job_id)).fetchone()[0]
    if tagged:
        return
    try:
        if not dry_run:
            db.execute("SAVEPOINT etl_lineage")
            index = _index_of(db.cursor(), table)
            if index is not None and index.startswith(INDEX_PREFIX):
                db.execute(f"DROP INDEX {quote(index)}")
            for name, _ in reversed(LINEAGE):
                db.execute(f"ALTER TABLE {quote(table)} DROP COLUMN {quote(name)}")
            db.execute("RELEASE etl_lineage")
        report.dropped.append(f"{table}.{', '.join(n for n, _ in LINEAGE)}")
    except sqlite3.OperationalError:
        # a view or a user's index uses them: they stay (empty), with our index
        db.execute("ROLLBACK TO etl_lineage")
        db.execute("RELEASE etl_lineage")


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
