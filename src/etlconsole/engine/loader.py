"""The loader thread: one destination transaction per load batch (ADR 0002), the batch's
COMMITTED record and the load's checkpoints in the state store.

Who writes what (ADR 0020): the loader is the only writer of the destinations while a job
runs, and of the committed counters (``Committed``: records done, rows loaded and
rejected, batches). It publishes them as a new frozen snapshot after each commit, so the
sampler and the main thread read a consistent set; once the loader is joined the main
thread takes them over for the job's end. Commit outcomes reach the batch sizer as signals
(``cutter.SizeSignals``): the loader never writes the sizer itself.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pyarrow as pa

from ..errors import DiskFull, JobFailed
from ..store import StateStore
from .batching import LoadItem
from .destinations import RefusedRow, RowRefused
from .figures import phase_table
from .phases.base import ROW, Rejects
from .targets import Target

if TYPE_CHECKING:
    from .cutter import SizeSignals
    from .job import Job

DONE = object()     # the last item of the queue: every batch was handed over


@dataclass(frozen=True)
class Committed:
    """What the committed batches hold (the loader's snapshot after each commit)."""

    rows_read: int = 0          # records fully processed (committed or rejected)
    rows_loaded: int = 0
    rows_rejected: int = 0
    batches: int = 0


class Loader:
    """Takes load batches from ``queue`` and commits each to every target.

    Writes (loader thread): the destinations, ``committed``, ``refused`` (rows the
    destination refused, shown on the load's line of the phase table), ``taken``,
    ``error``, the targets' ``loaded``/``refused`` stats, and checkpoints. Reads: the
    queue (filled by the cutter), the live phase table (ints). Others read ``committed``
    (a frozen snapshot), ``taken`` and ``error``."""

    def __init__(self, job: Job, committed: Committed, signals: SizeSignals):
        self.job, self.signals = job, signals
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.committed = committed
        self.refused = 0
        self.last_checkpoint_row = committed.rows_read
        self.taken = 0                  # last batch the loader took
        self.error: BaseException | None = None
        self.abort = threading.Event()  # drop what is queued: none of it committed
        self._thread = threading.Thread(target=self._loop, name="loader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def _loop(self) -> None:
        store = self.job.store.clone()
        try:
            while not self.abort.is_set():
                try:
                    item = self.queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is DONE:
                    break
                self._commit(store, item)
        except BaseException as exc:   # handed to the main thread, which fails the job
            self.error = exc if isinstance(exc, JobFailed) else JobFailed(
                f"loader: {type(exc).__name__}: {exc}")
        finally:
            store.close()

    def _commit(self, store: StateStore, item: LoadItem) -> None:
        job = self.job
        t0 = time.perf_counter()
        self.taken = item.number
        refused, job_refused, attempts = 0, 0, 1
        # Writing is the load's work: its time (and the rows the destination refused)
        # belong on its line of the phase table (a branch's, on the branch's line).
        for t, clock, (batch, data, _) in zip(job.targets, job.write_clocks, item.outputs,
                                                    strict=True):
            if item.number in t.held:       # committed there before a kill
                continue
            with clock:
                n, tries = self._write(store, t, item, batch, data)
            refused += n
            if t.refusals_are_job_rejects:      # a branch's refusals are the branch's own
                job_refused += n
            attempts = max(attempts, tries)
        seconds = time.perf_counter() - t0
        # rows_loaded: rows written, or, in a branched job, rows that reached the branches
        self.refused += job_refused
        loaded, rejected = item.rows - job_refused, len(item.rejects) + job_refused
        c = self.committed = replace(
            self.committed, rows_loaded=self.committed.rows_loaded + loaded,
            rows_rejected=self.committed.rows_rejected + rejected, rows_read=item.row_end,
            batches=item.number)
        store.commit_batch(
            job.job_id, item.number, rows_loaded=loaded, attempts=attempts,
            duration_ms=seconds * 1000,
            counters={"rows_read": c.rows_read, "rows_loaded": c.rows_loaded,
                      "rows_rejected": c.rows_rejected, "bytes_read": item.bytes_read,
                      "retries": job.retries,
                      # per-phase counts so far, for the console's monitor
                      "phase_stats": phase_table(job.stats, self.refused)})
        self.signals.committed(seconds, retried=attempts > 1, refused_rows=refused)
        if c.rows_read - self.last_checkpoint_row >= job.settings.checkpoint_interval:
            self.checkpoint(store, item.bytes_read)
        self.check_reject_rate(final=False)

    def _write(self, store: StateStore, t: Target, item: LoadItem, batch: pa.RecordBatch,
               data: pa.RecordBatch) -> tuple[int, int]:
        """Write one batch to one destination; returns (rows refused, attempts). Rows the
        database refuses become rejects of the load, recorded in the store inside the
        destination's transaction (exact after a kill)."""
        rows = batch.column(ROW)
        job_id = self.job.job_id

        def record(refused: list[RefusedRow]) -> None:
            store.set_load_rejects(job_id, item.number, t.label,
                                   refused_records(t, batch, refused))

        try:
            result = t.destination.write(item.number, data, item.row_start, item.row_end,
                                         before_commit=record)
        except RowRefused as exc:
            raise JobFailed(f"{t.label}: record {rows[exc.row.index].as_py()} refused by "
                            f"the destination: {exc.row.message} (on_error = \"fail\"; the job "
                            "is resumable)") from None
        except JobFailed as exc:
            if isinstance(exc.__cause__, DiskFull):   # the store's, inside the destination's
                raise exc.__cause__ from None          # transaction: say what is full
            raise
        t.stats.refused += len(result.refused)
        t.stats.loaded += data.num_rows - len(result.refused)
        return len(result.refused), result.attempts

    def check_reject_rate(self, *, final: bool) -> None:
        """``max_reject_rate``: judged once a batch's worth of rows is read (so the first
        few rows cannot fail a job alone), and at the end."""
        limit, c = self.job.plan.spec.max_reject_rate, self.committed
        if limit is None or c.rows_read == 0:
            return
        if not final and c.rows_read < self.job.settings.batch_size_min:
            return
        rate = c.rows_rejected / c.rows_read
        if rate > limit:
            raise JobFailed(f"reject rate {rate:.1%} ({c.rows_rejected} of {c.rows_read} rows "
                            f"read) exceeds max_reject_rate {limit:.1%}; see `etlconsole rejects "
                            f"{self.job.job_id}`, then roll back or fix the data and resume")

    def checkpoint(self, store: StateStore, bytes_read: int) -> None:
        """A checkpoint at the last committed batch (the loader's thread, or the main
        thread's once the loader is joined: the job's last one). The source's fingerprint
        is the job record's, not a copy per checkpoint: a drop of 2,000 files has one of
        0.6 MB, and a checkpoint every 100,000 rows of a 1 TB drop would have copied it
        40,000 times (24 GB of state store)."""
        c = self.committed
        store.add_checkpoint(self.job.job_id, "load", {
            "batch": c.batches, "last_row": c.rows_read, "bytes_read": bytes_read,
            "rows_read": c.rows_read, "rows_loaded": c.rows_loaded,
            "rows_rejected": c.rows_rejected,
        }, row_count=c.rows_read)
        self.last_checkpoint_row = c.rows_read


def branch_of(t: Target, records: list[dict]) -> list[dict]:
    """``records`` as rejects of target ``t``'s branch (the store's ``branch`` column; the
    main line's stay without)."""
    if t.name:
        for r in records:
            r["branch"] = t.name
    return records


def refused_records(t: Target, batch: pa.RecordBatch, refused: list[RefusedRow]) -> list[dict]:
    if not refused:
        return []
    index = pa.array([r.index for r in refused], pa.int64())
    rejected = Rejects(batch.take(index), [r.rule for r in refused],
                       [r.column for r in refused], [r.message for r in refused])
    return branch_of(t, rejected.records("load", t.label))
