"""Run a planned job: stream -> phases -> bounded queue -> loader thread -> destination.

The work is spread over threads, so two cores share it: a reader parses the CSV, each
phase runs in a thread of its own (``stages.staged``: chunk i is validated while chunk
i+1 is cleaned), the main thread cuts load batches, and the loader thread commits them
(Arrow, ADBC and SQLite release the GIL while they work). A sampler thread writes
metrics to the state store about every half second and watches memory.
Load batches are whole chunks, so a committed batch covers a contiguous range of source
records with its rejects: the resume position is simply the last committed record.
"""

from __future__ import annotations

import gc
import os
import queue
import threading
import time
import traceback
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil
import pyarrow as pa
import pyarrow.ipc  # noqa: F401 - pa.ipc

from ..config import Settings
from ..errors import DiskFull, JobFailed, UserError, is_disk_full
from ..interrupts import shielded
from ..store import StateStore, new_job_id
from ..store.store import now
from . import extract
from .batching import BatchSizer, LoadItem, Pending
from .destinations import RefusedRow, RowRefused
from .governor import Governor, use_lean_allocator
from .phases.base import ROW, PhaseResult, Rejects
from .plan import Plan
from .stages import staged
from .targets import Target, targets_for

_DONE = object()
# The least room above the RSS at start the governor can work in (chunks and batches
# shrunk to their minimum). Measured: 2M rows under a 200 MB budget from a 122 MB start
# (shared libraries fully resident) peak at 189 MB. The RSS at start varies by 20-30 MB
# with how much of pyarrow's libraries the kernel maps (page cache), so it is measured.
STARTUP_HEADROOM_MB = 64
# Room above the start RSS the default chunk and batch sizes are fitted to: with less room,
# the job starts with proportionally smaller pieces. They use ~130 MB (bench/, chunks of a
# full 32K rows), but thread caches and Arrow's pool do not shrink with the pieces, so
# the room is set above that: measured, 2M rows under a 200 MB budget peak at 176-181 MB
# without the governor ever halving (at 160: 197-202 MB, halving all the way, twice as slow).
DEFAULT_ROOM_MB = 200
# The phase threads run at this nice value, so the loader (a single thread, the pace of
# the whole job once batches are full) gets a core whenever it has work: measured on
# 1M rows, 2 cores, 8 interleaved rounds each, the job took 7-10% less wall time at nice
# 5-19 than at 0. The phases only wait when the loader's queue is full anyway.
PHASE_NICE = 10
# Room kept free on the state store's disk for the end of a job (its status, counters and
# last event): a file of this size in the job's workspace, deleted before those writes.
# When that disk fills up mid-job, they still find room (a few dozen 4 KB WAL frames).
RESERVE_BYTES = 256 * 1024


@dataclass
class JobContext:
    job_id: str
    workspace: Path
    settings: Settings
    resume_after: int = 0       # source records already done when the job resumed


@dataclass
class PhaseStats:
    label: str
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    warned: int = 0
    seconds: float = 0.0        # busy time: wall time while the phase was at work (BusyClock)

    def to_json(self) -> dict:
        return {"label": self.label, "rows_in": self.rows_in, "rows_out": self.rows_out,
                "rejected": self.rejected, "warned": self.warned,
                "seconds": round(self.seconds, 4)}


class BusyClock:
    """Adds to ``stats.seconds`` the wall time during which at least one thread works for
    the phase. A phase may run in two threads at once (validate's two halves overlap on
    consecutive chunks), so summing each thread's time could exceed the job's wall time;
    this never does. (Different phases do overlap each other: their times are not meant
    to add up to the job's.)"""

    def __init__(self, stats: PhaseStats):
        self.stats = stats
        self._lock = threading.Lock()
        self._active = 0
        self._since = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                self._since = time.perf_counter()
            self._active += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self.stats.seconds += time.perf_counter() - self._since


def committed_phase_stats(stats: list[PhaseStats], rows_read: int,
                          rejects: dict[str, int]) -> None:
    """Set rows in/out/rejected of the main line's phases (``stats[0]`` the extract) from
    what the store holds for the committed batches: ``rows_read`` records, and the rejects
    of each phase by label. Exact after a stop (rows still in the line are not counted)
    and after a resume (rows the stopped run had begun are not counted twice). Rejects of
    labels the line does not have (a rerun's rejects carried from the first job's earlier
    phases) count at the start, with the extract's; branch phases count in their branch."""
    known = {st.label for st in stats}
    carried = sum(n for label, n in rejects.items() if label not in known and " > " not in label)
    n = rows_read
    for i, st in enumerate(stats):
        st.rows_in = n
        st.rejected = rejects.get(st.label, 0) + (carried if i == 0 else 0)
        st.rows_out = n = max(0, n - st.rejected)


