"""The phase line: each phase in a thread of its own (``stages.staged``, ADR 0012), and the
bisection that isolates the rows a phase raises on (ADR 0010).

Who writes what (ADR 0020): a ``Work`` item belongs to the one thread holding it (the
reader's, then each step's in turn, then the main thread's); each step thread is the only
writer of its phase (its ``process`` calls, in stream order) and of its ``PhaseStats`` line.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import DiskFull, JobFailed, UserError, is_disk_full
from . import extract
from .figures import BusyClock, PhaseStats, timed
from .phases.base import ROW, PhaseResult, Rejects
from .plan import PlannedPhase
from .stages import staged

# The phase threads run at this nice value, so the loader (a single thread, the pace of
# the whole job once batches are full) gets a core whenever it has work: measured on
# 1M rows, 2 cores, 8 interleaved rounds each, the job took 7-10% less wall time at nice
# 5-19 than at 0. The phases only wait when the loader's queue is full anyway.
PHASE_NICE = 10
# Chunks between the reader and the main thread (ADR 0012: 4 was no faster, ~15 MB more).
IN_FLIGHT = 3

# Rejected rows with the phase (type, label) that rejected them.
Blamed = tuple[Rejects, str, "str | None"]
# Errors a phase does not get to isolate rows for: they stop the job (or the process).
FATAL = (JobFailed, UserError, KeyboardInterrupt, MemoryError)


def records_of(blamed: list[Blamed]) -> list[dict]:
    """Rejected rows as the state store's records (only here do they become Python objects)."""
    return [r for rejects, phase, label in blamed for r in rejects.records(phase, label)]


@dataclass
class Work:
    """A chunk on its way through the phases: the rows still going, and what was rejected
    (records for the store) or snapshotted (checkpointed phases) on the way."""

    chunk: extract.Chunk
    batch: pa.RecordBatch
    rejects: list[Blamed]
    snapshots: dict = field(default_factory=dict)
    warnings: int = 0
    checked: object = None          # a two-part phase's first half's result, for its second

    @classmethod
    def of(cls, chunk: extract.Chunk) -> Work:
        return cls(chunk, chunk.batch, [(r, "extract", None) for r in chunk.rejects])


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


def _concat(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    batches = [b for b in batches if b.num_rows]
    if not batches:
        return _empty(schema)
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def process(planned: PlannedPhase, batch: pa.RecordBatch, workspace: Path,
            attempt: Callable[[], Any] | None = None) -> tuple[pa.RecordBatch, list[Blamed], int]:
    """One phase over one batch. A phase that raises is given halves of the batch until
    the rows it raises on are found; those are rejected with the exception's message
    and the rest goes on (``on_error = "fail"`` on the phase stops the job instead)."""
    try:
        out = attempt() if attempt else planned.phase.process(batch)
    except FATAL:
        raise
    except Exception as exc:
        if is_disk_full(exc):     # no row's fault: the job stops, resumably
            raise DiskFull(f"{workspace}: the disk of the job's workspace is full "
                           f"({planned.label}: {exc}); the job stopped and is resumable: free "
                           "space there, then resume it") from None
        if planned.phase.on_error == "fail" or batch.num_rows == 0:
            raise JobFailed(f"{planned.label}: {type(exc).__name__}: {exc}") from exc
        if batch.num_rows == 1:
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            rejected = Rejects(batch, ["exception"], [None], [message])
            return _empty(planned.output), [(rejected, planned.type, planned.label)], 0
        mid = batch.num_rows // 2
        left = process(planned, batch.slice(0, mid), workspace)
        right = process(planned, batch.slice(mid), workspace)
        return _concat([left[0], right[0]], planned.output), left[1] + right[1], left[2] + right[2]
    rejects: list[Blamed] = []
    warnings = 0
    if isinstance(out, PhaseResult):
        if out.rejects is not None and len(out.rejects):
            rejects = [(out.rejects, planned.type, planned.label)]
        warnings = out.warnings
        out = out.batch
    if not isinstance(out, pa.RecordBatch):
        raise JobFailed(f"{planned.label} returned {type(out).__name__}, expected a "
                        "pyarrow.RecordBatch or a PhaseResult")
    if ROW not in out.schema.names:
        raise JobFailed(f"{planned.label} dropped the {ROW} column")
    return out, rejects, warnings


class PhaseLine:
    """The main line's phases as steps of a line of threads.

    Writes: each step thread its phase and its ``stats`` line (``clocks[i]`` under the
    clock's lock); the reader thread the extract's busy time (``clocks[0]``). Reads: the
    main thread consumes the ``Work`` items in stream order; the live phase table is read
    by the loader as ints (it may lag a chunk)."""

    def __init__(self, phases: list[PlannedPhase], stats: list[PhaseStats],
                 clocks: list[BusyClock], workspace: Path):
        self.phases, self.stats, self.clocks = phases, stats, clocks
        self.workspace = workspace

    def run(self, stream: Iterable[extract.Chunk]) -> Generator[Work, None, None]:
        """The line over ``stream``: a generator; closing it stops and joins its threads."""
        return self.run_works(map(Work.of, timed(stream, self.clocks[0])))

    def run_works(self, works: Iterable[Work]) -> Generator[Work, None, None]:
        """The line over work already under way: chunks an earlier line took part of the way
        and spilled (a Dask part's pre-pass, executors.spill)."""
        steps = [s for p, st, clock in zip(self.phases, self.stats[1:], self.clocks[1:], strict=True)
                 for s in self._phase_steps(p, st, clock)]
        return staged(works, steps, in_flight=IN_FLIGHT, name="phase", nice=PHASE_NICE)

    def _phase_steps(self, planned: PlannedPhase, stats: PhaseStats, clock: BusyClock
                     ) -> list[Callable[[Work], Work]]:
        """One phase as steps of the line, each in a thread of its own; only they touch the
        phase and its stats. A phase whose work comes in two halves (``parts()``:
        validate's rule masks, then its unique check and split) gets a step for each, so
        the two halves of consecutive chunks overlap."""
        parts = planned.phase.parts()
        if parts is None:
            return [self._phase_step(planned, stats, clock)]
        check, finish = parts

        def first(work: Work) -> Work:
            with clock:
                try:
                    work.checked = check(work.batch)
                except FATAL:
                    raise
                except Exception:
                    work.checked = None      # the second step runs the whole phase, which copes
            return work

        def attempt(work: Work) -> Callable[[], Any] | None:
            checked, work.checked = work.checked, None
            return None if checked is None else lambda: finish(checked)

        return [first, self._phase_step(planned, stats, clock, attempt)]

    def _phase_step(self, planned: PlannedPhase, stats: PhaseStats, clock: BusyClock,
                    attempt: Callable[[Work], Callable[[], Any] | None] | None = None
                    ) -> Callable[[Work], Work]:
        workspace = self.workspace

        def step(work: Work) -> Work:
            rows_in = work.batch.num_rows
            with clock:
                out, phase_rejects, warnings = process(planned, work.batch, workspace,
                                                       attempt(work) if attempt else None)
            stats.rows_in += rows_in        # counted with rows_out, so a reader sees them agree
            if phase_rejects:
                stats.rejected += sum(len(r) for r, _, _ in phase_rejects)
                work.rejects += phase_rejects
            stats.warned += warnings
            work.warnings += warnings
            stats.rows_out += out.num_rows
            work.batch = out
            if planned.checkpoint:
                work.snapshots[planned.index] = out
            return work
        return step
