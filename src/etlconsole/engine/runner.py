"""Run a planned job: stream -> phases -> bounded queue -> loader thread -> destination.

The work is spread over threads, so two cores share it: a reader parses the CSV, each
phase runs in a thread of its own (``line.PhaseLine``: chunk i is validated while chunk
i+1 is cleaned), the main thread cuts load batches (``cutter.Cutter``), and the loader
thread commits them (``loader.Loader``; Arrow, ADBC and SQLite release the GIL while they
work). A sampler thread (``sampler.Sampler``) writes metrics to the state store about every
half second and watches memory. The job's record, segments and end are ``job.Job``'s.
Each thread owns the state it writes (ADR 0020).

Load batches cover contiguous ranges of source records with their rejects: the resume
position is simply the last committed record. This module is the facade: it wires the
parts together and decides how the job ends.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import DiskFull
from ..interrupts import shielded
from ..records import JobStatus
from ..store import StateStore
from . import manyfiles
from .batching import BatchSizer
from .cutter import Cutter, Progress, SizeSignals, snapshot_dir
from .figures import BusyClock, PhaseStats, committed_phase_stats, counted_extract
from .governor import Governor, use_lean_allocator
from .job import Job, JobContext
from .line import PhaseLine, records_of
from .loader import Loader
from .plan import Plan
from .sampler import DEFAULT_ROOM_MB, Sampler

__all__ = ["Runner", "JobContext", "records_of", "PhaseStats", "BusyClock",
           "committed_phase_stats", "snapshot_dir", "DEFAULT_ROOM_MB"]


@contextmanager
def _collector_for_a_job() -> Iterator[None]:
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


def _governor(settings: Settings) -> Governor:
    """The governor, measuring the RSS at start before any destination is opened."""
    use_lean_allocator()
    return Governor(settings.max_memory_mb)


class Runner:
    """One run segment of a job: ``Runner.new``, ``Runner.resume`` or ``Runner.rerun``,
    then ``run()``, which returns the summary. Main thread; it owns the job's status."""

    def __init__(self, job: Job, governor: Governor, *,
                 progress: Callable[[dict | None], None] | None = None, log: Any = None):
        self.job, self.log = job, log
        self.sampler = Sampler(job, governor, progress)
        self.sizer = BatchSizer(job.settings.batch_size_min, job.settings.batch_size_max,
                                slow_s=job.settings.transaction_timeout_ms / 10_000)

    @classmethod
    def new(cls, plan: Plan, store: StateStore, settings: Settings, *,
            progress: Callable[[dict | None], None] | None = None, log: Any = None) -> Runner:
        governor = _governor(settings)
        return cls(Job.new(plan, store, settings), governor, progress=progress, log=log)

    @classmethod
    def resume(cls, plan: Plan, store: StateStore, settings: Settings, record: dict, *,
               progress: Callable[[dict | None], None] | None = None, log: Any = None) -> Runner:
        """Continue the job of ``record`` after its last committed batch."""
        governor = _governor(settings)
        return cls(Job.resumed(plan, store, settings, record), governor, progress=progress, log=log)

    @classmethod
    def rerun(cls, plan: Plan, store: StateStore, settings: Settings, *, stream: Any, parent: str,
              fingerprint: dict, progress: Callable[[dict | None], None] | None = None,
              log: Any = None) -> Runner:
        """A new job over ``stream``, a phase checkpoint of job ``parent``."""
        governor = _governor(settings)
        job = Job.rerun(plan, store, settings, stream=stream, parent=parent, fingerprint=fingerprint)
        return cls(job, governor, progress=progress, log=log)

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def workspace(self) -> Path:
        return self.job.workspace

    def run(self) -> dict:
        with _collector_for_a_job():
            return self._run()

    def _run(self) -> dict:
        job, sampler = self.job, self.sampler
        sampler.refuse_impossible_budget()
        sampler.fit(self.sizer)
        for t in job.targets:
            t.destination.check(t.schema)
        start = job.open()
        self.loader = loader = Loader(job, start.committed, SizeSignals())
        self.cutter = Cutter(job, self.sizer, loader.signals, next_batch=start.next_batch,
                             forced=start.forced, loader_queue=loader.queue, check=self._check_helpers,
                             progress=Progress(records_seen=start.committed.rows_read,
                                               bytes_read=job.bytes_before))   # a resume starts there
        # From the job's record on, a Ctrl-C ends it as 'interrupted' (a kill before the
        # try is seen by mark_dead_jobs: its process is gone).
        job.started = time.monotonic()
        sampler.attach(self.cutter, loader)
        status, error = JobStatus.FAILED, "the engine stopped unexpectedly"   # type: str, str | None
        digest = (threading.Thread(target=job.digest_source, args=(sampler.stop,), name="digest",
                                   daemon=True) if job.kind == "run" else None)
        try:
            job.begin_segment()
            if self.log:
                self.log.info("job.resumed" if job.kind == "resume" else "job.started",
                              job=job.job_id, source=str(job.plan.source),
                              after_record=job.start_after, dialect="; ".join(job.plan.dialect.notes))
            sampler.start()
            if digest is not None:
                digest.start()
            self._run_line()
            loader.check_reject_rate(final=True)    # before an atomic job publishes anything
            for t in job.targets:
                t.destination.publish(t.schema)
            status, error = JobStatus.SUCCEEDED, None
        except (KeyboardInterrupt, Exception) as exc:   # a bug or a plugin crash: keep the job resumable
            status, error = job.ended_by(exc)
        finally:
            # The job ends either way: a Ctrl-C now has nothing left to stop, and must not
            # leave it half closed or its end unrecorded (interrupts.py).
            with shielded(drop=True):
                summary = self._end(status, error, digest)
        return summary

    def _end(self, status: str, error: str | None, digest: threading.Thread | None) -> dict:
        job, loader = self.job, self.loader
        self.sampler.join()         # both look at the stop event; the digest within a block
        if digest is not None and digest.ident is not None:
            digest.join()
        for p in job.plan.phases + [p for t in job.targets for p in t.phases]:
            p.phase.teardown()      # plugins without the hook are wrapped (PluginPhase)
        for t in job.targets:
            t.destination.close()
        job.release_reserve()
        try:
            self.sampler.sample(job.store)   # the last figures of the segment, always
        except Exception:                    # the store refused: finish says what it can
            pass
        c, progress = loader.committed, self.cutter.progress
        if status == JobStatus.SUCCEEDED and c.rows_read - loader.last_checkpoint_row > 0:
            with suppress(DiskFull):
                loader.checkpoint(job.store, progress.bytes_read)
        summary = job.finish(status, error, loader.committed, rows_warned=progress.rows_warned)
        if self.sampler.progress:
            self.sampler.progress(None)
        return summary

    def _check_helpers(self) -> None:
        """A helper thread's failure (the loader's, the sampler's) stops the job here."""
        for error in (self.loader.error, self.sampler.error):
            if error is not None:
                raise error

    def _run_line(self) -> None:
        job, loader, cutter, sampler = self.job, self.loader, self.cutter, self.sampler
        ctx = job.context()
        for p in job.plan.phases + [p for t in job.targets for p in t.phases]:
            p.phase.attach(ctx)             # a no-op unless the phase keeps job state
        for t in job.targets:
            t.destination.open(t.schema)
        loader.start()
        stream = job.stream or manyfiles.open_stream(job, sampler.chunk_rows)
        line = PhaseLine(job.plan.phases, job.stats, job.clocks, job.workspace).run(
            counted_extract(stream, job.stats[0]))
        try:
            for work in line:
                self._check_helpers()
                sampler.check_budget()
                stream.chunk_rows = sampler.chunk_rows
                cutter.add(work)
            manyfiles.finish(job, stream)
            cutter.finish()
        except BaseException:
            # Every thread stops, and is waited for, before phases and destinations are
            # closed; a second Ctrl-C waits too (one still inside Arrow as the
            # interpreter exits can crash the process).
            with shielded():
                loader.abort.set()    # the loader drops what is queued: none of it committed
                line.close()
                loader.join()
                # Batches begun but never taken by the loader are in no destination: they
                # go, with their rejects, as resume would drop them (a batch the loader
                # took may be held by some destinations, and resume decides about it).
                try:
                    job.store.drop_pending(job.job_id, after=max(
                        loader.taken, *(max(t.held, default=0) for t in job.targets)))
                except Exception:     # e.g. the store locked: they stay PENDING, as after a kill
                    pass
            raise
        loader.join()
        self._check_helpers()

