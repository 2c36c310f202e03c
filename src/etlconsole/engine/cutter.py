"""The main thread's share of a job's line: cutting load batches from the phases' output
(``batching.Pending``, at the sizes the ``BatchSizer`` chooses), preparing what each target
receives, writing the batch's PENDING record with its rejects (ADR 0012), and handing it
to the loader.

Who writes what (ADR 0020): the cutter (main thread) is the only writer of the sizer, of
the reading counters (``Progress``) and of the targets' ``rows_in``/``filtered``/``rejected``
stats (the extract's line of the phase table is the reader's: ``figures.counted_extract``).
The loader (a commit's outcome) and the sampler (memory pressure) send the sizer
``SizeSignals``, applied here before each cut.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.ipc  # noqa: F401 - pa.ipc

from ..errors import DiskFull, is_disk_full
from .batching import BatchSizer, LoadItem, Pending
from .figures import BusyClock
from .line import Work, process, records_of
from . import manyfiles
from .loader import DONE, branch_of
from .targets import Target

if TYPE_CHECKING:
    from .job import Job


def snapshot_dir(workspace: Path, phase_index: int) -> Path:
    return workspace / f"phase-{phase_index}"


def write_snapshots(workspace: Path, item: LoadItem) -> None:
    """A checkpointed phase's output for one load batch, as an Arrow IPC stream file.

    Written before the batch commits; a file whose batch never committed is simply
    overwritten when the batch is produced again (resume reuses the number)."""
    for index, parts in item.snapshots.items():
        folder = snapshot_dir(workspace, index)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{item.number:08d}.arrows.tmp"
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, parts[0][0].schema) as w:
            for batch, first, last in parts:
                w.write_batch(batch, custom_metadata={"first_row": str(first), "last_row": str(last)})
        tmp.replace(folder / f"{item.number:08d}.arrows")


class SizeSignals:
    """What other threads tell the batch sizer: the loader a commit's outcome, the sampler
    memory pressure. Queued (a deque: appends and pops are atomic) in the order they came,
    and applied by the cutter, the sizer's only writer, before it reads the size."""

    def __init__(self) -> None:
        self._signals: deque[tuple[float, bool, int] | None] = deque()

    def committed(self, seconds: float, *, retried: bool, refused_rows: int) -> None:
        self._signals.append((seconds, retried, refused_rows))

    def shrink(self) -> None:
        self._signals.append(None)

    def apply(self, sizer: BatchSizer) -> None:
        signals = self._signals
        while signals:
            signal = signals.popleft()
            if signal is None:
                sizer.shrink()
            else:
                sizer.committed(signal[0], retried=signal[1], refused_rows=signal[2])


@dataclass
class Progress:
    """How far reading went (the cutter writes; the sampler reads the ints as they are)."""

    records_seen: int = 0       # records parsed so far (ahead of commits)
    bytes_read: int = 0
    rows_warned: int = 0
    batch_size: int = 0         # rows in the batch last handed to the loader


