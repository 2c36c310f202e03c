"""One part of a distributed job, as a worker runs it: a file streamed through the SAME
phase chain as a local run (``line.PhaseLine``, ``batching.Pending``), cut into load
batches and committed to the destination, each batch one destination transaction with
its ledger entry (ADR 0002). Nothing here imports Dask: the functions are plain, so they
are tested without a cluster, and a task is just a call of one of them (ADR 0026).

Workers never write the state store: ``run_part`` returns what the driver records (the
part's batches, their rejects, its phase table). A part re-run after a worker died skips
the batches the destination's ledger holds (cutting them again at the records the ledger
says, so the numbers match) and recomputes every reject of the part deterministically.

Batch numbers: part ``p`` (0-based, in file order) numbers its batches ``p * PART_STRIDE
+ 1, + 2, …`` — disjoint ranges, so the ledger key (job, batch) is (job, part, batch)
without a new column in any destination or in the state store.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import pyarrow as pa

from ...config import Settings
from ...spec import PipelineSpec
from ...store.packed import RejectPack
from .. import extract
from ..batching import LoadItem, Pending
from ..destinations import RefusedRow
from ..figures import BusyClock, PhaseStats, timed
from ..governor import Governor, use_lean_allocator
from ..job import JobContext
from ..line import PhaseLine, Work
from ..loader import refused_records
from ..plan import Plan, PlannedPhase, make_plan
from ..sources import SourceFile
from ..targets import Target, targets_for
from . import ranges
from .ranges import PartStream
from .spill import Spill

PART_STRIDE = 1_000_000     # batch numbers per part: part p holds p*STRIDE+1 .. p*STRIDE+999,999


def part_of(batch_number: int) -> int:
    """The part (0-based) a batch number belongs to."""
    return (batch_number - 1) // PART_STRIDE


@dataclass
class PartTask:
    """What a worker needs to run one part: everything is picklable (the plan is not: it
    holds open handles, so each worker plans again from the spec, with the driver's dialect
    and `when` decisions, which makes the plan the same)."""

    job_id: str
    part: int                   # 0-based, in file order
    file: SourceFile            # the part's file (maybe compressed)
    spec: PipelineSpec
    dialect: extract.Dialect    # the file's own sniff (the same columns as the first's)
    dest: str | None            # the driver's --dest (or the resumed job's)
    decisions: dict
    settings: Settings
    workspace: str              # the job's workspace (shared with the driver's machine)
    batch_rows: int             # rows per load batch (fixed: a re-run cuts where the ledger says)
    topic: str | None = None    # where a task running on Dask reports its progress (Pub)


@dataclass
class BatchDone:
    number: int
    row_start: int
    row_end: int
    rows: int                   # rows the batch carried to the destination
    loaded: int                 # rows the destination kept (rows - refused)
    rejected: int               # its rejects (in the part's pack)
    attempts: int
    duration_ms: float
    written: bool               # False: the ledger held it already (a re-run)


@dataclass
class PartResult:
    part: int
    path: str
    batches: list[BatchDone]
    rejects: bytes | None       # every batch's rejects, packed (store.packed; None: none)
    stats: list[dict]           # the part's phase table (PhaseStats.to_json per line)
    records: int                # last record number of the file (records read)
    bytes_read: int
    warned: int
    worker: str                 # host:pid of the worker that ran it
    seconds: float
    peak_rss_mb: float = 0.0
    skipped: list[int] = field(default_factory=list)   # batches the ledger held
    rejects_by_label: dict[str, int] = field(default_factory=dict)   # RejectPack.by_label
    content: tuple[int, str] | None = None             # (bytes, hash) of the whole content


def plan_part(task: PartTask) -> Plan:
    return make_plan(task.spec, source=task.file.path, dest=task.dest, dialect=task.dialect,
                     decisions=task.decisions)


def part_workspace(task: PartTask) -> Path:
    return Path(task.workspace) / f"part-{task.part:05d}"


def stats_for(phases: list[PlannedPhase]) -> tuple[list[PhaseStats], list[BusyClock]]:
    stats = [PhaseStats("extract")] + [PhaseStats(p.label) for p in phases]
    return stats, [BusyClock(st) for st in stats]


def stream_of(task: PartTask, plan: Plan, points: dict[int, int] | None = None) -> PartStream:
    """The part's records, numbered within it (1, 2, …; the driver renumbers them after
    the parts before it): a whole file, or a byte range on proven record boundaries
    (``points``: its file's, from ``ranges.boundaries``; None: the part finds them)."""
    return ranges.stream(task.file, plan.dialect, task.settings, points)


# -- the load pass ------------------------------------------------------------------------
def run_part(task: PartTask, duplicates: pa.Table | None = None,
             spill: str | None = None, points: dict[int, int] | None = None) -> PartResult:
    """Stream the part through the whole chain and commit its batches; ``duplicates``
    (``cross_part``'s table, or its rows for this part: ``held_by``): the keys this part
    holds that an earlier part introduced, rejected here by the unique rule.
    ``spill``: where the part's pre-pass left its validate phase's output (ADR 0028); when
    it is there the load pass streams it and runs only the phases after, else the file."""
    with _PEAKS if task.topic else nullcontext():   # not on a worker (tests): the process's peak
        return _run_part(task, duplicates, spill, points)


class _PartsInFlight:
    """A worker's parts in flight — a part's tail overlaps the next part (``_leave_pool``).
    The one that starts with none in flight starts the process's peak RSS over
    (``Governor.reset_peak``), so a part's peak covers all of it (what the worker's RSS
    was while it ran, the parts overlapping it included), not what the worker reached
    for another job before: the highest of a job's parts is the highest RSS its workers
    had while they ran them."""

    def __init__(self) -> None:
        self.running = 0
        self.lock = threading.Lock()

    def __enter__(self) -> None:
        with self.lock:
            if self.running == 0:
                Governor.reset_peak()
            self.running += 1

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.running -= 1


_PEAKS = _PartsInFlight()


def _run_part(task: PartTask, duplicates: pa.Table | None, spill: str | None,
              points: dict[int, int] | None) -> PartResult:
    t0 = time.perf_counter()
    use_lean_allocator()        # as the local engine: ~80 MB less RSS per worker
    plan = plan_part(task)
    if plan.branches:
        raise ValueError("branched pipelines are not run by the Dask executor")
    ws = part_workspace(task)
    shutil.rmtree(ws, ignore_errors=True)      # a re-run starts from nothing: same rejects
    ws.mkdir(parents=True)
    spilled = Spill.open(Path(spill)) if spill else None
    phases, seeded = _load_phases(plan, ws, task, duplicates, spilled is not None)
    [target] = targets_for(plan, task.job_id, task.settings)
    stats, clocks = stats_for(phases)
    ctx = JobContext(task.job_id, ws, task.settings)
    for p in phases:
        p.phase.attach(ctx)
    target.destination.open(target.schema)
    lo, hi = task.part * PART_STRIDE, (task.part + 1) * PART_STRIDE
    held = {e.batch: e for e in target.destination.ledger_of(lo + 1, hi)}
    # the load's line of the phase table times writing the batches, as the local loader's
    load_clock = next((c for st, c in zip(stats, clocks, strict=True) if st.label == target.label), None)
    cutter = _PartCutter(task, target, held, _reporter(task), load_clock)
    pipe = PhaseLine(phases, stats, clocks, ws)
    stream = stream_of(task, plan, points) if spilled is None else None
    if spilled is not None:
        line = pipe.run_works(timed(spilled.works(), clocks[0]))
    else:
        assert stream is not None
        line = pipe.run(stream)
    works: Iterator[Work] = line
    if seeded:      # the seeded rule's rejects told with its validate phase's
        from .keys import merge_seeded
        works = (merge_seeded(w, phases[0].label) for w in line)
    try:
        for work in works:
            cutter.add(work, stats[0])
        if task.topic:
            _leave_pool()
        cutter.finish()
    finally:
        line.close()
        for p in phases:
            p.phase.teardown()
        target.destination.close()
    shutil.rmtree(ws, ignore_errors=True)
    figures: dict[str, Any]
    if stream is not None:
        figures = {"stats": [s.to_json() for s in stats], "records": stream.records_done(),
                   "bytes_read": stream.read_bytes(), "content": stream.content_proof()}
    else:
        assert spilled is not None and spilled.trailer is not None
        figures = spilled.trailer | {"stats": _joined(spilled.trailer["stats"], stats, seeded)}
        # Done with: a re-run of this task (its result lost with a worker) reads the file.
        spilled.remove()
    packed = cutter.rejects.pack()
    return PartResult(task.part, str(task.file.path), cutter.done, packed, figures["stats"],
                      records=figures["records"], bytes_read=figures["bytes_read"],
                      warned=cutter.warned, worker=f"{os.uname().nodename}:{os.getpid()}",
                      seconds=time.perf_counter() - t0, peak_rss_mb=round(Governor.peak_mb(), 1),
                      skipped=sorted(held), content=figures["content"],
                      rejects_by_label=cutter.rejects.by_label)


def _load_phases(plan: Plan, ws: Path, task: PartTask, duplicates: pa.Table | None,
                 spilled: bool) -> tuple[list[PlannedPhase], bool]:
    """The phases the load pass runs, and whether the first is the seeded unique rule.
    From the file: all of them, the unique index seeded on disk with the keys earlier
    parts own. From a spill (the phases up to the unique rule's validate ran in the
    pre-pass): that rule alone against those keys (none: skipped), then the rest."""
    if not spilled:
        if duplicates is not None:
            from .keys import seed_unique
            seed_unique(plan, ws, duplicates, task.part)
        return plan.phases, False
    from .keys import earlier, seeded_phase, unique_rule
    found = unique_rule(plan)
    assert found is not None
    rest = plan.phases[found[0] + 1:]
    seeds = earlier(duplicates, task.part)
    if not len(seeds):
        return rest, False
    return [seeded_phase(plan, seeds)] + rest, True


def _joined(pre: list[dict], post: list[PhaseStats], seeded: bool) -> list[dict]:
    """The part's phase table from its two passes: extract's rows as the load pass counted
    them (with both passes' time), the pre-pass's lines up to the unique rule's validate,
    that line less what the load pass's seeded rule rejected, then the load pass's lines."""
    table = [dict(line) for line in pre]
    extract = post[0].to_json()
    table[0] = extract | {"seconds": round(table[0]["seconds"] + extract["seconds"], 4)}
    later = [s.to_json() for s in post[1:]]
    if seeded:
        again, later = later[0], later[1:]
        v = table[-1]
        v |= {"rows_out": v["rows_out"] - again["rejected"], "rejected": v["rejected"] + again["rejected"],
              "warned": v["warned"] + again["warned"],
              "seconds": round(v["seconds"] + again["seconds"], 4)}
    return table + later


class _PartCutter:
    """The part's batches: fixed-size cuts (or where the ledger says, for the batches it
    holds), each written in one destination transaction unless held."""

    def __init__(self, task: PartTask, target: Target, held: dict,
                 report: Callable[..., None] | None = None, clock: BusyClock | None = None):
        self.task, self.target, self.held, self.report = task, target, held, report
        self.clock = clock
        self.base = task.part * PART_STRIDE
        self.forced = sorted((n, e.row_end) for n, e in held.items())
        self.number = self.base
        self.pending: Pending | None = None
        self.done: list[BatchDone] = []
        self.rejects = RejectPack()
        self.last_row = 0
        self.bytes_read = 0     # of the file, for the batches committed so far
        self.warned = 0

    def add(self, work: Work, extract_stats: PhaseStats) -> None:
        chunk = work.chunk
        rejected = len(chunk.carried) + sum(len(r) for r in chunk.rejects)
        extract_stats.rows_in += max(0, chunk.last_row - chunk.first_row + 1)
        extract_stats.rejected += rejected
        extract_stats.rows_out = extract_stats.rows_in - extract_stats.rejected
        self.warned += work.warnings
        self.last_row = chunk.last_row
        if self.pending is None:
            self.pending = Pending(chunk.first_row, work.batch.schema)
        pending = self.pending
        pending.add(work.batch, list(chunk.carried), {}, chunk.last_row, chunk.bytes_read,
                    blamed=work.rejects)
        while self.forced and pending.last_row >= self.forced[0][1]:
            self.number, upto = self.forced.pop(0)
            self._commit(pending.take_through(upto, self.number))
        while not self.forced:
            item = pending.take_next(self.task.batch_rows, self.number + 1)
            if item is None:
                break
            self.number += 1
            self._commit(item)

    def finish(self) -> None:
        pending = self.pending
        while pending is not None and self.forced:
            self.number, upto = self.forced.pop(0)
            self._commit(pending.take_through(upto, self.number))
        if pending is not None and not pending.empty:
            self.number += 1
            self._commit(pending.flush(self.number))
        if self.report is not None and self.done:
            # the part's last figures, whatever the reports' pace: what the workers table
            # shows of the part once the job ends
            self.report(self.done[-1].row_end, self.bytes_read, final=True)

    def _commit(self, item: LoadItem) -> None:
        with self.clock or nullcontext():
            self._write(item)

    def _write(self, item: LoadItem) -> None:
        if item.number - self.base >= PART_STRIDE:
            raise ValueError(f"{str(self.task.file.path)}: more than {PART_STRIDE - 1:,} batches in one part")
        t, batch = self.target, item.batch
        data = t.destination.prepare(batch.drop_columns(
            [c for c in batch.schema.names if c.startswith("_etl_")]))
        refused: list[dict] = []
        attempts, t0 = 1, time.perf_counter()
        loaded = item.rows
        held = self.held.get(item.number)
        if held is not None:
            # Rows the destination refused in a batch committed before the re-run cannot
            # be told again without writing it: the ledger's count keeps the totals right.
            loaded = held.rows
        else:
            def record(rows: list[RefusedRow]) -> None:
                refused[:] = refused_records(t, batch, rows)
            result = t.destination.write(item.number, data, item.row_start, item.row_end,
                                         before_commit=record)
            attempts = result.attempts
            loaded = item.rows - len(refused)
        rejects = item.rejects + refused
        self.rejects.add(item.number, rejects)
        self.bytes_read = item.bytes_read
        if self.report is not None:
            self.report(item.row_end, item.bytes_read)
        self.done.append(BatchDone(item.number, item.row_start, item.row_end, item.rows,
                                   loaded, len(rejects), attempts,
                                   (time.perf_counter() - t0) * 1000, item.number not in self.held))


def _leave_pool() -> None:
    """On a Dask worker, the part's task leaves the worker's thread pool once its file is
    read (``distributed.secede``): what is left is the tail — its last batch committed,
    mostly waiting for the disk (fsyncs of the batch's file, its ledger entry and their
    folders, ~25 ms of a 0.5 s part), and its result packed — and the worker starts its
    next part meanwhile instead of idling. Measured (8 parts on 2 pinned workers, medians
    of 12 jobs): first part's start to last part's end 2.16 -> 2.08 s, the two workers'
    ends 97 -> 18 ms apart. Elsewhere (no worker) it does nothing."""
    try:
        from distributed import secede
        secede()
    except (ImportError, ValueError):
        pass


def _reporter(task: PartTask) -> Callable[..., None] | None:
    """On a Dask worker, a function logging the part's progress as a Dask event of topic
    ``task.topic`` (at most twice a second, and its ``final`` figures): records done, bytes
    of the file read for them (compressed bytes for a compressed file, as the job's progress
    counts), the worker's RSS. The driver turns it into the job's metrics; elsewhere
    (tests, no topic) None. The event reaches the driver before the part's result does
    (the worker sends both to the scheduler in order, and the scheduler to the client)."""
    if not task.topic:
        return None
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return None
    import psutil
    topic, proc, last, began = task.topic, psutil.Process(), [0.0], time.monotonic()

    def report(records: int, bytes_read: int, final: bool = False) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and last[0] and not final:
            return
        last[0] = now
        worker.log_event(topic, {"worker": worker.address, "pid": os.getpid(), "part": task.part,
                 "records": records, "bytes": bytes_read,
                 "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                 "rows_per_s": round(records / max(now - began, 1e-3), 1),
                 "at": time.time()})
    return report
