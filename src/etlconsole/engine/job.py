"""A job's lifecycle and its writes to the state store: its record (new, resumed or a
rerun: one constructor each), its run segments, its end and summary.

Who writes what (ADR 0020): only the main thread uses a ``Job``. The job's record, its
segments and its end are written here; batches, checkpoints and metrics by the cutter, the
loader and the sampler, each through a connection of its own. The segment's figures
(``start_after``, ``bytes_before``, ``segment``, ``elapsed_before``, ``started``) are set
before the job's threads start and only read afterwards.
"""

from __future__ import annotations

import os
import threading
import traceback
from contextlib import suppress
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ..config import Settings
from ..errors import DiskFull, JobFailed, UserError, is_disk_full
from ..records import JobStatus
from ..store import StateStore, new_job_id
from ..store.store import now
from . import extract, manyfiles
from .figures import BusyClock, PhaseStats, committed_phase_stats, phase_table
from .governor import Governor
from .loader import Committed
from .plan import Plan
from .resuming import Start, prepare_resume
from .targets import Target, targets_for

# Room kept free on the state store's disk for the end of a job (its status, counters and
# last event): a file of this size in the job's workspace, deleted before those writes.
# When that disk fills up mid-job, they still find room (a few dozen 4 KB WAL frames).
RESERVE_BYTES = 256 * 1024


def plain_source(plan: Plan) -> bool:
    """The plan reads one regular, uncompressed file (which can be hashed on its own)."""
    return (len(plan.files) == 1 and plan.files[0].compression is None
            and plan.files[0].path.is_file())


@dataclass
class JobContext:
    job_id: str
    workspace: Path
    settings: Settings
    resume_after: int = 0       # source records already done when the job resumed