class Cutter:
    """Cuts the line's output into load batches and hands them to the loader's queue.

    Writes (main thread): ``sizer``, ``progress``, the pending rows, the extract's phase
    stats, the targets' filter and branch-phase stats, PENDING records and snapshot files.
    Reads: ``signals`` (from the loader and the sampler), the loader's queue and error."""

    def __init__(self, job: Job, sizer: BatchSizer, signals: SizeSignals, *, next_batch: int,
                 forced: list[tuple[int, int]], progress: Progress, loader_queue: queue.Queue,
                 check: Callable[[], None]):
        self.job, self.sizer, self.signals, self.progress = job, sizer, signals, progress
        self.forced = forced          # (batch, last record) to cut again on resume
        self.number = next_batch - 1  # the last batch cut
        self.pending: Pending | None = None
        self.file = -1                # the source file the pending rows come from
        self._queue, self._check = loader_queue, check   # check: a helper's failure raises

    def size(self) -> int:
        self.signals.apply(self.sizer)
        return self.sizer.size

    def add(self, work: Work) -> None:
        """One chunk out of the line: counted, kept pending, cut into every batch it fills."""
        chunk = work.chunk
        if chunk.file != self.file:   # batches never span files (ADR 0025)
            self._end_file()
            self.file = chunk.file
        if chunk.files:               # where files start and end, before their batches
            manyfiles.note(self.job, chunk.files)
        p = self.progress
        p.rows_warned += work.warnings
        if self.pending is None:
            self.pending = Pending(chunk.first_row, work.batch.schema)
        pending = self.pending
        p.records_seen = chunk.last_row
        p.bytes_read = chunk.bytes_read
        pending.add(work.batch, list(chunk.carried), work.snapshots, chunk.last_row,
                    chunk.bytes_read, blamed=work.rejects, proof=chunk.proof)
        while self.forced and pending.last_row >= self.forced[0][1]:
            self.number, upto = self.forced.pop(0)      # cut where a destination did
            self._put(pending.take_through(upto, self.number))
        while not self.forced:
            item = pending.take_next(self.size(), self.number + 1)
            if item is None:
                break
            self.number += 1
            self._put(item)

    def finish(self) -> None:
        """The stream ended: the batches left (forced cuts, then the remainder), then DONE."""
        pending = self.pending
        while pending is not None and self.forced:
            self.number, upto = self.forced.pop(0)
            self._put(pending.take_through(upto, self.number))
        if pending is not None and not pending.empty:
            self.number += 1
            self._put(pending.flush(self.number))
        self._hand_over(DONE)

    def _end_file(self) -> None:
        """A source file ended: its pending rows are a batch of their own, so each batch,
        ledger entry and checkpoint belongs to one file. (A resume's forced cuts were
        made so too, and are taken before this, as the rows arrive.)"""
        pending, self.pending = self.pending, None
        if pending is not None and not pending.empty:
            self.number += 1
            self._put(pending.flush(self.number))

    def _put(self, item: LoadItem) -> None:
        self._hand_over(self._prepare(item))

    def _prepare(self, item: LoadItem) -> LoadItem:
        """Snapshots written, each target's output made, the PENDING record with its
        rejects stored: the loader, the slowest part of a job, is left with writing.
        (A thousand rejects inserted one by one hand the GIL back and forth a thousand
        times; in the loader that cost a third of a second per 1M rows.)"""
        job = self.job
        if item.snapshots:
            try:
                write_snapshots(job.workspace, item)
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                raise DiskFull(f"{job.workspace}: the disk of the job's workspace is full "
                               f"({exc}); the job stopped and is resumable: free space there, "
                               "then resume it") from None
        item.outputs = [self._timed_output(t, clock, item)
                        for t, clock in zip(job.targets, job.write_clocks, strict=True)]
        branch_rejects = [r for *_, rejects in item.outputs for r in rejects]
        job.store.begin_batch(job.job_id, item.number, row_start=item.row_start,
                              row_end=item.row_end, rejects=item.rejects + branch_rejects,
                              rows=item.rows, proof=item.proof,
                              keep_labels={t.label for t in job.targets if item.number in t.held})
        return item

    def _hand_over(self, item: object) -> None:
        """Put ``item`` on the loader's queue, raising a helper's failure while it waits."""
        while True:
            self._check()
            try:
                self._queue.put(item, timeout=0.2)
                if item is not DONE:
                    assert isinstance(item, LoadItem)
                    self.progress.batch_size = item.rows
                return
            except queue.Full:
                continue

    def _timed_output(self, t: Target, clock: BusyClock, item: LoadItem):
        with clock:         # the target's line: its filter, phases, preparing and writing
            return self._output(t, item)

    def _output(self, t: Target, item: LoadItem) -> tuple[pa.RecordBatch, pa.RecordBatch, list[dict]]:
        """(rows for ``t`` with their record numbers, the data to write, rejects on the way)."""
        batch, rejects = self._branch(t, item)
        data = batch.drop_columns([c for c in batch.schema.names if c.startswith("_etl_")])
        return batch, t.destination.prepare(data), rejects   # e.g. SQLite's ISO text

    def _branch(self, t: Target, item: LoadItem) -> tuple[pa.RecordBatch, list[dict]]:
        """The batch as target ``t`` receives it: its filter, then its own phases."""
        batch = t.keep(item.batch)
        t.stats.rows_in += item.rows
        t.stats.filtered += item.rows - batch.num_rows
        rejects: list[dict] = []
        for planned in t.phases:
            batch, phase_rejects, _ = process(planned, batch, self.job.workspace)
            rejects += branch_of(t, records_of(phase_rejects))
        t.stats.rejected += len(rejects)
        return batch, rejects
