"""SQLite destination: Arrow-native bulk insert (ADBC) inside one transaction per batch.

Each batch commits its rows *and* its ledger entry (``_etl_loads``) together, so the
destination itself knows which batches of which job it holds; every row carries its
lineage (``_etl_job_id``, ``_etl_batch``). ``adbc_ingest`` binds Arrow arrays in C and
joins the surrounding transaction; dates and timestamps land as ISO 8601 text.
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

LEDGER = "_etl_loads"
LINEAGE = [("_etl_job_id", "TEXT"), ("_etl_batch", "INTEGER")]
SQLITE_MAX_COLUMNS = 2000     # SQLite's default SQLITE_MAX_COLUMN
_TRANSIENT = ("database is locked", "database table is locked", "busy", "disk i/o error",
              "unable to open database")


def quote(name: str) -> str:
    """SQLite identifier quoting: any header text becomes a safe identifier."""
    return '"' + name.replace('"', '""') + '"'


def _is_transient(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(t in text for t in _TRANSIENT)


def _whole_seconds(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps without fractions land as 2025-03-01T12:00:00, not …T12:00:00.000000."""
    for i, field in enumerate(batch.schema):
        if pa.types.is_timestamp(field.type) and field.type.unit != "s":
            try:
                seconds = pc.cast(batch.column(i), pa.timestamp("s", field.type.tz))  # safe: exact only
            except pa.ArrowInvalid:
                continue
            batch = batch.set_column(i, field.name, seconds)
    return batch


class SqliteDestination:
    kind = "sqlite"

    def __init__(self, path: Path, table: str, job_id: str, *, timeout_ms: int,
                 retry_attempts: int, retry_delay_ms: int):
        self.path, self.table, self.job_id = path, table, job_id
        self.timeout_ms = timeout_ms
        self.retry_attempts, self.retry_delay_ms = retry_attempts, retry_delay_ms
        self.retries = 0
        self._conn = None

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "table": self.table}

    # -- before anything is written ------------------------------------------
    def check(self, schema: pa.Schema) -> None:
        """Refuse (UserError) what would fail later: a missing folder, an incompatible table."""
        if not self.path.parent.is_dir():
            raise UserError(f"{self.path}: destination folder does not exist")
        if self.path.is_dir():
            raise UserError(f"{self.path}: destination is a directory, expected a SQLite file")
        if not self.path.exists():
            return
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
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
        columns = [f"{quote(f.name)} {types.sqlite_type(f.type)}" for f in schema]
        columns += [f"{quote(n)} {t}" for n, t in LINEAGE]
        cur.execute(f"CREATE TABLE IF NOT EXISTS {quote(self.table)} ({', '.join(columns)})")
        cur.execute(f"PRAGMA table_info({quote(self.table)})")
        existing = {r[1] for r in cur.fetchall()}
        for name, type_ in LINEAGE:   # appending to a table made before etlconsole
            if name not in existing:
                cur.execute(f"ALTER TABLE {quote(self.table)} ADD COLUMN {quote(name)} {type_}")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {LEDGER} (job_id TEXT NOT NULL, "
                    "table_name TEXT NOT NULL, batch INTEGER NOT NULL, row_start INTEGER, "
                    "row_end INTEGER, rows INTEGER NOT NULL, rowid_first INTEGER, "
                    "rowid_last INTEGER, committed_at TEXT NOT NULL, "
                    "PRIMARY KEY (job_id, table_name, batch))")
        self._conn.commit()

    # -- per batch ------------------------------------------------------------
    def write(self, batch_number: int, batch: pa.RecordBatch, row_start: int, row_end: int) -> int:
        """Commit one batch with its ledger entry; returns the number of attempts."""
        n = batch.num_rows
        batch = _whole_seconds(batch)
        batch = batch.append_column("_etl_job_id", pa.repeat(pa.scalar(self.job_id), n))
        batch = batch.append_column("_etl_batch", pa.repeat(pa.scalar(batch_number, pa.int64()), n))
        return self._retrying(self._write_once, batch_number, batch, row_start, row_end)

    def _write_once(self, batch_number, batch, row_start, row_end) -> None:
        cur = self._conn.cursor()
        cur.execute(f"SELECT coalesce(max(rowid), 0) FROM {quote(self.table)}")
        first = cur.fetchone()[0] + 1
        if batch.num_rows:
            cur.adbc_ingest(self.table, batch, mode="append")
        cur.execute(f"INSERT INTO {LEDGER} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.job_id, self.table, batch_number, row_start, row_end, batch.num_rows,
                     first, first + batch.num_rows - 1,
                     datetime.now(timezone.utc).isoformat(timespec="milliseconds")))
        self._conn.commit()

    def _retrying(self, fn, *args) -> int:
        """Run fn in a transaction; retry transient errors with exponential backoff + jitter."""
        attempt = 0
        while True:
            attempt += 1
            try:
                fn(*args)
                return attempt
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
