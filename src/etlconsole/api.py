"""The library facade: what a job can be asked to do, and what can be read about it.

The CLI (option parsing and rendering only) and the console call these functions, and get
typed records back (``etlconsole.records``): neither reaches into the engine's modules or
builds its output from the store's rows itself, so a change of the engine (a new
executor, a new destination) stops here. User errors are ``UserError`` (one line, exit 2);
a job's own failure is in its summary's status.

Functions that act on a store take the ``StateStore`` the caller opened (the CLI sets its
event log on it; the console gives each worker thread its own connection).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings
from .errors import UserError
from .records import (Batch, Checkpoint, CleanupAction, FixFile, Job, JobDetails, Reject,
                      ReplaySummary, RollbackSummary, RunSummary, Segment, named, set_destination_namer,
                      write_rejects_csv)
from .spec import load_spec
from .store import StateStore
from .store import replays as store_replays

if TYPE_CHECKING:   # at run time through __getattr__: the CLI's commands need not load them
    from .engine.fixes import EXTRA, FixRow, dialect_of, reason_text, rows_for  # noqa: F401

_FIX_FILE_HELPERS = frozenset({"EXTRA", "FixRow", "dialect_of", "reason_text", "rows_for"})

def _destination_named(record: Mapping[str, Any], table: str | None) -> tuple[str, str | None]:
    """The engine's names for recorded destinations (postgres://host/db schema.table)."""
    from .engine.destinations import named as engine_named
    return engine_named(record, table)


set_destination_namer(_destination_named)

