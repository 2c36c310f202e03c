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
from ...spec import EXECUTORS, load_spec, spec_from_text
from ...store import StateStore
from .. import extract
from ..plan import Plan, decisions_from_events, make_plan
from ..sources import SourceFile


def choose(spec_executor: str, option: str | None) -> str:
    name = option or spec_executor or "local"
    if name not in EXECUTORS:
        raise UserError(f"--executor: must be one of {', '.join(EXECUTORS)}, got {name!r}")
    return name


def part_files(plan: Plan) -> list[SourceFile]:
    """The job's files in their stated order (sorted paths): one part each."""
    files = getattr(plan, "files", None)
    return list(files) if files else [extract.plain_file(plan.source)]


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
        D.require_dask()
        job = Job.new(plan, store, settings)
        D.refuse_unsupported(job)
        return D.DaskRun(job, part_files(plan), dest=None if dest is None else str(dest),
                         workers=count, scheduler=scheduler, progress=progress, log=log).run()
    finally:
        store.close()


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
        return {"job_id": job["id"], "status": "succeeded", "nothing_to_do": True, "message": message}
    return _resume_dask(store, job, settings, workers=_workers(workers), scheduler=scheduler,
                        progress=progress, log=log)


def _resume_dask(store: StateStore, job: dict, settings: Settings, *, workers: int,
                 scheduler: str | None, progress: Any, log: Any) -> dict:
    from . import dask as D
    from ..job import Job
    D.require_dask()
    events = store.events(job["id"])
    started = next(e["details"] for e in events if e["event"] == "executor")
    spec = spec_from_text(job["pipeline_toml"], Path(job["pipeline_file"] or "."))
    dests = job["destinations"] or []
    dest = dests[0]["path"] if len(dests) == 1 else None
    parts = [SourceFile(Path(p["path"]), p["index"], p["compression"], p["size"])
             for p in started["parts"]]
    _prove_parts(job["id"], parts, started.get("fingerprints") or [])
    # the files the job recorded (not the glob again: a file added since is not the job's)
    named = [str(f.path) for f in parts]
    plan = make_plan(spec, source=named if len(named) > 1 else named[0], dest=dest,
                     decisions=decisions_from_events(events))
    run = Job.resumed(plan, store, settings, job)
    D.refuse_unsupported(run)
    return D.DaskRun(run, parts, dest=dest, workers=workers, scheduler=scheduler,
                     done=D.done_parts(store, job["id"]), progress=progress, log=log).run()


def _prove_parts(job_id: str, parts: list[SourceFile], fingerprints: list[dict]) -> None:
    """Every file of the job is still there, unchanged (size, mtime, head and tail):
    resume skips what the ledger holds of each, so each must be the file it was."""
    for f, before in zip(parts, fingerprints, strict=False):
        if not f.path.is_file():
            raise UserError(f"{f.path}: a file of job {job_id} is gone; it cannot be resumed "
                            f"(roll it back with 'etlconsole rollback {job_id}')")
        now = extract.fingerprint(f.path)
        changed = [k for k in ("size", "sha256_head_tail", "mtime_ns") if before.get(k) != now.get(k)]
        if changed:
            raise UserError(f"{f.path}: changed since job {job_id} started ({', '.join(changed)} "
                            "differ); resuming would mix two files. Roll the job back and run "
                            "the pipeline again")
