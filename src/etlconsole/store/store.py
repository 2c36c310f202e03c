"""Reads and writes of the state store.

One connection per thread (sqlite3 objects are not shared across threads); WAL lets the
console read while the engine writes. Every write is one short transaction.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import sqlite_utils

from ..errors import UserError
from .schema import migrate

JSON_FIELDS = ("source_fingerprint", "dialect", "destinations", "phase_stats", "settings")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_job_id() -> str:
    return secrets.token_hex(4)


class StateStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (see _tx), never implicit.
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            migrate(conn)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise UserError(f"{self.path}: cannot open the state store: {exc}") from None
        self.db = sqlite_utils.Database(conn)

    @contextmanager
    def _tx(self):
        """One real transaction (BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error)."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _insert(self, conn, table: str, row: dict[str, Any]) -> None:
        cols = ", ".join(f'"{c}"' for c in row)
        conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(row))})",
                     list(row.values()))

    def _update(self, conn, job_id: str, fields: dict[str, Any]) -> None:
        if fields:
            sets = ", ".join(f'"{c}" = ?' for c in fields)
            conn.execute(f"UPDATE import_jobs SET {sets} WHERE id = ?", [*fields.values(), job_id])

    def clone(self) -> "StateStore":
        """A second connection, for another thread."""
        return StateStore(self.path)

    def close(self) -> None:
        self.db.conn.close()

    # -- jobs ---------------------------------------------------------------
    def create_job(self, job_id: str, **fields: Any) -> str:
        row = {"id": job_id, "status": "pending", "created_at": now(), "pid": os.getpid()}
        row.update(_dump(fields))
        with self._tx() as conn:
            self._insert(conn, "import_jobs", row)
        return job_id

    def update_job(self, job_id: str, **fields: Any) -> None:
        with self._tx() as conn:
            self._update(conn, job_id, _dump(fields))

    def job(self, ref: str) -> dict[str, Any]:
        """A job by id, unique id prefix, or 'last'."""
        if ref == "last":
            rows = list(self.db.query("SELECT * FROM import_jobs ORDER BY created_at DESC LIMIT 1"))
        else:
            rows = list(self.db.query("SELECT * FROM import_jobs WHERE substr(id, 1, length(?)) = ?"
                                      " LIMIT 2", [ref, ref]))
        if not rows:
            raise UserError(f"no job {ref!r} in {self.path} (see 'etlconsole jobs')")
        if len(rows) > 1:
            raise UserError(f"job id {ref!r} is ambiguous; give more characters")
        return _load(rows[0])

    def jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        return [_load(r) for r in self.db.query(
            "SELECT * FROM import_jobs ORDER BY created_at DESC LIMIT ?", [limit])]

    # -- batches, rejects, checkpoints ---------------------------------------
    def record_batch(self, job_id: str, batch_number: int, *, row_start: int, row_end: int,
                     rows_loaded: int, rejects: list[dict[str, Any]], attempts: int,
                     duration_ms: float, counters: dict[str, Any]) -> None:
        """A committed batch, its rejects and the job's counters, in one transaction."""
        stamp = now()
        with self._tx() as conn:
            conn.execute("DELETE FROM pipeline_batches WHERE job_id = ? AND batch_number = ?",
                         (job_id, batch_number))
            self._insert(conn, "pipeline_batches", {
                "job_id": job_id, "batch_number": batch_number, "status": "COMMITTED",
                "row_start": row_start, "row_end": row_end, "rows_loaded": rows_loaded,
                "rows_rejected": len(rejects), "attempts": attempts, "duration_ms": duration_ms,
                "processed_at": stamp, "created_at": stamp})
            conn.executemany(
                'INSERT INTO pipeline_rejects (job_id, batch_number, row, phase, rule, column_name,'
                ' message, "values") VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                [(job_id, batch_number, r["row"], r["phase"], r["rule"], r["column"], r["message"],
                  r["values"]) for r in rejects])
            self._update(conn, job_id, {**_dump(counters), "heartbeat_at": stamp})

    def add_checkpoint(self, job_id: str, phase: str, data: dict[str, Any], row_count: int) -> None:
        with self._tx() as conn:
            self._insert(conn, "pipeline_checkpoints", {
                "job_id": job_id, "phase": phase, "checkpoint_data": json.dumps(data),
                "row_count": row_count, "created_at": now()})

    def add_metric(self, job_id: str, sample: dict[str, Any]) -> None:
        with self._tx() as conn:
            self._insert(conn, "pipeline_metrics", {"job_id": job_id, "at": now(), **sample})
            self._update(conn, job_id, {"heartbeat_at": now()})

    def add_event(self, job_id: str | None, event: str, level: str = "info", **details: Any) -> None:
        with self._tx() as conn:
            self._insert(conn, "pipeline_events", {
                "job_id": job_id, "at": now(), "level": level, "event": event,
                "details": json.dumps(details, default=str)})

    # -- reads --------------------------------------------------------------
    def rejects(self, job_id: str) -> Iterator[dict[str, Any]]:
        for r in self.db.query('SELECT row, phase, rule, column_name AS "column", message, "values" '
                               "FROM pipeline_rejects WHERE job_id = ? ORDER BY row, id", [job_id]):
            r["values"] = json.loads(r["values"]) if r["values"] else None
            yield r

    def _rows(self, table: str, job_id: str, order: str = "id") -> list[dict[str, Any]]:
        return list(self.db.query(f"SELECT * FROM {table} WHERE job_id = ? ORDER BY {order}", [job_id]))

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._rows("pipeline_checkpoints", job_id)
        for r in rows:
            r["checkpoint_data"] = json.loads(r["checkpoint_data"])
        return rows

    def batches(self, job_id: str) -> list[dict[str, Any]]:
        return self._rows("pipeline_batches", job_id, "batch_number")

    def events(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._rows("pipeline_events", job_id)
        for r in rows:
            r["details"] = json.loads(r["details"]) if r["details"] else {}
        return rows

    def metrics(self, job_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        return list(self.db.query(
            "SELECT * FROM (SELECT * FROM pipeline_metrics WHERE job_id = ? ORDER BY id DESC LIMIT ?)"
            " ORDER BY id", [job_id, limit]))


def _dump(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v, default=str) if k in JSON_FIELDS and v is not None else v
            for k, v in fields.items()}


def _load(row: dict[str, Any]) -> dict[str, Any]:
    for k in JSON_FIELDS:
        if row.get(k):
            row[k] = json.loads(row[k])
    return row