def _timed(items, clock: BusyClock):
    """``items`` with the time spent producing each one (parsing, for the extract) on
    ``clock``."""
    it = iter(items)
    try:
        while True:
            with clock:
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item
    finally:
        close = getattr(it, "close", None)
        if close:
            close()


@dataclass
class Counters:
    rows_read: int = 0          # records fully processed (committed or rejected)
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_warned: int = 0
    records_seen: int = 0       # records parsed so far (ahead of commits)
    bytes_read: int = 0
    batch_size: int = 0         # rows in the batch last handed to the loader
    batches: int = 0
    last_checkpoint_row: int = 0


# Rejected rows with the phase (type, label) that rejected them.
Blamed = tuple[Rejects, str, "str | None"]
# Errors a phase does not get to isolate rows for: they stop the job (or the process).
_FATAL = (JobFailed, UserError, KeyboardInterrupt, MemoryError)


def records_of(blamed: list[Blamed]) -> list[dict]:
    """Rejected rows as the state store's records (only here do they become Python objects)."""
    return [r for rejects, phase, label in blamed for r in rejects.records(phase, label)]


@dataclass
class _Work:
    """A chunk on its way through the phases: the rows still going, and what was rejected
    (records for the store) or snapshotted (checkpointed phases) on the way."""

    chunk: extract.Chunk
    batch: pa.RecordBatch
    rejects: list[Blamed]
    snapshots: dict = field(default_factory=dict)
    warnings: int = 0
    checked: object = None          # a two-part phase's first half's result, for its second

    @classmethod
    def of(cls, chunk: extract.Chunk) -> _Work:
        return cls(chunk, chunk.batch, [(r, "extract", None) for r in chunk.rejects])


