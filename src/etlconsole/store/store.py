"""Reads and writes of the state store.

One connection per thread (sqlite3 objects are not shared across threads); WAL lets the
console read while the engine writes. Every write is one short transaction.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sqlite3
import time
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, AbstractSet, Any, Iterator

import psutil

from ..errors import DiskFull, UserError, is_disk_full
from ..interrupts import shielded
from ..records import ACTIVE, BatchStatus, JobStatus, SegmentStatus
from . import packed
from .schema import MIGRATIONS, migrate

if TYPE_CHECKING:
    import sqlite_utils

# What reading a file of a job's source learns (pipeline_files): where it starts in the
# job's records, its records, and its content's proof when read whole.
FILE_FACTS = ("first_record", "records", "content_bytes", "content_sha256")
_NOTE_FILE = (f"INSERT INTO pipeline_files (job_id, idx, {', '.join(FILE_FACTS)}) VALUES "
              f"(?, ?, {', '.join('?' * len(FILE_FACTS))}) ON CONFLICT (job_id, idx) DO UPDATE SET "
              + ", ".join(f"{k} = coalesce(excluded.{k}, {k})" for k in FILE_FACTS))
JSON_FIELDS = ("source_fingerprint", "dialect", "destinations", "phase_stats", "settings")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_job_id() -> str:
    return secrets.token_hex(4)


def _open_writable(path: Path, attempts: int = 8) -> sqlite3.Connection:
    """Open (and create, or migrate) the store for writing. Two processes opening a new
    store at the same moment can both hold a shared lock while each wants the exclusive
    one that the switch to WAL needs: SQLite then answers "database is locked" at once,
    without its busy handler (it would deadlock). Seen with two jobs started together on
    a loaded machine; the open is retried after a short, growing pause."""
    for attempt in range(attempts):
        # isolation_level=None: transactions are explicit (see _tx), never implicit.
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            migrate(conn)
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * 2 ** attempt + random.random() * 0.02)
        except BaseException:           # a store too new for this etlconsole, an interrupt
            conn.close()
            raise
    raise AssertionError("unreachable")


# Rejects go in statements of these sizes only (rows; 10 parameters each): the connection
# caches each statement it prepares, ~1 KB a row, so one of every size a batch's rejects
# came in held ~60 MB (a 2M-row job under a 200 MB budget ran out of it).
_REJECT_STATEMENT_ROWS = (500, 50, 5, 1)
_INSERT_REJECTS = {n: f"INSERT INTO pipeline_rejects (job_id, {packed.NAMES}) VALUES "
                      + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * n)
                   for n in _REJECT_STATEMENT_ROWS}


class StateStore:
    def __init__(self, path: str | Path, *, readonly: bool = False):
        """``readonly``: for commands that only read (jobs, show, …). The file is opened
        without a write of any kind (no WAL switch, no migration, no marking of dead jobs),
        so a store on read-only media or without write permission can still be read. A
        store that does not exist yet, or needs a migration, is opened as usual."""
        self.path = Path(path)
        self.readonly = False
        self._db: sqlite_utils.Database | None = None
        # Called with every event recorded (job_id, event, level, details): the CLI logs
        # them (structlog; JSON lines with --log-format json). The console sets none.
        self.on_event: Callable[[str | None, str, str, dict[str, Any]], None] | None = None
        if readonly and self.path.is_file():
            conn = _open_readonly(self.path)
            if conn is not None:
                self.readonly = True
                self.conn = conn
                return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = _open_writable(self.path)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise UserError(f"{self.path}: cannot open the state store: {exc}") from None
        except UserError as exc:        # a store from a newer etlconsole
            raise UserError(f"{self.path}: {exc}") from None
        self.conn = conn

    @property
    def db(self) -> "sqlite_utils.Database":
        """sqlite-utils over the store's connection: the reads' query layer (rows as dicts).
        Made on first use, so that a job, whose own writes and reads are plain statements
        on ``conn``, never imports it: that import was ~60 ms of every run's start (a
        fifth of it; ADR 0019, amended)."""
        if self._db is None:
            import sqlite_utils
            # The store is etlconsole's own: sqlite-utils' plugins (SQL functions for its
            # CLI's users) have no business on it, and looking them up scans every package.
            self._db = sqlite_utils.Database(self.conn, execute_plugins=False)
        return self._db

    @contextmanager
    def _tx(self):
        """One real transaction (BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error). Ctrl-C and
        SIGTERM wait for its end: cut after BEGIN, it would leave the connection inside a
        transaction, and the job could not even be marked interrupted (interrupts.py)."""
        conn = self.conn
        with shielded():
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # Also when COMMIT itself failed (a full disk): SQLite then keeps the
                    # transaction open, and with it the write lock every other connection
                    # would wait out its busy timeout for.
                    if conn.in_transaction:
                        with suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if is_disk_full(exc):
                    raise DiskFull(f"{self.path}: the state store's disk is full ({exc}); the job "
                                   "stopped and is resumable: free space there, then resume it"
                                   ) from None
                raise

    def _insert(self, conn, table: str, row: dict[str, Any]) -> None:
        cols = ", ".join(f'"{c}"' for c in row)
        conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(row))})",
                     list(row.values()))

    def _update(self, conn, job_id: str, fields: dict[str, Any]) -> None:
        if fields:
            # updated_at: the console re-reads only job rows changed since its last poll
            fields = {**fields, "updated_at": now()}
            sets = ", ".join(f'"{c}" = ?' for c in fields)
            conn.execute(f"UPDATE import_jobs SET {sets} WHERE id = ?", [*fields.values(), job_id])

    def clone(self) -> "StateStore":
        """A second connection, for another thread."""
        other = StateStore(self.path, readonly=self.readonly)
        other.on_event = self.on_event
        return other

    def close(self) -> None:
        self.conn.close()

    # -- jobs ---------------------------------------------------------------
    def create_job(self, job_id: str, **fields: Any) -> str:
        stamp = now()
        row = {"id": job_id, "status": JobStatus.PENDING, "created_at": stamp, "updated_at": stamp,
               "pid": os.getpid(),
               "pid_started": psutil.Process().create_time()}
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
        return self._seen(self._job_of(rows[0]))

    def jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        return [self._seen(self._job_of(r)) for r in self.db.query(
            "SELECT * FROM import_jobs ORDER BY created_at DESC LIMIT ?", [limit])]

    # -- what reading a job's files learned (a source of many files) -------------------
    def note_files(self, job_id: str, facts: list[dict[str, Any]]) -> None:
        """Record what reading the job's files learned (``facts``: each with the file's
        ``index`` and some of FILE_FACTS), a row per file: a file's end writes its own
        row, not the job's fingerprint of every file again (migration 8)."""
        with self._tx() as conn:
            self._note_files(conn, job_id, facts)

    def _note_files(self, conn, job_id: str, facts: Sequence[dict[str, Any]]) -> None:
        conn.executemany(_NOTE_FILE, [(job_id, f["index"], *(f.get(k) for k in FILE_FACTS))
                                      for f in facts])

    def _job_of(self, row: dict[str, Any]) -> dict[str, Any]:
        """A job row, its JSON fields read, with what its files' rows say merged into its
        fingerprint's list of files."""
        job = _load(row)
        files = (job.get("source_fingerprint") or {}).get("files")
        if files:
            for index, *values in self.conn.execute(
                    f"SELECT idx, {', '.join(FILE_FACTS)} FROM pipeline_files WHERE job_id = ?",
                    (job["id"],)):
                if 0 <= index < len(files):
                    files[index].update({k: v for k, v in zip(FILE_FACTS, values, strict=True)
                                         if v is not None})
        return job

    _dead: AbstractSet[str] = frozenset()

    def _seen(self, job: dict[str, Any]) -> dict[str, Any]:
        """A job as mark_dead_jobs would have left it, on a store it could not write."""
        if job["id"] in self._dead and job["status"] in ACTIVE:
            job.update(status=JobStatus.INTERRUPTED, error="the engine process stopped without "
                       "finishing (killed or crashed); resume or roll back")
        return job

    # -- batches, rejects, checkpoints ---------------------------------------
    def begin_batch(self, job_id: str, batch_number: int, *, row_start: int, row_end: int,
                    rejects: list[dict[str, Any]], rows: int | None = None,
                    keep_labels: AbstractSet[str] = frozenset(),
                    proof: tuple[int, str] | None = None) -> None:
        """Before the destination commits: the batch as PENDING, with its rejects.

        If the process dies before the destination commits, resume finds the batch PENDING
        and not in the destination's ledger, and drops it with its rejects; if it dies after,
        the ledger has it and resume marks it COMMITTED. Either way rejects are exact.
        ``proof``: (n, hash) of the source's first n bytes, which hold the batch's records
        (resume checks them before skipping the records; ADR 0017).
        ``keep_labels``: destinations that already hold this batch (a branched job resumed
        between two destinations' commits) — their refused rows stay.
        """
        stamp = now()
        with self._tx() as conn:
            self._drop_batches(conn, job_id, "= ?", batch_number, keep_labels)
            self._insert(conn, "pipeline_batches", {
                "job_id": job_id, "batch_number": batch_number, "status": "PENDING",
                "row_start": row_start, "row_end": row_end, "created_at": stamp,
                **({"rows_loaded": rows} if rows is not None else {}),
                **({"source_bytes": proof[0], "source_sha256": proof[1]} if proof else {})})
            self._insert_rejects(conn, job_id, batch_number, rejects)
            self._count_rejects(conn, job_id, batch_number)

    def set_load_rejects(self, job_id: str, batch_number: int, label: str,
                         rejects: list[dict[str, Any]]) -> None:
        """Rows one destination refused in a batch it is about to commit (phase ``load``).

        Called inside the destination's transaction, after begin_batch: replacing (not
        adding) keeps a retried batch exact, and the batch is still PENDING, so the same
        reconcile rule keeps or drops these rows with it."""
        with self._tx() as conn:
            conn.execute("DELETE FROM pipeline_rejects WHERE job_id = ? AND batch_number = ? "
                         "AND phase = 'load' AND phase_label = ?", (job_id, batch_number, label))
            self._insert_rejects(conn, job_id, batch_number, rejects)
            self._count_rejects(conn, job_id, batch_number)

    @staticmethod
    def _count_rejects(conn, job_id: str, batch_number: int) -> None:
        conn.execute("UPDATE pipeline_batches SET rows_rejected = (SELECT count(*) FROM "
                     "pipeline_rejects WHERE job_id = ? AND batch_number = ?) "
                     "WHERE job_id = ? AND batch_number = ?",
                     (job_id, batch_number, job_id, batch_number))

    @staticmethod
    def _insert_rejects(conn, job_id: str, batch_number: int, rejects: list[dict[str, Any]]) -> None:
        """``rejects``: the engine's reject records; ``branch`` is set on those of a
        branch (its phases' and its destination's), absent on the main line's.

        Many rows per statement, not ``executemany``: that steps SQLite once per row and
        hands the GIL back each time, and while the job's other threads want it, every
        handback waits its turn (20,000 rejects with two busy threads: 3.5-6 s row by row,
        0.4 s in statements of 1,000 rows; alone, 0.10 s against 0.07 s). A few fixed
        sizes (``_REJECT_STATEMENT_ROWS``: 1,234 rejects go as 2 x 500, 4 x 50, 6 x 5, 4 x 1)
        keep the statement cache small."""
        limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 10
        start = 0
        for size in (n for n in _REJECT_STATEMENT_ROWS if n <= limit):
            while len(rejects) - start >= size:
                conn.execute(_INSERT_REJECTS[size], [v for r in rejects[start:start + size] for v in (
                    job_id, batch_number, r["row"], r["phase"], r.get("phase_label"),
                    r.get("branch"), r["rule"], r["column"], r["message"], r["values"])])
                start += size

    def commit_batch(self, job_id: str, batch_number: int, *, rows_loaded: int, attempts: int,
                     duration_ms: float, counters: dict[str, Any]) -> None:
        """After the destination committed: the batch COMMITTED and the job's counters."""
        stamp = now()
        with self._tx() as conn:
            conn.execute(f"UPDATE pipeline_batches SET status = '{BatchStatus.COMMITTED}', rows_loaded = ?, "
                         "attempts = ?, duration_ms = ?, processed_at = ? "
                         "WHERE job_id = ? AND batch_number = ?",
                         (rows_loaded, attempts, duration_ms, stamp, job_id, batch_number))
            self._update(conn, job_id, {**_dump(counters), "heartbeat_at": stamp})

    def drop_pending(self, job_id: str, *, after: int) -> None:
        """Forget the batches numbered above ``after``, with their rejects: a job that stopped
        had begun them, and no destination took them, so they can only be PENDING (resume
        would drop them too)."""
        with self._tx() as conn:
            self._drop_batches(conn, job_id, "> ?", after)

    @classmethod
    def _drop_batches(cls, conn, job_id: str, where: str, value: int,
                      keep_labels: AbstractSet[str] = frozenset()) -> None:
        cls._drop_rejects(conn, job_id, where, value, keep_labels)
        conn.execute(f"DELETE FROM pipeline_batches WHERE job_id = ? AND batch_number {where}",
                     (job_id, value))

    @staticmethod
    def _drop_rejects(conn, job_id: str, where: str, value: int,
                      keep_labels: AbstractSet[str] = frozenset()) -> None:
        """Rejects of the batches ``where`` matches, except the rows refused by the loads
        labelled ``keep_labels`` (destinations that hold the batch already)."""
        keep = ""
        if keep_labels:
            keep = (" AND NOT (phase = 'load' AND phase_label IN (%s))"
                    % ", ".join("?" * len(keep_labels)))
        conn.execute(f"DELETE FROM pipeline_rejects WHERE job_id = ? AND batch_number {where}{keep}",
                     (job_id, value, *sorted(keep_labels)))

    def source_proof(self, job_id: str, batches: set[int]) -> dict[str, Any] | None:
        """The proof (batch, source_bytes, source_sha256) of the highest of ``batches`` that
        has one; None when none has (a job from before proofs were kept)."""
        if not batches:
            return None
        rows = list(self.db.query(
            "SELECT batch_number AS batch, source_bytes, source_sha256 FROM pipeline_batches "
            f"WHERE job_id = ? AND source_sha256 IS NOT NULL AND batch_number IN "
            f"({', '.join('?' * len(batches))}) ORDER BY batch_number DESC LIMIT 1",
            [job_id, *sorted(batches)]))
        return rows[0] if rows else None

    def reconcile(self, job_id: str, ledger: list[dict[str, Any]], *, rolled_back_after: int | None = None,
                  partial: dict[int, set[str]] | None = None, branched: bool = False,
                  keep_figures: bool = False) -> dict[str, int]:
        """Make the store agree with the destinations' ledgers; returns the true counters.

        ``ledger``: the batches every destination holds. Batches none holds are dropped
        with their rejects (they will be produced again), or kept as ROLLED_BACK history
        after a rollback. ``partial``: batches only some destinations hold (a branched job
        killed between two commits) -> the labels of those that do; the batch stays
        PENDING with only those destinations' refused rows, and is written again where it
        is missing. In a branched job rows_loaded counts rows that reached the branches and
        rows_rejected the rows rejected before them (branch rejects are per branch).
        ``keep_figures`` (a full rollback): the job's counters and rejects stay as the
        history of what it did; its batches become ROLLED_BACK.
        """
        held = {e["batch"]: e for e in ledger}
        partial = partial or {}
        with self._tx() as conn:
            for (number, status) in conn.execute(
                    "SELECT batch_number, status FROM pipeline_batches WHERE job_id = ?",
                    (job_id,)).fetchall():
                if number in held:
                    if status != "COMMITTED":
                        conn.execute("UPDATE pipeline_batches SET status = 'COMMITTED', "
                                     "rows_loaded = coalesce(?, rows_loaded) "
                                     "WHERE job_id = ? AND batch_number = ?",
                                     (None if branched else held[number]["rows"], job_id, number))
                elif number in partial:
                    self._drop_rejects(conn, job_id, "= ?", number, partial[number])
                elif rolled_back_after is not None and status == "COMMITTED":
                    conn.execute("UPDATE pipeline_batches SET status = 'ROLLED_BACK' "
                                 "WHERE job_id = ? AND batch_number = ?", (job_id, number))
                    if not keep_figures:
                        conn.execute("DELETE FROM pipeline_rejects WHERE job_id = ? AND "
                                     "batch_number = ?", (job_id, number))
                else:
                    self._drop_batches(conn, job_id, "= ?", number)
            known = {r[0] for r in conn.execute(
                "SELECT batch_number FROM pipeline_batches WHERE job_id = ?", (job_id,))}
            for number, e in held.items():   # committed, but the store never heard of it
                if number not in known:
                    self._insert(conn, "pipeline_batches", {
                        "job_id": job_id, "batch_number": number, "status": "COMMITTED",
                        "row_start": e["row_start"], "row_end": e["row_end"],
                        "rows_loaded": e["rows"], "created_at": now(),
                        "error_details": json.dumps({"note": "rejects of this batch were lost"})})
            # a branch's rejects count in its branch, not in the job's rows_rejected
            main_line = " AND r.branch IS NULL" if branched else ""
            rejected = conn.execute(
                "SELECT count(*) FROM pipeline_rejects r JOIN pipeline_batches b ON "
                "b.job_id = r.job_id AND b.batch_number = r.batch_number "
                f"WHERE r.job_id = ? AND b.status = 'COMMITTED'{main_line}", (job_id,)).fetchone()[0]
            loaded = sum(e["rows"] for e in ledger) if not branched else conn.execute(
                "SELECT coalesce(sum(rows_loaded), 0) FROM pipeline_batches WHERE job_id = ? "
                "AND status = 'COMMITTED'", (job_id,)).fetchone()[0]
            counters = {"rows_read": max((e["row_end"] for e in ledger), default=0),
                        "rows_loaded": loaded, "rows_rejected": rejected}
            conn.execute("DELETE FROM pipeline_checkpoints WHERE job_id = ? AND row_count > ?",
                         (job_id, counters["rows_read"]))
            if not keep_figures:
                self._update(conn, job_id, counters)
        return counters

    def mark_dead_jobs(self, stale_after_s: float = 600.0) -> list[str]:
        """Jobs shown as running whose process is gone become 'interrupted' (a read-only
        store is left as it is: its readers are shown them as interrupted, see _load)."""
        dead = []
        for job in self.db.query("SELECT id, pid, pid_started, heartbeat_at FROM import_jobs "
                                 f"WHERE status IN ('{JobStatus.RUNNING}', '{JobStatus.PENDING}')"):
            if not _alive(job["pid"], job["pid_started"]) or _age_s(job["heartbeat_at"]) > stale_after_s:
                dead.append(job["id"])
        if self.readonly and dead:
            # Recorded if the store can be written (the write is not needed to read it).
            try:
                writer = StateStore(self.path)
            except UserError:
                self._dead = set(dead)
                return dead
            try:
                return writer.mark_dead_jobs(stale_after_s)
            except sqlite3.DatabaseError:     # read-only after all
                self._dead = set(dead)
                return dead
            finally:
                writer.close()
        marked = []
        with self._tx() as conn:
            for job_id in dead:
                # Only if it is still shown as running: its engine may have finished it and
                # exited between the look above and this write, and a succeeded job must
                # not become 'interrupted' (seen in CI: the console's monitor did it to a
                # job that ended 13 ms before).
                if conn.execute(
                        "UPDATE import_jobs SET status = ?, error = ?, updated_at = ? WHERE id = ? "
                        f"AND status IN ('{JobStatus.RUNNING}', '{JobStatus.PENDING}')",
                        (JobStatus.INTERRUPTED.value, "the engine process stopped without finishing "
                         "(killed or crashed); resume or roll back", now(), job_id)).rowcount:
                    marked.append(job_id)
        return marked

    def add_checkpoint(self, job_id: str, phase: str, data: dict[str, Any], row_count: int) -> int:
        """Returns the checkpoint's number in its job (1, 2, 3 ...; after a rollback to
        checkpoint k, the next one is k + 1 again)."""
        with self._tx() as conn:
            return self._add_checkpoint(conn, job_id, phase, data, row_count)

    def _add_checkpoint(self, conn, job_id: str, phase: str, data: dict[str, Any], row_count: int) -> int:
        number = conn.execute("SELECT coalesce(max(number), 0) + 1 FROM pipeline_checkpoints "
                              "WHERE job_id = ?", (job_id,)).fetchone()[0]
        self._insert(conn, "pipeline_checkpoints", {
            "job_id": job_id, "number": number, "phase": phase,
            "checkpoint_data": json.dumps(data), "row_count": row_count, "created_at": now()})
        return number

    def record_part(self, job_id: str, batches: list[dict[str, Any]], rejects: bytes | None, *,
                    row_offset: int, job_fields: dict[str, Any], checkpoint: dict[str, Any],
                    row_count: int, files: Sequence[dict[str, Any]] = ()) -> None:
        """A part of a distributed job, recorded after the destination committed its
        batches, in one transaction: each batch COMMITTED (``batches``: their columns,
        ``rows_rejected`` counted by the worker as it packed them), their rejects copied
        from the worker's pack (``packed``) with their records numbered after the parts
        before it (``row_offset``), the job's fields, what the part learned of its file
        (``files``: note_files), then the part's checkpoint. A driver
        killed half way leaves the part unrecorded (resume runs it again, skipping what
        the destination's ledger holds); recorded again, a batch replaces itself."""
        conn, stamp = self.conn, now()
        if rejects is not None:
            conn.execute("ATTACH ':memory:' AS part")   # not inside a transaction: SQLite's rule
        try:
            if rejects is not None:
                conn.deserialize(rejects, name="part")
            with self._tx() as conn:
                for b in batches:
                    self._drop_batches(conn, job_id, "= ?", b["batch_number"])
                    self._insert(conn, "pipeline_batches", {
                        "job_id": job_id, "status": BatchStatus.COMMITTED.value, "created_at": stamp,
                        "processed_at": stamp, **b})
                if rejects is not None:
                    conn.execute(packed.COPY, (job_id, row_offset))
                self._update(conn, job_id, {**_dump(job_fields), "heartbeat_at": stamp})
                self._note_files(conn, job_id, files)
                self._add_checkpoint(conn, job_id, "part", checkpoint, row_count)
        finally:
            if rejects is not None:
                conn.execute("DETACH part")

    def checkpoint(self, job_id: str, ref: int) -> dict[str, Any] | None:
        """The job's checkpoint ``ref``: its number in the job (what `checkpoints` shows),
        or else the store-wide id older versions showed, when that id is not also one of
        the job's numbers (the number wins)."""
        rows = self.checkpoints(job_id)
        return (next((c for c in rows if c["number"] == ref), None)
                or next((c for c in rows if c["id"] == ref), None))

    # -- run segments: the run, then each resume ---------------------------------
    def begin_segment(self, job_id: str, kind: str, rows_at_start: int) -> int:
        """Record the start of a run segment; returns its number. A job from before
        segments were kept gets its earlier run as segment 1 (kind 'before'), from its
        record, so its duration still adds up."""
        stamp = now()
        with self._tx() as conn:
            # A segment that never ended (its process was killed) lasted until the job's
            # last heartbeat.
            conn.execute(f"UPDATE pipeline_segments SET status = '{SegmentStatus.KILLED}', "
                         "elapsed_s = max(0, "
                         "(julianday((SELECT heartbeat_at FROM import_jobs WHERE id = ?)) - "
                         "julianday(started_at)) * 86400.0) WHERE job_id = ? AND elapsed_s IS NULL",
                         (job_id, job_id))
            count = conn.execute("SELECT count(*) FROM pipeline_segments WHERE job_id = ?",
                                 (job_id,)).fetchone()[0]
            job = conn.execute("SELECT started_at, finished_at, elapsed_s, rows_read FROM "
                               "import_jobs WHERE id = ?", (job_id,)).fetchone()
            if count == 0 and kind == "resume" and job and job[2] is not None:
                self._insert(conn, "pipeline_segments", {
                    "job_id": job_id, "number": 1, "kind": "before", "started_at": job[0] or stamp,
                    "finished_at": job[1], "elapsed_s": job[2], "rows_at_end": job[3]})
                count = 1
            self._insert(conn, "pipeline_segments", {
                "job_id": job_id, "number": count + 1, "kind": kind, "pid": os.getpid(),
                "started_at": stamp, "rows_at_start": rows_at_start})
        return count + 1

    def end_segment(self, job_id: str, number: int, *, elapsed_s: float, rows_at_end: int,
                    status: str) -> float:
        """Record the end of a run segment; returns the job's duration (all its segments)."""
        with self._tx() as conn:
            conn.execute("UPDATE pipeline_segments SET finished_at = ?, elapsed_s = ?, "
                         "rows_at_end = ?, status = ? WHERE job_id = ? AND number = ?",
                         (now(), elapsed_s, rows_at_end, status, job_id, number))
        return self.duration(job_id)

    def duration(self, job_id: str) -> float:
        """Seconds the job ran: the sum of its finished segments."""
        return self.conn.execute("SELECT coalesce(sum(elapsed_s), 0) FROM pipeline_segments "
                               "WHERE job_id = ?", [job_id]).fetchone()[0]

    def segments(self, job_id: str) -> list[dict[str, Any]]:
        return self._rows("pipeline_segments", job_id, "number")

    def phase_reject_counts(self, job_id: str) -> dict[str, int]:
        """Rejected rows of the job's committed batches on the main line, by phase label
        (the extract's by 'extract'): what the phase table must add up to. A branch's
        rejects count in its own line (the target's figures), not here."""
        rows = self.conn.execute(
            "SELECT coalesce(r.phase_label, r.phase), count(*) FROM pipeline_rejects r "
            "JOIN pipeline_batches b ON b.job_id = r.job_id AND b.batch_number = r.batch_number "
            f"WHERE r.job_id = ? AND b.status = '{BatchStatus.COMMITTED}' AND r.branch IS NULL "
            "GROUP BY 1", [job_id]).fetchall()
        return dict(rows)

    def add_metric(self, job_id: str, sample: dict[str, Any]) -> None:
        with self._tx() as conn:
            self._insert(conn, "pipeline_metrics", {"job_id": job_id, "at": now(), **sample})
            self._update(conn, job_id, {"heartbeat_at": now()})

    def add_event(self, job_id: str | None, event: str, level: str = "info", **details: Any) -> None:
        with self._tx() as conn:
            self._insert(conn, "pipeline_events", {
                "job_id": job_id, "at": now(), "level": level, "event": event,
                "details": json.dumps(details, default=str)})
        if self.on_event is not None:
            self.on_event(job_id, event, level, details)

    # -- reads --------------------------------------------------------------
    def rejects(self, job_id: str) -> Iterator[dict[str, Any]]:
        for r in self.db.query('SELECT row, phase, rule, column_name AS "column", message, "values" '
                               "FROM pipeline_rejects WHERE job_id = ? ORDER BY row, id", [job_id]):
            r["values"] = json.loads(r["values"]) if r["values"] else None
            yield r

    def reject_records(self, job_id: str, labels: set[str]) -> list[dict[str, Any]]:
        """Rejects of the given phase labels (and of the extract), as written by begin_batch."""
        rows = self.db.query('SELECT row, phase, phase_label, rule, column_name AS "column", message, '
                             '"values" FROM pipeline_rejects WHERE job_id = ? ORDER BY row, id', [job_id])
        return [r for r in rows if r["phase"] == "extract" or r["phase_label"] in labels]

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


    # -- console reads (small, bounded queries polled by the console) ---------
    def job_by_pid(self, pid: int) -> dict[str, Any] | None:
        """The most recent job run by process ``pid`` (how the console finds the job it launched)."""
        rows = list(self.db.query("SELECT * FROM import_jobs WHERE pid = ? ORDER BY created_at DESC "
                                  "LIMIT 1", [pid]))
        return self._job_of(rows[0]) if rows else None

    def metrics_since(self, job_id: str, after_id: int = 0, limit: int = 120) -> list[dict[str, Any]]:
        """The last ``limit`` metric samples with id > ``after_id``, oldest first."""
        return list(self.db.query(
            "SELECT * FROM (SELECT * FROM pipeline_metrics WHERE job_id = ? AND id > ? "
            "ORDER BY id DESC LIMIT ?) ORDER BY id", [job_id, after_id, limit]))

    def recent_events(self, job_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The last ``limit`` events of the job, oldest first."""
        rows = list(self.db.query(
            "SELECT * FROM (SELECT * FROM pipeline_events WHERE job_id = ? ORDER BY id DESC LIMIT ?)"
            " ORDER BY id", [job_id, limit]))
        for r in rows:
            r["details"] = json.loads(r["details"]) if r["details"] else {}
        return rows

    def latest_event(self, job_id: str, event: str) -> dict[str, Any] | None:
        """The job's last event named ``event`` (the monitor's Dask workers), or None."""
        rows = list(self.db.query(
            "SELECT * FROM pipeline_events WHERE job_id = ? AND event = ? ORDER BY id DESC LIMIT 1",
            [job_id, event]))
        for r in rows:
            r["details"] = json.loads(r["details"]) if r["details"] else {}
        return rows[0] if rows else None

    def recent_batches(self, job_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The last ``limit`` batches of the job, in batch order."""
        return list(self.db.query(
            "SELECT * FROM (SELECT * FROM pipeline_batches WHERE job_id = ? ORDER BY batch_number "
            "DESC LIMIT ?) ORDER BY batch_number", [job_id, limit]))

    def data_version(self) -> int:
        """Changes when another connection committed to the store since this connection's
        last look (SQLite's PRAGMA data_version): one cheap statement tells an idle console
        that nothing needs reading."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def jobs_changed_since(self, stamp: str | None, limit: int = 200) -> list[dict[str, Any]]:
        """Job rows written at or after ``stamp`` (their updated_at; "at" as well: a write in
        the same millisecond as the last one read must not be missed), newest first;
        every job (up to ``limit``, most recent first) when ``stamp`` is None."""
        if stamp is None:
            return self.jobs(limit)
        return [self._job_of(r) for r in self.db.query(
            "SELECT * FROM import_jobs WHERE updated_at >= ? ORDER BY updated_at DESC LIMIT ?",
            [stamp, limit])]

    def reject(self, reject_id: int) -> dict[str, Any] | None:
        """One rejected row in full (the console's detail view)."""
        rows = list(self.db.query(
            'SELECT id, job_id, batch_number, row, phase, phase_label, rule, '
            'column_name AS "column", message, "values" FROM pipeline_rejects WHERE id = ?',
            [reject_id]))
        if not rows:
            return None
        rows[0]["values"] = json.loads(rows[0]["values"]) if rows[0]["values"] else None
        return rows[0]

    def recent_checkpoints(self, job_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The last ``limit`` checkpoints of the job, oldest first."""
        rows = list(self.db.query(
            "SELECT * FROM (SELECT * FROM pipeline_checkpoints WHERE job_id = ? ORDER BY id DESC "
            "LIMIT ?) ORDER BY id", [job_id, limit]))
        for r in rows:
            r["checkpoint_data"] = json.loads(r["checkpoint_data"])
        return rows

    def reject_groups(self, job_id: str) -> list[dict[str, Any]]:
        """Rejected rows counted by phase, rule and column, largest group first; ``open``
        and ``resolved`` (loaded by a replay) split ``count``."""
        return list(self.db.query(
            'SELECT phase, rule, column_name AS "column", count(*) AS count, '
            "count(*) - count(resolved_at) AS open, count(resolved_at) AS resolved "
            "FROM pipeline_rejects "
            "WHERE job_id = ? GROUP BY phase, rule, column_name ORDER BY count DESC, phase, rule, "
            "column_name", [job_id]))

    def reject_rows(self, job_id: str, *, phase: str | None = None, rule: str | None = None,
                    column: str | None = None, grouped: bool = False,
                    limit: int = 500, offset: int = 0) -> list[dict[str, Any]]:
        """One page of rejected rows in record order (``limit`` rows after the first
        ``offset``); with ``grouped``, only those of one phase/rule/column."""
        where = "job_id = ?"
        params: list[Any] = [job_id]
        if grouped:
            where += " AND phase = ? AND rule = ? AND column_name IS ?"
            params += [phase, rule, column]
        rows = list(self.db.query(
            f'SELECT id, row, phase, phase_label, rule, column_name AS "column", message, '
            f'"values", source, replay, replay_batch, resolved_at, resolved_by '
            f"FROM pipeline_rejects WHERE {where} ORDER BY row, id LIMIT ? OFFSET ?",
            [*params, limit, offset]))
        for r in rows:
            r["values"] = json.loads(r["values"]) if r["values"] else None
            r["source"] = json.loads(r["source"]) if r["source"] else None
        return rows

def _open_readonly(path: Path) -> sqlite3.Connection | None:
    """A connection that never writes, or None when the store needs a migration first.

    ``mode=ro`` reads a WAL store as any reader does (it sees a running job's commits);
    on read-only media SQLite cannot open a WAL store that way (it cannot create the
    shared-memory file), and ``immutable=1`` reads it as the file is: nothing can write
    to it anyway."""
    uri = path.resolve().as_uri()
    error = None
    for flags in ("mode=ro", "mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(f"{uri}?{flags}", uri=True, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            error = exc
            continue
        if version != len(MIGRATIONS):
            conn.close()
            return None
        return conn
    raise UserError(f"{path}: cannot open the state store for reading: {error}")


def _alive(pid: int | None, started: float | None) -> bool:
    """Is this pid still the process that ran the job (not a reused pid)?"""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _age_s(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return (datetime.now(timezone.utc) - datetime.fromisoformat(stamp)).total_seconds()


def _dump(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v, default=str) if k in JSON_FIELDS and v is not None else v
            for k, v in fields.items()}


def _load(row: dict[str, Any]) -> dict[str, Any]:
    for k in JSON_FIELDS:
        if row.get(k):
            row[k] = json.loads(row[k])
    return row