class Job:
    """One job: ``Job.new``, ``Job.resumed`` (a job record) or ``Job.rerun`` (a phase
    checkpoint of a parent job as its stream). Main thread only (see the module)."""

    def __init__(self, plan: Plan, store: StateStore, settings: Settings, *, job_id: str,
                 kind: str, record: dict | None, stream: Any, parent: str | None,
                 fingerprint: dict):
        self.plan, self.store, self.settings = plan, store, settings
        self.job_id, self.kind, self.record = job_id, kind, record
        self.stream, self.parent, self.fingerprint = stream, parent, fingerprint
        self.workspace = store.path.parent / "jobs" / job_id
        # The phase table: the extract (rows parsed, rows rejected on read) and each phase.
        first = f"replay of job {parent}" if stream is not None and parent else "extract"
        self.stats = [PhaseStats(first)] + [PhaseStats(p.label) for p in plan.phases]
        self.clocks = [BusyClock(st) for st in self.stats]
        self.targets: list[Target] = targets_for(plan, job_id, settings)
        # What each target's work (its filter, phases, preparing and writing its batches) is
        # timed on: its load's line, the main line's last for a plain pipeline's target,
        # or a line of its own for a branch's.
        lines = {st.label: clock for st, clock in zip(self.stats, self.clocks, strict=True)}
        self.write_clocks = [lines.get(t.label) or BusyClock(PhaseStats(t.label))
                             for t in self.targets]
        self.segment = 0              # this run segment's number in the job (store)
        self.elapsed_before = 0.0     # seconds the job ran in earlier segments
        self.bytes_before = 0         # bytes done when this segment started
        self.start_after = 0          # last source record already done (resume)
        self.started = 0.0            # time.monotonic() when this segment began
        # A new job reading one plain file hashes it once: the digest thread's whole-file
        # digest and the reader's proofs of what each batch was read from (extract).
        self.prefixes = (extract.PrefixHashes(plan.source) if kind == "run" and stream is None
                         and plain_source(plan) else None)

    @classmethod
    def new(cls, plan: Plan, store: StateStore, settings: Settings) -> Job:
        return cls(plan, store, settings, job_id=new_job_id(), kind="run", record=None,
                   stream=None, parent=None, fingerprint=manyfiles.fingerprint(plan))

    @classmethod
    def resumed(cls, plan: Plan, store: StateStore, settings: Settings, record: dict) -> Job:
        """The job of ``record``, continued after its last committed batch."""
        return cls(plan, store, settings, job_id=record["id"], kind="resume", record=record,
                   stream=None, parent=None, fingerprint=manyfiles.fingerprint(plan, record))

    @classmethod
    def rerun(cls, plan: Plan, store: StateStore, settings: Settings, *, stream: Any,
              parent: str, fingerprint: dict) -> Job:
        """A new job reading ``stream`` (a phase checkpoint of job ``parent``)."""
        return cls(plan, store, settings, job_id=new_job_id(), kind="rerun", record=None,
                   stream=stream, parent=parent, fingerprint=fingerprint)

    @property
    def retries(self) -> int:
        return sum(t.destination.retries for t in self.targets)

    def context(self) -> JobContext:
        return JobContext(self.job_id, self.workspace, self.settings, self.start_after)

    # -- the start ------------------------------------------------------------
    def open(self) -> Start:
        """The workspace and the job's record (a resume reconciles it with the ledgers)."""
        self.workspace.mkdir(parents=True, exist_ok=True)
        self._reserve_space()
        try:
            if self.record is not None:
                return prepare_resume(self, self.record)
            self._create()
            return Start()
        except DiskFull as exc:      # each write one transaction, rolled back: nothing begun
            self.release_reserve()
            raise UserError(str(exc).replace("the job stopped and is resumable: ", "")) from None
        except UserError:
            self.release_reserve()
            raise

    def _create(self) -> None:
        plan, store = self.plan, self.store
        store.create_job(
            self.job_id, pipeline_name=plan.spec.name,
            pipeline_file=str(plan.spec.base_dir / Path(plan.spec.file).name),
            pipeline_toml=plan.spec.to_toml(), source_path=str(plan.source),
            source_fingerprint=self.fingerprint, dialect=plan.dialect.to_json(),
            destinations=[t.describe() for t in self.targets],
            bytes_total=self.fingerprint["size"], settings=self.settings.__dict__)
        for note in plan.dialect.notes:
            store.add_event(self.job_id, "sniff", note=note)
        for why in plan.skipped:
            store.add_event(self.job_id, "phase.skipped", reason=why)
        if plan.conditions:     # resume and rerun reuse these decisions (engine.plan)
            store.add_event(self.job_id, "plan.conditions", decisions=plan.conditions)
        if self.parent:
            store.add_event(self.job_id, "job.rerun", parent=self.parent,
                            from_phase=plan.phases[0].index - 1)

    def mark_process(self, resumes: int) -> None:
        self.store.update_job(self.job_id, pid=os.getpid(), pid_started=psutil.Process().create_time(),
                              error=None, finished_at=None, resumes=resumes)

    def ended_by(self, exc: BaseException) -> tuple[JobStatus, str]:
        """The status and error of a job ``exc`` ended (called in its ``except``; the
        local runner and the Dask driver alike): a job failure says why; Ctrl-C or SIGTERM
        interrupts it; anything else (a bug, a plugin's or a task's crash) fails it
        resumably, its traceback kept as an event."""
        if isinstance(exc, JobFailed):
            return JobStatus.FAILED, str(exc)
        if isinstance(exc, KeyboardInterrupt):
            return JobStatus.INTERRUPTED, "interrupted by the operator (Ctrl-C or SIGTERM)"
        with suppress(DiskFull):
            self.store.add_event(self.job_id, "job.crashed", level="error",
                                 traceback=traceback.format_exc())
        return JobStatus.FAILED, f"{type(exc).__name__}: {exc}"

    def begin_segment(self) -> None:
        """The job is running; a segment of it begins. ``started_at`` stays the job's
        first start (set once); the segment is recorded so the job's duration and rates
        can be told per segment."""
        self.segment = self.store.begin_segment(self.job_id, self.kind, self.start_after)
        self.elapsed_before = self.store.duration(self.job_id)
        job = self.record or {}
        self.store.update_job(self.job_id, status=JobStatus.RUNNING,
                              started_at=job.get("started_at") or now())

    def digest_source(self, stop: threading.Event) -> None:
        """Hash the whole source (the "digest" thread, which writes only the job record's
        ``source_digest``), for resume's changed-file check (an extra: a job whose digest
        is not recorded is checked without it)."""
        if manyfiles.is_many(self.plan):   # each file is proven on its own (ADR 0025)
            return
        try:
            store = self.store.clone()
        except UserError:
            return
        try:
            value = (self.prefixes.run_to_end(stop) if self.prefixes is not None
                     else extract.digest(self.plan.source, stop=stop))
            if value:
                store.update_job(self.job_id, source_digest=value)
        except (OSError, JobFailed):
            pass
        finally:
            store.close()
            if self.prefixes is not None:
                self.prefixes.close()

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

    def release_reserve(self) -> None:
        with suppress(OSError):
            (self.workspace / "reserve").unlink(missing_ok=True)

    # -- the end --------------------------------------------------------------
    def _unpublished(self, status: str, rows_loaded: int) -> int:
        """Rows written to staging that no target shows: an atomic or replace job that did
        not succeed published nothing (its rows wait in staging for a resume). The summary
        reports them as ``rows_staged``, apart from ``rows_loaded`` (what the targets hold)."""
        if status == JobStatus.SUCCEEDED or any(t.load.mode == "append" for t in self.targets):
            return 0
        return rows_loaded

    def finish(self, status: str, error: str | None, c: Committed, *, rows_warned: int,
               rejects_by_label: dict[str, int] | None = None, peak_rss_mb: float = 0.0) -> dict:
        """The segment's end and the job's (``c``: what the committed batches hold;
        ``rejects_by_label``: their main line's rejects by phase label where the executor
        counted them as it recorded them, else the store counts them, ~0.5 µs a reject;
        ``peak_rss_mb``: the peak of the job's other processes — a Dask job's workers —
        when higher than this process's)."""
        segment = time.monotonic() - self.started
        try:
            # The job's duration is the sum of its segments; its rate is this segment's.
            elapsed = self.store.end_segment(self.job_id, self.segment,
                                             elapsed_s=round(segment, 3),
                                             rows_at_end=c.rows_read, status=status)
        except DiskFull:        # the store's disk is full: the summary still says what it can
            elapsed = segment
        peak = round(max(Governor.peak_mb(), peak_rss_mb), 1)
        # What the committed batches hold, whatever the segment had begun.
        if rejects_by_label is None:
            rejects_by_label = self.store.phase_reject_counts(self.job_id)
        committed_phase_stats(self.stats, c.rows_read, rejects_by_label)
        done = c.rows_read - self.start_after
        staged = self._unpublished(status, c.rows_loaded)
        summary = {
            "job_id": self.job_id, "status": status, "rows_read": c.rows_read,
            "rows_loaded": c.rows_loaded - staged, "rows_rejected": c.rows_rejected,
            "rows_warned": rows_warned, "elapsed_s": round(elapsed, 3),
            "segment_elapsed_s": round(segment, 3), "segment": self.segment,
            "rows_per_s": round(done / segment, 1) if segment else None,
            "peak_rss_mb": peak, "retries": self.retries, "batches": c.batches,
            # a plain pipeline's one target; a branch's is told under "branches"
            "destination": next((t.describe() for t in self.targets if t.name is None), None),
            "error": error,
        }
        if staged:
            summary["rows_staged"] = staged
        branches = [{"branch": t.name, "destination": t.describe(), **t.stats.__dict__}
                    for t in self.targets if t.name is not None]
        if branches:   # rows_loaded then counts rows reaching them (refusals_are_job_rejects)
            summary["branches"] = branches
        try:
            self._record_end(summary, c, rows_warned, peak)
        except DiskFull:
            # Not even the reserve was enough: the job stays 'running' in the store, and
            # the next command that looks finds its process gone (interrupted, resumable).
            pass
        return summary

    def _record_end(self, summary: dict, c: Committed, rows_warned: int, peak: float) -> None:
        status, error = summary["status"], summary["error"]
        branch_lines = [{"label": t.label, "branch": t.name, **t.stats.__dict__,
                         "seconds": round(clock.stats.seconds, 4)}
                        for t, clock in zip(self.targets, self.write_clocks, strict=True) if t.name]
        self.store.update_job(
            self.job_id, status=status, finished_at=now(), elapsed_s=summary["elapsed_s"],
            peak_rss_mb=peak, rows_read=c.rows_read, rows_loaded=c.rows_loaded,
            rows_rejected=c.rows_rejected, rows_warned=rows_warned, error=error,
            retries=self.retries, phase_stats=phase_table(self.stats) + branch_lines)
        self.store.add_event(self.job_id, f"job.{status}", level="info" if status == JobStatus.SUCCEEDED
                             else "error", error=error)