@contextmanager
def _collector_for_a_job():
    """Python's cyclic garbage collector, tuned for the length of a job: the objects alive
    when it starts (modules, the plan) are frozen out of its scans, and young objects are
    looked at every 20,000 allocations instead of 700. A job makes many short-lived objects
    (reject records, JSON) in several threads, and every full collection walked all of
    pyarrow's, structlog's and click's objects: measured on 1M rows, 10 interleaved rounds,
    6% of the job's wall time."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


def _concat(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    batches = [b for b in batches if b.num_rows]
    if not batches:
        return _empty(schema)
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


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


class Runner:
    """One job. ``resume`` (a job record) continues that job after its last committed batch."""

    def __init__(self, plan: Plan, store: StateStore, settings: Settings, *,
                 progress: Callable[[dict], None] | None = None, log=None,
                 resume: dict | None = None, stream=None, fingerprint: dict | None = None,
                 parent: str | None = None):
        self.plan, self.store, self.settings = plan, store, settings
        self.progress, self.log = progress, log
        self.resume = resume
        self.job_id = resume["id"] if resume else new_job_id()
        self.workspace = store.path.parent / "jobs" / self.job_id
        self.counters = Counters()
        use_lean_allocator()
        self.governor = Governor(settings.max_memory_mb)
        # The phase table: the extract (rows parsed, rows rejected on read) and each phase.
        first = f"replay of job {parent}" if stream is not None and parent else "extract"
        self.stats = [PhaseStats(first)] + [PhaseStats(p.label) for p in plan.phases]
        self.clocks = [BusyClock(st) for st in self.stats]
        self.segment = 0              # this run segment's number in the job (store)
        self.elapsed_before = 0.0     # seconds the job ran in earlier segments
        self.bytes_before = 0         # bytes done when this segment started
        self._last_rows, self._last_t = 0, 0.0     # the previous sample (rates)
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.targets: list[Target] = targets_for(plan, self.job_id, settings)
        # what each target's writes are timed on: the load's line, or each branch's own
        self.write_clocks = ([self.clocks[-1]] if not plan.branches else
                             [BusyClock(PhaseStats(t.label)) for t in self.targets])
        self.forced: list[tuple[int, int]] = []   # (batch, last record) to cut again on resume
        self.sizer = BatchSizer(settings.batch_size_min, settings.batch_size_max,
                                slow_s=settings.transaction_timeout_ms / 10_000)
        self._loader_error: BaseException | None = None
        self._helper_error: BaseException | None = None     # the sampler's (e.g. a full disk)
        self._stop = threading.Event()
        self._abort = threading.Event()
        self.chunk_rows = self.chunk_cap = settings.chunk_size
        self._shrunk_at = 0.0
        self.stream, self.parent = stream, parent    # a rerun reads a phase checkpoint
        self.fingerprint = fingerprint or extract.fingerprint(plan.source)
        self.start_after = 0          # last source record already done (resume)
        self.next_batch = 1
        self._taken = 0               # last batch the loader took

    # -- public ---------------------------------------------------------------
    def run(self) -> dict:
        with _collector_for_a_job():
            return self._run()

    def _run(self) -> dict:
        plan = self.plan
        need = self.governor.rss_mb + STARTUP_HEADROOM_MB
        if self.settings.max_memory_mb < need:
            raise UserError(f"PIPELINE_MAX_MEMORY_MB={self.settings.max_memory_mb} is below what the "
                            f"engine needs: it uses {self.governor.rss_mb:.0f} MB before reading a "
                            f"row; give it at least {need:.0f}")
        self._fit_to_budget()
        for t in self.targets:
            t.destination.check(t.schema)
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._reserve_space()
        try:
            if self.resume:
                self._prepare_resume()
            else:
                self._create_job()
        except DiskFull as exc:      # each write one transaction, rolled back: nothing begun
            self._release_reserve()
            raise UserError(str(exc).replace("the job stopped and is resumable: ", "")) from None
        except UserError:
            self._release_reserve()
            raise
        # From the job's record on, a Ctrl-C ends it as 'interrupted' (a kill before the
        # try is seen by mark_dead_jobs: its process is gone).
        self.started = time.monotonic()
        self._last_rows, self._last_t = self.counters.records_seen, self.started
        status, error = "failed", "the engine stopped unexpectedly"
        helpers = [threading.Thread(target=self._sample_loop, name="sampler", daemon=True)]
        if not self.resume and self.stream is None:
            helpers.append(threading.Thread(target=self._digest_source, name="digest", daemon=True))
        try:
            self._begin_segment()
            if self.log:
                self.log.info("job.resumed" if self.resume else "job.started", job=self.job_id,
                              source=str(plan.source), after_record=self.start_after,
                              dialect="; ".join(plan.dialect.notes))
            for t in helpers:
                t.start()
            self._run_phases()
            self._check_reject_rate(final=True)    # before an atomic job publishes anything
            for t in self.targets:
                t.destination.publish(t.schema)
            status, error = "succeeded", None
        except JobFailed as exc:
            status, error = "failed", str(exc)
        except KeyboardInterrupt:
            status, error = "interrupted", "interrupted by the operator (Ctrl-C or SIGTERM)"
        except Exception as exc:   # a bug or a plugin crash: keep the job resumable
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            with suppress(DiskFull):
                self.store.add_event(self.job_id, "job.crashed", level="error",
                                     traceback=traceback.format_exc())
        finally:
            # The job ends either way: a Ctrl-C now has nothing left to stop, and must not
            # leave it half closed or its end unrecorded (interrupts.py).
            with shielded(drop=True):
                self._stop.set()
                for t in helpers:     # both look at _stop; the digest stops within a block
                    if t.ident is not None:
                        t.join()
                for p in plan.phases + [p for t in self.targets for p in t.phases]:
                    p.phase.teardown()      # plugins without the hook are wrapped (PluginPhase)
                for t in self.targets:
                    t.destination.close()
                self._release_reserve()
                try:
                    self._sample(self.store)   # the last figures of the segment, always
                except Exception:              # the store refused: _finish says what it can
                    pass
                summary = self._finish(status, error)
        return summary

    def _begin_segment(self) -> None:
        """The job is running; a segment of it begins. ``started_at`` stays the job's
        first start (set once); the segment is recorded so the job's duration and rates
        can be told per segment."""
        kind = "resume" if self.resume else ("rerun" if self.stream is not None else "run")
        self.segment = self.store.begin_segment(self.job_id, kind, self.start_after)
        self.elapsed_before = self.store.duration(self.job_id)
        job = self.resume or {}
        self.store.update_job(self.job_id, status="running",
                              started_at=job.get("started_at") or now())

    def _fit_to_budget(self) -> None:
        """A tight budget starts with smaller chunks and batches instead of waiting for the
        governor to see the pressure (by then a burst may already be over the budget)."""
        room = self.settings.max_memory_mb - self.governor.rss_mb
        share = min(1.0, room / DEFAULT_ROOM_MB)
        if share < 1.0:
            self.chunk_cap = max(1_000, int(self.settings.chunk_size * share))
            self.chunk_rows = self.chunk_cap
            self.sizer.high = max(self.sizer.low, int(self.sizer.high * share))

    def _digest_source(self) -> None:
        """Hash the whole source in the background, for resume's changed-file check (an
        extra: a job whose digest is not recorded is checked without it)."""
        try:
            store = self.store.clone()
        except UserError:
            return
        try:
            value = extract.digest(self.plan.source, stop=self._stop)
            if value:
                store.update_job(self.job_id, source_digest=value)
        except (OSError, JobFailed):
            pass
        finally:
            store.close()

    def _reserve_space(self) -> None:
        """Set RESERVE_BYTES aside on the state store's disk (see there); a disk already too
        full for it is refused before the job is written."""
        path = self.workspace / "reserve"
        try:
            with path.open("wb") as f:
                f.write(bytes(RESERVE_BYTES))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            path.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise UserError(f"{self.workspace}: the state store's disk is full ({exc}); free "
                                "space there, or use another --state") from None
            raise

    def _release_reserve(self) -> None:
        with suppress(OSError):
            (self.workspace / "reserve").unlink(missing_ok=True)

    def _check_helpers(self) -> None:
        """A helper thread's failure (the loader's, the sampler's) stops the job here."""
        for error in (self._loader_error, self._helper_error):
            if error is not None:
                raise error

    def _create_job(self) -> None:
        plan = self.plan
        self.store.create_job(
            self.job_id, pipeline_name=plan.spec.name,
            pipeline_file=str(plan.spec.base_dir / Path(plan.spec.file).name),
            pipeline_toml=plan.spec.to_toml(), source_path=str(plan.source),
            source_fingerprint=self.fingerprint, dialect=plan.dialect.to_json(),
            destinations=[t.describe() for t in self.targets],
            bytes_total=self.fingerprint["size"], settings=self.settings.__dict__)
        for note in plan.dialect.notes:
            self.store.add_event(self.job_id, "sniff", note=note)
        for why in plan.skipped:
            self.store.add_event(self.job_id, "phase.skipped", reason=why)
        if plan.conditions:     # resume and rerun reuse these decisions (engine.plan)
            self.store.add_event(self.job_id, "plan.conditions", decisions=plan.conditions)
        if self.parent:
            self.store.add_event(self.job_id, "job.rerun", parent=self.parent,
                                 from_phase=self.plan.phases[0].index - 1)

    def _prepare_resume(self) -> None:
        """The destinations' ledgers say what is done; the store is made to agree.

        Every destination holds batches 1..k of its own. The job continues after the last
        record all of them hold; a batch some already hold is cut again at the same record
        (their ledger says where) and written only where it is missing."""
        ledgers = {t.label: t.read_ledger() for t in self.targets}
        self._prove_source()
        done = min(len(t.held) for t in self.targets)
        everywhere = [e for e in ledgers[self.targets[0].label] if e["batch"] <= done]
        partial = {}
        for t in self.targets:
            for number in t.held:
                if number > done:
                    partial.setdefault(number, set()).add(t.label)
        ahead = max(self.targets, key=lambda t: len(t.held))
        self.forced = [(n, ahead.held[n]["row_end"]) for n in sorted(partial)]
        truth = self.store.reconcile(self.job_id, everywhere, partial=partial,
                                     branched=bool(self.plan.branches))
        c = self.counters
        c.rows_read, c.rows_loaded, c.rows_rejected = (truth["rows_read"], truth["rows_loaded"],
                                                       truth["rows_rejected"])
        c.records_seen = c.last_checkpoint_row = c.rows_read
        self.start_after = c.rows_read
        self.bytes_before = (self.resume.get("bytes_read") or 0) if c.rows_read else 0
        self._seed_phase_stats()
        self.next_batch = done + 1
        c.batches = done
        self.store.update_job(self.job_id, pid=os.getpid(), pid_started=psutil.Process().create_time(),
                              error=None, finished_at=None, resumes=(self.resume.get("resumes") or 0) + 1)
        self.store.add_event(self.job_id, "job.resumed", after_record=self.start_after,
                             batches_committed=done, rows_loaded=c.rows_loaded,
                             partly_committed=sorted(partial))

    def _seed_phase_stats(self) -> None:
        """A resumed job's phase table starts from what its committed batches hold, and
        its busy times from what the earlier segments recorded."""
        before = {p.get("label"): p for p in (self.resume.get("phase_stats") or [])
                  if isinstance(p, dict) and not p.get("branch")}
        for st in self.stats:
            st.seconds = float((before.get(st.label) or {}).get("seconds") or 0.0)
            st.warned = int((before.get(st.label) or {}).get("warned") or 0)
        committed_phase_stats(self.stats, self.counters.rows_read,
                              self.store.phase_reject_counts(self.job_id))

    def _phase_table(self) -> list[dict]:
        return [st.to_json() for st in self.stats]

    def _prove_source(self) -> None:
        """Resume skips the records the destinations hold: the file must still begin with
        the bytes they were read from. The batch furthest on that any destination holds
        kept (n, hash) of the file's first n bytes when it was cut (ADR 0017); they are
        hashed again here, before anything is written. (Size, mtime, head and tail were
        compared already, and the whole-file digest when the job lived to record it.)"""
        held = {n: e for t in self.targets for n, e in t.held.items()}
        proof = self.store.source_proof(self.job_id, set(held))
        if proof is None:       # nothing committed, or a job from before proofs were kept
            return
        size, recorded = proof["source_bytes"], proof["source_sha256"]
        if extract.prefix_digest(self.plan.source, size) != recorded:
            raise UserError(
                f"{self.plan.source}: its first {size:,} bytes changed since job {self.job_id} "
                f"loaded records 1 to {held[proof['batch']]['row_end']:,} from them (same size "
                "and modification time, other content); resuming would mix two versions of "
                f"the file. Restore it, or roll the job back ('etlconsole rollback "
                f"{self.job_id}') and run the pipeline again")

    # -- main thread: read and transform --------------------------------------
    def _run_phases(self) -> None:
        plan = self.plan
        ctx = JobContext(self.job_id, self.workspace, self.settings, self.start_after)
        for p in plan.phases + [p for t in self.targets for p in t.phases]:
            p.phase.attach(ctx)             # a no-op unless the phase keeps job state
        for t in self.targets:
            t.destination.open(t.schema)
        loader = threading.Thread(target=self._load_loop, name="loader", daemon=True)
        loader.start()
        stream = self.stream or extract.CsvStream(
            plan.source, plan.dialect, block_size=self.settings.stream_high_water_mark,
            chunk_rows=self.chunk_rows, start_after=self.start_after)
        pending: Pending | None = None
        number = self.next_batch - 1
        steps = [s for p, st, clock in zip(plan.phases, self.stats[1:], self.clocks[1:])
                 for s in self._phase_steps(p, st, clock)]
        line = staged(map(_Work.of, _timed(stream, self.clocks[0])), steps, in_flight=3,
                      name="phase", nice=PHASE_NICE)
        try:
            for work in line:
                chunk = work.chunk
                self._check_helpers()
                if self.governor.over_budget:
                    raise JobFailed(
                        f"memory budget exceeded: RSS {self.governor.rss_mb:.0f} MB > "
                        f"PIPELINE_MAX_MEMORY_MB={self.settings.max_memory_mb}; the job is "
                        "resumable — raise the budget or lower PIPELINE_CHUNK_SIZE")
                stream.chunk_rows = self.chunk_rows
                good, snapshots = work.batch, work.snapshots
                self._count_extract(work)
                self.counters.rows_warned += work.warnings
                if pending is None:
                    pending = Pending(chunk.first_row, good.schema)
                self.counters.records_seen = chunk.last_row
                self.counters.bytes_read = chunk.bytes_read
                pending.add(good, list(chunk.carried), snapshots, chunk.last_row,
                            chunk.bytes_read, blamed=work.rejects, proof=chunk.proof)
                while self.forced and pending.last_row >= self.forced[0][1]:
                    number, upto = self.forced.pop(0)      # cut where a destination did
                    self._put(pending.take_through(upto, number))
                while not self.forced:
                    item = pending.take_next(self.sizer.size, number + 1)
                    if item is None:
                        break
                    number += 1
                    self._put(item)
            while pending is not None and self.forced:
                number, upto = self.forced.pop(0)
                self._put(pending.take_through(upto, number))
            if pending is not None and not pending.empty:
                number += 1
                self._put(pending.flush(number))
            self._put(_DONE)
        except BaseException:
            # Every thread stops, and is waited for, before phases and destinations are
            # closed; a second Ctrl-C waits too (one still inside Arrow as the
            # interpreter exits can crash the process).
            with shielded():
                self._abort.set()     # the loader drops what is queued: none of it committed
                line.close()
                loader.join()
                # Batches begun but never taken by the loader are in no destination: they
                # go, with their rejects, as resume would drop them (a batch the loader
                # took may be held by some destinations, and resume decides about it).
                try:
                    self.store.drop_pending(self.job_id, after=max(
                        self._taken, *(max(t.held, default=0) for t in self.targets)))
                except Exception:     # e.g. the store locked: they stay PENDING, as after a kill
                    pass
            raise
        loader.join()
        self._check_helpers()

    def _count_extract(self, work: _Work) -> None:
        """The extract's line of the phase table: records read, and rows rejected on
        read (or, in a rerun, carried from the first job's earlier phases)."""
        st, chunk = self.stats[0], work.chunk
        rejected = len(chunk.carried) + sum(len(r) for r in chunk.rejects)
        st.rows_in += max(0, chunk.last_row - chunk.first_row + 1)
        st.rejected += rejected
        st.rows_out = st.rows_in - st.rejected

    def _phase_steps(self, planned, stats: PhaseStats, clock: BusyClock
                     ) -> list[Callable[[_Work], _Work]]:
        """One phase as steps of the line (``stages.staged``), each in a thread of its own;
        only they touch the phase and its stats. A phase whose work comes in two halves
        (``parts()``: validate's rule masks, then its unique check and split) gets a step
        for each, so the two halves of consecutive chunks overlap."""
        parts = planned.phase.parts()
        if parts is None:
            return [self._phase_step(planned, stats, clock)]
        check, finish = parts

        def first(work: _Work) -> _Work:
            with clock:
                try:
                    work.checked = check(work.batch)
                except _FATAL:
                    raise
                except Exception:
                    work.checked = None      # the second step runs the whole phase, which copes
            return work

        def attempt(work: _Work):
            checked, work.checked = work.checked, None
            return None if checked is None else lambda: finish(checked)

        return [first, self._phase_step(planned, stats, clock, attempt)]

    def _phase_step(self, planned, stats: PhaseStats, clock: BusyClock,
                    attempt=None) -> Callable[[_Work], _Work]:
        def step(work: _Work) -> _Work:
            rows_in = work.batch.num_rows
            with clock:
                out, phase_rejects, warnings = self._process(planned, work.batch,
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

    def _process(self, planned, batch: pa.RecordBatch, attempt: Callable | None = None
                 ) -> tuple[pa.RecordBatch, list[Blamed], int]:
        """One phase over one batch. A phase that raises is given halves of the batch until
        the rows it raises on are found; those are rejected with the exception's message
        and the rest goes on (``on_error = "fail"`` on the phase stops the job instead)."""
        try:
            out = attempt() if attempt else planned.phase.process(batch)
        except _FATAL:
            raise
        except Exception as exc:
            if is_disk_full(exc):     # no row's fault: the job stops, resumably
                raise DiskFull(f"{self.workspace}: the disk of the job's workspace is full "
                               f"({planned.label}: {exc}); the job stopped and is resumable: free "
                               "space there, then resume it") from None
            if planned.phase.on_error == "fail" or batch.num_rows == 0:
                raise JobFailed(f"{planned.label}: {type(exc).__name__}: {exc}") from exc
            if batch.num_rows == 1:
                message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                rejected = Rejects(batch, ["exception"], [None], [message])
                return _empty(planned.output), [(rejected, planned.type, planned.label)], 0
            mid = batch.num_rows // 2
            left = self._process(planned, batch.slice(0, mid))
            right = self._process(planned, batch.slice(mid))
            return _concat([left[0], right[0]], planned.output), left[1] + right[1], left[2] + right[2]
        rejects, warnings = [], 0
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

    def _put(self, item) -> None:
        if item is not _DONE:
            if item.snapshots:
                try:
                    write_snapshots(self.workspace, item)
                except OSError as exc:
                    if not is_disk_full(exc):
                        raise
                    raise DiskFull(f"{self.workspace}: the disk of the job's workspace is full "
                                   f"({exc}); the job stopped and is resumable: free space there, "
                                   "then resume it") from None
            # What each target receives, and the batch's PENDING record with its rejects,
            # are made here: the loader, the slowest part of a job, is left with writing.
            # (A thousand rejects inserted one by one hand the GIL back and forth a
            # thousand times; in the loader that cost a third of a second per 1M rows.)
            item.outputs = [self._timed_output(t, clock, item)
                            for t, clock in zip(self.targets, self.write_clocks)]
            branch_rejects = [r for *_, rejects in item.outputs for r in rejects]
            self.store.begin_batch(self.job_id, item.number, row_start=item.row_start,
                                   row_end=item.row_end, rejects=item.rejects + branch_rejects,
                                   rows=item.rows, proof=item.proof,
                                   keep_labels={t.label for t in self.targets if item.number in t.held})
        while True:
            self._check_helpers()
            try:
                self.queue.put(item, timeout=0.2)
                if item is not _DONE:
                    self.counters.batch_size = item.rows
                return
            except queue.Full:
                continue

    # -- loader thread: one transaction per batch -----------------------------
    def _load_loop(self) -> None:
        store = self.store.clone()
        c, s = self.counters, self.settings
        try:
            while not self._abort.is_set():
                try:
                    item = self.queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is _DONE:
                    break
                t0 = time.perf_counter()
                self._taken = item.number
                refused, attempts = 0, 1
                # Writing is the load's work: its time (and the rows the destination
                # refused) belong on its line of the phase table (a branch's, on the
                # branch's line).
                for t, clock, (batch, data, _) in zip(self.targets, self.write_clocks,
                                                      item.outputs):
                    if item.number in t.held:       # committed there before a kill
                        continue
                    with clock:
                        n, tries = self._write(store, t, item, batch, data)
                    refused += n
                    attempts = max(attempts, tries)
                seconds = time.perf_counter() - t0
                if refused and not self.plan.branches:
                    self.stats[-1].rejected += refused
                    self.stats[-1].rows_out -= refused
                if self.plan.branches:     # rows reaching the branches; branch rejects apart
                    loaded, rejected = item.rows, len(item.rejects)
                else:
                    loaded, rejected = item.rows - refused, len(item.rejects) + refused
                c.rows_loaded += loaded
                c.rows_rejected += rejected
                c.rows_read = item.row_end
                c.batches = item.number
                store.commit_batch(
                    self.job_id, item.number, rows_loaded=loaded, attempts=attempts,
                    duration_ms=seconds * 1000,
                    counters={"rows_read": c.rows_read, "rows_loaded": c.rows_loaded,
                              "rows_rejected": c.rows_rejected, "bytes_read": item.bytes_read,
                              "retries": self.retries,
                              # per-phase counts so far, for the console's monitor
                              "phase_stats": self._phase_table()})
                self.sizer.committed(seconds, retried=attempts > 1, refused_rows=refused)
                if c.rows_read - c.last_checkpoint_row >= s.checkpoint_interval:
                    self._checkpoint(store, item.bytes_read)
                self._check_reject_rate(final=False)
        except BaseException as exc:   # handed to the main thread, which fails the job
            self._loader_error = exc if isinstance(exc, JobFailed) else JobFailed(
                f"loader: {type(exc).__name__}: {exc}")
        finally:
            store.close()

    def _timed_output(self, t: Target, clock: BusyClock, item: LoadItem):
        if not self.plan.branches:       # the plain load's line times its writes only
            return self._output(t, item)
        with clock:                      # a branch's line: its phases and its writes
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
            batch, phase_rejects, _ = self._process(planned, batch)
            rejects += records_of(phase_rejects)
        t.stats.rejected += len(rejects)
        return batch, rejects

    def _write(self, store: StateStore, t: Target, item: LoadItem, batch: pa.RecordBatch,
               data: pa.RecordBatch) -> tuple[int, int]:
        """Write one batch to one destination; returns (rows refused, attempts). Rows the
        database refuses become rejects of the load, recorded in the store inside the
        destination's transaction (exact after a kill)."""
        rows = batch.column(ROW)

        def record(refused):
            store.set_load_rejects(self.job_id, item.number, t.label,
                                   self._refused_records(t, batch, refused))

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

    @property
    def retries(self) -> int:
        return sum(t.destination.retries for t in self.targets)

    def _refused_records(self, t: Target, batch: pa.RecordBatch,
                         refused: list[RefusedRow]) -> list[dict]:
        if not refused:
            return []
        index = pa.array([r.index for r in refused], pa.int64())
        rejected = Rejects(batch.take(index), [r.rule for r in refused],
                           [r.column for r in refused], [r.message for r in refused])
        return rejected.records("load", t.label)

    def _check_reject_rate(self, *, final: bool) -> None:
        """``max_reject_rate``: judged once a batch's worth of rows is read (so the first
        few rows cannot fail a job alone), and at the end."""
        limit, c = self.plan.spec.max_reject_rate, self.counters
        if limit is None or c.rows_read == 0:
            return
        if not final and c.rows_read < self.settings.batch_size_min:
            return
        rate = c.rows_rejected / c.rows_read
        if rate > limit:
            raise JobFailed(f"reject rate {rate:.1%} ({c.rows_rejected} of {c.rows_read} rows "
                            f"read) exceeds max_reject_rate {limit:.1%}; see `etlconsole rejects "
                            f"{self.job_id}`, then roll back or fix the data and resume")

    def _checkpoint(self, store: StateStore, bytes_read: int) -> None:
        """A checkpoint at the last committed batch."""
        c = self.counters
        store.add_checkpoint(self.job_id, "load", {
            "batch": c.batches, "last_row": c.rows_read, "bytes_read": bytes_read,
            "rows_read": c.rows_read, "rows_loaded": c.rows_loaded,
            "rows_rejected": c.rows_rejected, "fingerprint": self.fingerprint,
        }, row_count=c.rows_read)
        c.last_checkpoint_row = c.rows_read

    # -- sampler thread: metrics, memory, progress ----------------------------
    def _sample_loop(self) -> None:
        """Every failure of this thread stops the job (the main thread raises it): a full
        disk under the state store is seen here first, and must not go on unseen."""
        try:
            self._sampling()
        except BaseException as exc:
            self._helper_error = exc if isinstance(exc, JobFailed) else JobFailed(
                f"sampler: {type(exc).__name__}: {exc}")

    def _sampling(self) -> None:
        store = self.store.clone()
        try:
            # A sample at once: a job shorter than the interval still has its figures
            # (the last one is taken by the main thread when the segment ends).
            self._sample(store)
            ticks = 0
            # Memory is looked at every 0.1 s (a burst between looks must stay small);
            # metrics are written every 0.5 s.
            while not self._stop.wait(0.1):
                ticks += 1
                self._watch_memory()
                if ticks % 5 == 0:
                    self._sample(store)
        finally:
            store.close()

    def _watch_memory(self) -> None:
        self.governor.check()
        now = time.monotonic()
        if self.governor.pressure and now - self._shrunk_at >= 0.5:   # halve, then let it act
            self._shrunk_at = now
            self.chunk_rows = max(1_000, self.chunk_rows // 2)
            self.sizer.shrink()
        elif not self.governor.pressure and self.chunk_rows < self.chunk_cap:
            self.chunk_rows = min(self.chunk_cap, self.chunk_rows + self.chunk_cap // 40)

    def _sample(self, store: StateStore) -> dict:
        """One metrics sample. Rates are of this run segment: rows since the previous
        sample of the segment over the time since it (a resumed job's first sample does
        not count the rows of the earlier segments as just read)."""
        c = self.counters
        t = time.monotonic()
        rows, seg_t = c.records_seen, t - self.started
        dt = t - self._last_t
        sample = {
            "elapsed_s": round(self.elapsed_before + seg_t, 3), "rows_read": rows,
            "rows_loaded": c.rows_loaded, "rows_rejected": c.rows_rejected,
            "rows_per_s": round((rows - self._last_rows) / dt, 1) if dt > 1e-3 else 0.0,
            "rss_mb": round(self.governor.sample(), 1),
            "batch_size": c.batch_size or self.sizer.size,
            "queue_depth": self.queue.qsize(), "retries": self.retries,
            "bytes_read": c.bytes_read, "segment": self.segment,
            "segment_elapsed_s": round(seg_t, 3), "segment_rows": rows - self.start_after,
            "segment_bytes": max(0, c.bytes_read - self.bytes_before),
        }
        self._last_rows, self._last_t = rows, t
        store.add_metric(self.job_id, sample)
        if self.progress:
            self.progress(sample | {"bytes_total": self.fingerprint["size"]})
        return sample

    # -- the end --------------------------------------------------------------
    def _unpublished(self, status: str) -> int:
        """Rows written to staging that no target shows: an atomic or replace job that did
        not succeed published nothing (its rows wait in staging for a resume). The summary
        reports them as ``rows_staged``, apart from ``rows_loaded`` (what the targets hold)."""
        if status == "succeeded" or any(t.load.mode == "append" for t in self.targets):
            return 0
        return self.counters.rows_loaded

    def _finish(self, status: str, error: str | None) -> dict:
        c = self.counters
        if status == "succeeded" and c.rows_read - c.last_checkpoint_row > 0:
            with suppress(DiskFull):
                self._checkpoint(self.store, c.bytes_read)
        segment = time.monotonic() - self.started
        try:
            # The job's duration is the sum of its segments; its rate is this segment's.
            elapsed = self.store.end_segment(self.job_id, self.segment,
                                             elapsed_s=round(segment, 3),
                                             rows_at_end=c.rows_read, status=status)
        except DiskFull:        # the store's disk is full: the summary still says what it can
            elapsed = segment
        peak = round(Governor.peak_mb(), 1)
        # What the committed batches hold, whatever the segment had begun.
        committed_phase_stats(self.stats, c.rows_read, self.store.phase_reject_counts(self.job_id))
        done = c.rows_read - self.start_after
        staged = self._unpublished(status)
        summary = {
            "job_id": self.job_id, "status": status, "rows_read": c.rows_read,
            "rows_loaded": c.rows_loaded - staged, "rows_rejected": c.rows_rejected,
            "rows_warned": c.rows_warned, "elapsed_s": round(elapsed, 3),
            "segment_elapsed_s": round(segment, 3), "segment": self.segment,
            "rows_per_s": round(done / segment, 1) if segment else None,
            "peak_rss_mb": peak, "retries": self.retries, "batches": c.batches,
            "destination": self.targets[0].describe() if not self.plan.branches else None,
            "error": error,
        }
        if staged:
            summary["rows_staged"] = staged
        if self.plan.branches:   # rows_loaded counts rows reaching the branches
            summary["branches"] = [{"branch": t.name, "destination": t.describe(),
                                    **t.stats.__dict__} for t in self.targets]
        try:
            self._record_end(summary, status, error, peak)
        except DiskFull:
            # Not even the reserve was enough: the job stays 'running' in the store, and
            # the next command that looks finds its process gone (interrupted, resumable).
            pass
        if self.progress:
            self.progress(None)
        return summary

    def _record_end(self, summary: dict, status: str, error: str | None, peak: float) -> None:
        c = self.counters
        branch_lines = [{"label": t.label, "branch": t.name, **t.stats.__dict__,
                         "seconds": round(clock.stats.seconds, 4)}
                        for t, clock in zip(self.targets, self.write_clocks) if t.name]
        self.store.update_job(
            self.job_id, status=status, finished_at=now(), elapsed_s=summary["elapsed_s"],
            peak_rss_mb=peak, rows_read=c.rows_read, rows_loaded=c.rows_loaded,
            rows_rejected=c.rows_rejected, rows_warned=c.rows_warned, error=error,
            retries=self.retries,
            phase_stats=self._phase_table() + branch_lines)
        self.store.add_event(self.job_id, f"job.{status}", level="info" if status == "succeeded"
                             else "error", error=error)