def __getattr__(name: str) -> Any:
    """The fix-file helpers the console's reject editor uses, imported when first asked."""
    if name in _FIX_FILE_HELPERS:
        from .engine import fixes
        return getattr(fixes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["JobDetails", "batches", "check", "checkpoints", "cleanup", "compressed_suffixes",
           "export_rejects", "find", "job", "jobs", "open_rejects", "phase_types", "plan_pipeline",
           "rejects", "replay", "replays", "rerun", "resume", "resume_check", "rollback",
           "rollback_summary", "run", "show", "write_fix_file", "named",
           # the rows of a fix file, as the console's reject editor builds them
           "EXTRA", "FixRow", "dialect_of", "reason_text", "rows_for",
           # the console's polled reads
           "StateStore", "job_by_pid", "job_row", "jobs_changed_since", "recent_jobs",
           "mark_dead_jobs", "metrics_since", "open_store", "recent_batches",
           "recent_checkpoints", "recent_events", "reject_groups", "reject_rows",
           "store_changed_since",
           # what a job of many files (ADR 0025) and a Dask job (ADR 0026) add to its views
           "file_lines", "file_locator", "batch_files", "latest_workers"]


# -- running ---------------------------------------------------------------------------
def compressed_suffixes() -> tuple[str, ...]:
    """The name endings the engine reads a source file as compressed by (``.gz`` …)."""
    from .engine.sources import COMPRESSED_SUFFIXES
    return COMPRESSED_SUFFIXES


def plan_pipeline(pipeline: str | Path, *, source=None, dest=None):
    """The plan of a pipeline file (every user error surfaces here, before any write)."""
    from .engine.plan import make_plan
    return make_plan(load_spec(pipeline), source=source, dest=dest)


def run(pipeline: str | Path, settings: Settings, *, source=None, dest=None, progress=None,
        log=None, on_event: Callable[..., None] | None = None, executor: str | None = None,
        workers: int | None = None, scheduler: str | None = None) -> RunSummary:
    """Plan, then run ``pipeline`` as a new job on its executor (``executor`` overrides the
    pipeline's; ADR 0026). ``on_event``: called with every event the job records
    (``StateStore.on_event``)."""
    from .engine.executors import run_pipeline
    return RunSummary.from_dict(run_pipeline(
        pipeline, settings, source=source, dest=dest, progress=progress, log=log,
        on_event=on_event, executor=executor, workers=workers, scheduler=scheduler))


def resume_check(store: StateStore, ref: str) -> tuple[Job, str | None]:
    """The job ``ref`` and, when it succeeded, why there is nothing to resume; a
    ``UserError`` when it cannot be resumed (running, rolled back, abandoned)."""
    from .engine.recovery import nothing_to_resume
    found = job(store, ref)
    return found, nothing_to_resume(found.as_dict())


def resume(store: StateStore, ref: str, settings: Settings, *, progress=None, log=None,
           executor: str | None = None, workers: int | None = None,
           scheduler: str | None = None) -> RunSummary:
    """Continue a failed or interrupted job after the last batch its destination committed
    (a Dask job on Dask again: ADR 0026)."""
    from .engine.executors import resume as resume_job
    return RunSummary.from_dict(resume_job(store, ref, settings, progress=progress, log=log,
                                           executor=executor, workers=workers,
                                           scheduler=scheduler))


def rerun(store: StateStore, ref: str, from_phase: str, settings: Settings, *, progress=None,
          log=None) -> RunSummary:
    """Re-run a job's phases after a checkpointed phase, as a new job replacing its load."""
    from .engine.recovery import rerun as rerun_job
    return RunSummary.from_dict(rerun_job(store, ref, from_phase, settings, progress=progress,
                                          log=log))


def check(pipeline: str | Path, settings: Settings, *, source=None):
    """Plan ``pipeline`` and check each destination as a job would before writing
    (reachable, writable, its table compatible); nothing is written. Returns the plan."""
    from .engine import destinations
    plan = plan_pipeline(pipeline, source=source)
    targets = [(b.load, b.destination_path, b.output_schema) for b in plan.branches]
    if not targets:
        assert plan.load is not None and plan.destination_path is not None
        targets = [(plan.load, plan.destination_path, plan.output_schema)]
    for load, path, schema in targets:
        destination = destinations.open_destination(load, path, "check", settings)
        try:
            destination.check(schema)
        finally:
            destination.close()     # a session the check kept for an open that never comes
    return plan


# -- recovery ----------------------------------------------------------------------------
def _table_kinds(reports: list[dict[str, Any]]) -> set[str | None]:
    """The kinds among ``reports`` whose destinations hold tables (an unknown kind, from a
    report made before the registry, holds files; None is the default kind)."""
    from .engine import destinations
    kinds: set[str | None] = set()
    for r in reports:
        try:
            if destinations.get(r.get("kind")).has_tables:
                kinds.add(r.get("kind"))
        except UserError:
            pass
    return kinds


def rollback(store: StateStore, ref: str, settings: Settings, *, to_checkpoint: int | None = None,
             replay: int | None = None, dry_run: bool = False) -> RollbackSummary:
    """Undo one replay (``replay``), or the job entirely or back to ``to_checkpoint``;
    ``dry_run`` only says what would go."""
    if replay is not None and to_checkpoint is not None:
        raise UserError("--replay and --to are exclusive: undo one replay, or the job back to a "
                        "checkpoint")
    if replay is not None:
        from .engine.replaying import rollback_replay
        r = rollback_replay(store, ref, replay, settings, dry_run=dry_run)
    else:
        from .engine.recovery import rollback as rollback_job
        r = rollback_job(store, ref, settings, to_checkpoint=to_checkpoint, dry_run=dry_run)
    return rollback_summary(r)


def cleanup(store: StateStore, settings: Settings, *, older_than_hours: float | None = None,
            dry_run: bool = False) -> list[CleanupAction]:
    """Remove (or, ``dry_run``, list) what failed jobs left past retention, and orphans."""
    from .engine.recovery import cleanup as cleanup_jobs
    return [CleanupAction(a["job_id"], a["action"], a.get("path"), a.get("table"), a.get("rows"),
                          tuple(a["tables"]) if "tables" in a else None, a.get("kind"))
            for a in cleanup_jobs(store, settings, older_than_hours=older_than_hours,
                                  dry_run=dry_run)]


# -- reading -------------------------------------------------------------------------------
def jobs(store: StateStore, limit: int = 100) -> list[Job]:
    """The most recent jobs, newest first (dead engines' jobs shown interrupted)."""
    store.mark_dead_jobs()
    return [Job.from_row(r) for r in store.jobs(limit)]


def job(store: StateStore, ref: str) -> Job:
    """A job by id, unique id prefix, or 'last'."""
    store.mark_dead_jobs()
    return Job.from_row(store.job(ref))


def find(store: StateStore, ref: str) -> Job:
    """A job by id, unique id prefix, or 'last', as the store holds it (no look for dead
    engines: what the read-only listings of a job's parts need)."""
    return Job.from_row(store.job(ref))


def show(store: StateStore, ref: str, *, every_file: bool = False) -> JobDetails:
    from .engine import manyfiles
    from .engine.plan import decisions_from_events
    j = job(store, ref)
    events = store.events(j.id)
    metrics = store.metrics(j.id, limit=2000)
    segments = store.segments(j.id)
    return JobDetails(
        job=j, skipped=[e["details"].get("reason") for e in events if e["event"] == "phase.skipped"],
        conditions=list(decisions_from_events(events).values()),
        replays=store_replays.replays(store, j.id), checkpoints=store.checkpoints(j.id),
        events=events, segments=[Segment.from_row(g) for g in segments], segment_rows=segments,
        batches=len(store.batches(j.id)), rss_samples=[m["rss_mb"] for m in metrics],
        rate_samples=[m["rows_per_s"] for m in metrics],
        file_lines=manyfiles.file_lines(j.as_dict(), every=every_file))


def file_locator(j: Job) -> Callable[[int | None], dict[str, Any]]:
    """For a job of many files: record number -> ``{"file", "file_record"}`` (what the
    listings' JSON adds); for one file ``{}`` (its record numbers are the file's)."""
    from .engine import manyfiles
    return manyfiles.file_locator(manyfiles.files_of(j.as_dict()))


def file_count(j: Job) -> int:
    """How many files the job reads (0 for a job of one file)."""
    from .engine import manyfiles
    return len(manyfiles.files_of(j.as_dict()))


def file_lines(j: Job) -> list[str]:
    """``show``'s lines of a job of many files (each file, its size and its records; of a
    large drop the first and last few and where reading is; none for a job of one file),
    from the job's record alone."""
    from .engine import manyfiles
    return manyfiles.file_lines(j.as_dict())


def _execution(store: StateStore, job_id: str) -> dict[str, Any]:
    """The details of the job's ``executor`` event — the executor — and on Dask ``split``,
    each part's [file index, start byte, end byte or None] (ADR 0029): its ``parts``
    event's, or the ``executor`` event's of a job from before that event."""
    event = store.latest_event(job_id, "executor")      # not every event of a long job
    details = dict(event["details"]) if event else {}
    cut = store.latest_event(job_id, "parts")
    if cut and cut["details"].get("split") is not None:
        details["split"] = cut["details"]["split"]
    return details


def _part_paths(store: StateStore, j: Job) -> list[str] | None:
    """A Dask job's parts -> the path of each one's file (a part is a file, or a byte
    range of one); None for a local job."""
    from .engine import manyfiles
    details = _execution(store, j.id)
    if details.get("executor") != "dask":
        return None
    files = manyfiles.files_of(j.as_dict())
    paths = [f["path"] for f in files] if files else [j.source_path]
    split = details.get("split") or [[i, 0, None] for i in range(len(paths))]   # before ranges
    return [paths[index] if 0 <= index < len(paths) else "?" for index, *_ in split]


def batch_files(store: StateStore, j: Job) -> Callable[[Batch], tuple[int | None, str] | None]:
    """batch -> (its part, its file) for a job of parts or of many files: on Dask the part
    from the batch number (part p's batches are numbered from p*1,000,000+1) and its file
    from the split the job recorded; on the local executor None as the part (a batch never
    spans files: its last record says which); None for a local job of one file."""
    from .engine import manyfiles
    from .engine.executors.parts import PART_STRIDE
    parts = _part_paths(store, j)
    if parts is not None:
        def of_part(b: Batch) -> tuple[int | None, str] | None:
            part = (b.number - 1) // PART_STRIDE
            return (part, parts[part]) if 0 <= part < len(parts) else None
        return of_part
    files = manyfiles.files_of(j.as_dict())
    if not files:
        return lambda b: None
    locate = manyfiles.locator(files)

    def of_row(b: Batch) -> tuple[int | None, str] | None:
        found = locate(b.row_end)
        return (None, found[0]) if found else None
    return of_row


def latest_workers(store: StateStore, j: Job) -> list[dict[str, Any]] | None:
    """The Dask workers' figures of the job's latest ``workers`` event (every two seconds
    while it runs), each with ``file``: the path of the part it streams; None when the
    job recorded none (a local job)."""
    event = store.latest_event(j.id, "workers")
    if event is None:
        return None
    parts = _part_paths(store, j) or []
    out = []
    for w in event["details"].get("workers") or []:
        part = w.get("part")
        path = parts[part] if isinstance(part, int) and 0 <= part < len(parts) else None
        out.append({**w, "file": path, "at": event["at"]})
    return out


def checkpoints(store: StateStore, ref: str) -> tuple[Job, list[Checkpoint]]:
    j = find(store, ref)
    return j, [Checkpoint.from_row(r) for r in store.checkpoints(j.id)]


def batches(store: StateStore, ref: str) -> tuple[Job, list[Batch]]:
    j = find(store, ref)
    return j, [Batch.from_row(r) for r in store.batches(j.id)]


def rejects(store: StateStore, job_id: str) -> Iterator[Reject]:
    """The job's rejected rows in record order, each with the replay that resolved it."""
    resolved = store_replays.resolutions(store, job_id)
    for r in store.rejects(job_id):
        by, at = resolved.get(r["row"], (None, None))
        yield Reject.from_row(r).resolved(by, at)


def export_rejects(store: StateStore, job_id: str, path: Path) -> int:
    """The job's rejects as a CSV file (the CLI's ``--csv`` and the console's export)."""
    return write_rejects_csv((Reject.from_row(r) for r in store.rejects(job_id)), path)


def open_rejects(store: StateStore, job_id: str) -> list[dict[str, Any]]:
    """Rejects no replay has loaded (what a fix file and a replay take)."""
    return store_replays.open_rejects(store, job_id)


def write_fix_file(store: StateStore, job_id: str, path: Path) -> FixFile:
    """The job's open rejects as the source had them, to fix and replay."""
    from .engine.fixes import write_fix_file as write
    done = write(store.job(job_id), open_rejects(store, job_id), path)
    return FixFile(job_id, path, done["rows"], done["raw"], done["unnumbered"], done["note"])


def replays(store: StateStore, job_id: str) -> list[dict[str, Any]]:
    """The job's replays, in order."""
    return store_replays.replays(store, job_id)


def replay(store: StateStore, ref: str, settings: Settings, *, fix_file: Path | None = None,
           sets: tuple[str, ...] = (), where: str | None = None,
           dry_run: bool = False) -> ReplaySummary:
    """Replay a job's fixed rejects through its recorded pipeline, as part of the job."""
    from .engine.replaying import replay as replay_job
    return ReplaySummary.from_dict(replay_job(store, ref, settings, fix_file=fix_file, sets=sets,
                                              where=where, dry_run=dry_run))


def phase_types() -> list[tuple[str, str, str, Any, str | None]]:
    """The registered phase types, built-in and plugins, sorted by name: (name, ref,
    origin, the class or None, the error that kept it from loading or None)."""
    from .engine.phases import available, resolve
    from .errors import SpecError
    out: list[tuple[str, str, str, Any, str | None]] = []
    for name, (ref, origin) in sorted(available().items()):
        try:
            out.append((name, ref, origin, resolve(name), None))
        except SpecError as exc:
            out.append((name, ref, origin, None, exc.detail))
    return out


def rollback_summary(r: dict[str, Any]) -> RollbackSummary:
    """A rollback's summary from its JSON (``rollback --json``: what the console reads of
    the rollback it ran in a subprocess)."""
    return RollbackSummary.from_dict(r, _table_kinds(r["destinations"]))


# -- the console's polled reads ------------------------------------------------------------
# Small, bounded queries the console's screens poll (ADR 0008): rows as the store holds
# them, read through here so that the console's way to its data is this module alone.
def open_store(path: str | Path, *, readonly: bool = False) -> StateStore:
    """A connection to the state store at ``path`` (one per thread)."""
    return StateStore(path, readonly=readonly)


def store_changed_since(store: StateStore) -> int:
    """A number that changes when another connection committed (PRAGMA data_version)."""
    return store.data_version()


def mark_dead_jobs(store: StateStore) -> list[str]:
    """Jobs whose engine process is gone become interrupted; returns their ids."""
    return store.mark_dead_jobs()


def job_row(store: StateStore, ref: str) -> dict[str, Any]:
    """A job's row by id, unique prefix or 'last' (the rejects screen's job)."""
    return store.job(ref)


def job_by_pid(store: StateStore, pid: int) -> Job | None:
    """The most recent job run by process ``pid`` (the job the console launched)."""
    row = store.job_by_pid(pid)
    return Job.from_row(row) if row is not None else None


def recent_jobs(store: StateStore, limit: int) -> list[Job]:
    """The ``limit`` most recent jobs, newest first (no look for dead engines)."""
    return [Job.from_row(r) for r in store.jobs(limit)]


def jobs_changed_since(store: StateStore, stamp: str | None, limit: int) -> list[Job]:
    """Jobs written at or after ``stamp`` (every job, up to ``limit``, when None)."""
    return [Job.from_row(r) for r in store.jobs_changed_since(stamp, limit)]


def recent_batches(store: StateStore, job_id: str, limit: int) -> list[Batch]:
    """The job's last ``limit`` batches, in batch order."""
    return [Batch.from_row(r) for r in store.recent_batches(job_id, limit)]


def recent_checkpoints(store: StateStore, job_id: str, limit: int) -> list[Checkpoint]:
    """The job's last ``limit`` checkpoints, oldest first."""
    return [Checkpoint.from_row(r) for r in store.recent_checkpoints(job_id, limit)]


def metrics_since(store: StateStore, job_id: str, after_id: int, limit: int) -> list[dict[str, Any]]:
    return store.metrics_since(job_id, after_id, limit)


def recent_events(store: StateStore, job_id: str, limit: int) -> list[dict[str, Any]]:
    return store.recent_events(job_id, limit)


def reject_groups(store: StateStore, job_id: str) -> list[dict[str, Any]]:
    return store.reject_groups(job_id)


def reject_rows(store: StateStore, job_id: str, **page: Any) -> list[dict[str, Any]]:
    """One page of rejected rows (``StateStore.reject_rows``'s options)."""
    return store.reject_rows(job_id, **page)
