"""Where a job runs (ADR 0026): ``local`` (threads of this process, the default) or ``dask``
(one task per file on a dask.distributed cluster). The pipeline file's ``executor`` key
chooses; ``--executor`` overrides it. A job keeps the executor it started with: resume
runs a Dask job on Dask again (its batch numbers are per part), and refuses to run it
locally.

This package imports Dask nowhere at import time: the engine works without it, and a
job that asks for it without it installed is refused in one line (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...config import Settings
from ...errors import UserError
from ...records import JobStatus
from ...spec import EXECUTORS, load_spec, spec_from_text
from ...store import StateStore
from .. import extract, manyfiles, sources
from ..plan import Plan, decisions_from_events, make_plan
from ..sources import SourceFile
from .cluster import require_dask


def choose(spec_executor: str, option: str | None) -> str:
    name = option or spec_executor or "local"
    if name not in EXECUTORS:
        raise UserError(f"--executor: must be one of {', '.join(EXECUTORS)}, got {name!r}")
    return name


# The split when PIPELINE_PART_SIZE_KB is not set (ADR 0029, amended): a large plain file
# is cut only as far as the workers need parts — PARTS_PER_WORKER each, so that the last
# ones even out the workers' ends, or fewer when the drop is too small for that many
# ranges of AUTO_MIN_PART_BYTES (about a second of one core) — a whole number of parts
# per worker either way, so that the last wave keeps every worker busy. A drop of more
# files than that stays a part per file: a range costs a scan of its file up to its cut
# and its own start and end (8 files of 122 MB on 2 workers in 32 MB ranges: 11% more CPU
# than the same files whole).
PARTS_PER_WORKER = 4
AUTO_MIN_PART_BYTES = 32 << 20


def part_files(plan: Plan, part_bytes: int = 0, ranges: list | None = None, *,
               workers: int | None = None) -> list[SourceFile]:
    """The job's parts in file order: one per file, and a plain file cut into byte ranges
    when its dialect allows it (``sources.splittable``), of equal size, ordered by start:
    ranges of at most ``part_bytes`` (> 0: PIPELINE_PART_SIZE_KB), or (``workers``: the
    cluster's threads, the setting unset) as many as the file holds of the drop's fair
    share of parts (``PARTS_PER_WORKER`` a worker, or as many whole ones as ranges of
    ``AUTO_MIN_PART_BYTES`` allow), none smaller than that. The cut is nominal — each part
    moves its ends onto proven record boundaries when it runs (``sources.resync``); the job
    records it (the ``parts`` event) and a resumed job passes ``ranges``, its recorded
    split (``ranges.split_of``)."""
    files = getattr(plan, "files", None)
    files = list(files) if files else [extract.plain_file(plan.source)]
    if ranges is not None:
        return [files[i] if start == 0 and end is None else files[i].part(start, end)
                for i, start, end in ranges]
    share = 0
    if workers is not None:
        total = sum(f.size for f in files)
        each = min(PARTS_PER_WORKER, max(1, total // (workers * AUTO_MIN_PART_BYTES)))
        share = max(AUTO_MIN_PART_BYTES, -(-total // (workers * each)))
    dialects = plan.dialects or [plan.dialect]
    parts: list[SourceFile] = []
    for f in files:
        d = dialects[f.index] if f.index < len(dialects) else plan.dialect
        if share:
            count = max(1, round(f.size / share))
        else:
            count = -(-f.size // part_bytes) if part_bytes > 0 else 1
        if count == 1 or d.empty or not sources.splittable(f, d.encoding, d.quote, d.delimiter, d.header):
            parts.append(f)
            continue
        step = -(-f.size // count)
        parts += [f.part(a, a + step if a + step < f.size else None) for a in range(0, f.size, step)]
    return parts


def _workers(workers: int | None) -> int:
    if workers is not None and workers < 1:
        raise UserError(f"--workers: must be at least 1, got {workers}")
    return workers or 2


def run_pipeline(pipeline: str | Path, settings: Settings, *, source=None, dest=None,
                 executor: str | None = None, workers: int | None = None,
                 scheduler: str | None = None, progress: Any = None, log: Any = None,
                 on_event: Any = None) -> dict:
    """Plan (every user error surfaces here, before writing), then run on the chosen
    executor; returns the summary."""
    plan = make_plan(load_spec(pipeline), source=source, dest=dest)
    name = choose(plan.spec.executor, executor)
    count = _workers(workers)
    store = StateStore(settings.state_path)
    store.on_event = on_event
    try:
        if name == "local":
            from .local import run_new
            return run_new(plan, store, settings, progress=progress, log=log)
        from . import dask as D
        from ..job import Job
        require_dask()
        job = Job.new(plan, store, settings)
        D.refuse_unsupported(job)
        return D.DaskRun(job, _set_parts(plan, settings), dest=None if dest is None else str(dest),
                         workers=count, scheduler=scheduler, progress=progress, log=log).run()
    finally:
        store.close()


def _set_parts(plan: Plan, settings: Settings) -> list[SourceFile] | None:
    """The parts PIPELINE_PART_SIZE_KB asks for; None when it is unset: the driver cuts
    once it knows the cluster's threads (``DaskRun``)."""
    return None if settings.part_size_kb is None else part_files(plan, settings.part_size_kb << 10)


def recorded_split(events: list[dict]) -> list | None:
    """The split a Dask job's parts were cut by (each part's file index, start and end
    byte): its first ``parts`` event's, or, for a job from before that event, its first
    ``executor`` event's; None if it has neither (stopped before its cluster was up)."""
    for kind in ("parts", "executor"):
        found = next((e["details"]["split"] for e in events
                      if e["event"] == kind and e["details"].get("split") is not None), None)
        if found is not None:
            return found
    return None


def job_executor(store: StateStore, job_id: str) -> str:
    """The executor a job ran on (its ``executor`` event; none: local)."""
    for e in store.events(job_id):
        if e["event"] == "executor":
            return e["details"].get("executor", "local")
    return "local"


def resume(store: StateStore, ref: str, settings: Settings, *, executor: str | None = None,
           workers: int | None = None, scheduler: str | None = None, progress: Any = None,
           log: Any = None) -> dict:
    """Continue a failed or interrupted job on the executor it started with."""
    from ..recovery import _job, nothing_to_resume
    from ..recovery import resume as resume_local
    job = _job(store, ref)
    ran_on = job_executor(store, job["id"])
    if executor == "local" and ran_on == "dask":
        raise UserError(f"job {job['id']} ran on the Dask executor (its batches are numbered per "
                        "file); resume it with --executor dask")
    if executor == "dask" and ran_on == "local":
        raise UserError(f"job {job['id']} ran on the local executor; resume it with --executor local")
    if ran_on == "local":
        return resume_local(store, ref, settings, progress=progress, log=log)
    message = nothing_to_resume(job)
    if message:
        return {"job_id": job["id"], "status": JobStatus.SUCCEEDED, "nothing_to_do": True, "message": message}
    return _resume_dask(store, job, settings, workers=_workers(workers), scheduler=scheduler,
                        progress=progress, log=log)


def _resume_dask(store: StateStore, job: dict, settings: Settings, *, workers: int,
                 scheduler: str | None, progress: Any, log: Any) -> dict:
    from . import dask as D
    from ..job import Job
    require_dask()
    events = store.events(job["id"])
    spec = spec_from_text(job["pipeline_toml"], Path(job["pipeline_file"] or "."))
    dests = job["destinations"] or []
    dest = dests[0]["path"] if len(dests) == 1 else None
    # the files the job recorded, each unchanged (not the glob again: a file added to the
    # drop since is not the job's); the job record keeps their fingerprints (ADR 0025)
    named = _unchanged_files(job)
    plan = make_plan(spec, source=named if len(named) > 1 else named[0], dest=dest,
                     decisions=decisions_from_events(events))
    run = Job.resumed(plan, store, settings, job)
    D.refuse_unsupported(run)
    # the split the job started with, whatever the settings or the cluster say now: the
    # parts recorded as done are those parts. None: the job was stopped before it had
    # one, so before any part ran; it is cut as a new job is.
    split = recorded_split(events)
    parts = part_files(plan, ranges=split) if split is not None else _set_parts(plan, settings)
    return D.DaskRun(run, parts, dest=dest, workers=workers, scheduler=scheduler,
                     done=D.done_parts(store, job["id"]), progress=progress, log=log).run()


def _unchanged_files(job: dict) -> list[str]:
    """The job's files, each there and unchanged (size, mtime, head and tail, as recorded
    when the job started): a re-run part skips the batches the ledger holds of its file,
    with no proof of their bytes kept, so the file must be the one it was. (Stricter than
    a local resume, which proves content: docs/scale-out.md.)"""
    files = manyfiles.files_of(job) or [{"path": job["source_path"], **(job["source_fingerprint"] or {})}]
    for f in files:
        path = Path(f["path"])
        if not path.is_file():
            raise UserError(f"{path}: a source file of job {job['id']} is gone; it cannot be "
                            f"resumed (roll it back with 'etlconsole rollback {job['id']}')")
        now = extract.fingerprint(path)
        changed = [k for k in ("size", "sha256_head_tail", "mtime_ns") if f.get(k) != now.get(k)]
        if changed:
            raise UserError(f"{path}: changed since job {job['id']} started ({', '.join(changed)} "
                            "differ); resuming would mix two versions of the file. Roll the job "
                            "back and run the pipeline again")
    return [str(f["path"]) for f in files]
