"""Resume, rollback and cleanup of jobs.

The destination's ledger is the truth about what a job left behind (ADR 0002); the state
store is reconciled with it before anything else happens.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import UserError
from ..records import ACTIVE, UNFINISHED, JobStatus
from ..spec import load_spec, spec_from_text
from ..store import StateStore
from ..store import replays
from ..store.store import now
from . import extract, manyfiles
from . import destinations
from .plan import decisions_from_events, make_plan
from .replay import CheckpointStream
from .cutter import snapshot_dir
from .figures import PhaseStats, committed_phase_stats
from .runner import Runner


def _job(store: StateStore, ref: str) -> dict:
    store.mark_dead_jobs()
    return store.job(ref)


def _refuse_running(job: dict, action: str) -> None:
    if job["status"] in ACTIVE:
        raise UserError(f"job {job['id']} is {job['status']} (pid {job['pid']}); stop it first "
                        f"(Ctrl-C or kill {job['pid']}: it stays resumable), then {action}")


def _destinations(job: dict) -> list[dict]:
    return job.get("destinations") or []


def _changed(old: dict, new: dict) -> list[str]:
    return [k for k in ("size", "sha256_head_tail", "mtime_ns") if old.get(k) != new.get(k)]


def nothing_to_resume(job: dict) -> str | None:
    """The message when ``job`` succeeded (nothing to do), None when it can be resumed; a
    UserError when it cannot (running, rolled back, abandoned). The console asks too."""
    if job["status"] == JobStatus.SUCCEEDED:
        return f"job {job['id']} already succeeded; nothing to resume"
    _refuse_running(job, "resume it")
    if job["status"] == JobStatus.ROLLED_BACK:
        raise UserError(f"job {job['id']} was rolled back; run the pipeline again for a new job")
    if not job["resumable"]:
        raise UserError(f"job {job['id']} was abandoned by cleanup and cannot be resumed; roll it "
                        "back and run the pipeline again")
    return None


def resume(store: StateStore, ref: str, settings: Settings, *, progress=None, log=None) -> dict:
    """Continue a failed or interrupted job after the last batch its destination committed."""
    job = _job(store, ref)
    message = nothing_to_resume(job)
    if message:
        return {"job_id": job["id"], "status": JobStatus.SUCCEEDED, "nothing_to_do": True,
                "message": message}
    if manyfiles.files_of(job):     # a source of many files: each checked, in its order
        return _resume_many(store, job, settings, progress=progress, log=log)
    source = Path(job["source_path"])
    if not source.is_file():
        raise UserError(f"{source}: the job's source file is gone; it cannot be resumed "
                        f"(roll it back with 'etlconsole rollback {job['id']}')")
    changed = _changed(job["source_fingerprint"] or {}, extract.fingerprint(source))
    if not changed and job["source_digest"] and not extract.same_content(source, job["source_digest"]):
        changed = ["content"]
    if changed:
        raise UserError(f"{source}: changed since job {job['id']} started ({', '.join(changed)} "
                        "differ); resuming would mix two files. Roll the job back and run the "
                        "pipeline again")
    pipeline = Path(job["pipeline_file"] or ".")
    spec = spec_from_text(job["pipeline_toml"], pipeline)
    # The paths the job wrote to (a --dest given at the start); branches name their own.
    dest = _destinations(job)[0]["path"] if len(_destinations(job)) == 1 else None
    plan = make_plan(spec, source=source, dest=dest,
                     decisions=decisions_from_events(store.events(job["id"])))
    return Runner.resume(plan, store, settings, job, progress=progress, log=log).run()


def _resume_many(store: StateStore, job: dict, settings: Settings, *, progress, log) -> dict:
    """``resume`` of a job reading many files: the files it recorded (not the glob again:
    a file added to the drop since is not part of this job), each unchanged."""
    paths = manyfiles.check_present(job)
    spec = spec_from_text(job["pipeline_toml"], Path(job["pipeline_file"] or "."))
    dest = _destinations(job)[0]["path"] if len(_destinations(job)) == 1 else None
    plan = make_plan(spec, source=paths, dest=dest,
                     decisions=decisions_from_events(store.events(job["id"])))
    return Runner.resume(plan, store, settings, job, progress=progress, log=log).run()


ROLLED_BACK_TO = "rolled back to checkpoint"


def _error_after_rollback(job: dict) -> str | None:
    """What the status line of an entirely rolled-back job keeps of its error: the
    failure it had, not the note of an earlier rollback to a checkpoint (no longer true)."""
    error = job["error"]
    if job["status"] == JobStatus.SUCCEEDED or not error or error.startswith(ROLLED_BACK_TO):
        return None
    return error


def _recount_phases(store: StateStore, job: dict, rows_read: int) -> None:
    """After a rollback to a checkpoint, the phase table says what the kept batches hold
    (busy times stay: the work was done)."""
    kept = [p for p in job.get("phase_stats") or [] if isinstance(p, dict)]
    line = [PhaseStats(p["label"], warned=p.get("warned", 0), seconds=p.get("seconds", 0.0))
            for p in kept if not p.get("branch")]
    if not line:
        return
    committed_phase_stats(line, rows_read, store.phase_reject_counts(job["id"]))
    branches = [p for p in kept if p.get("branch")]
    store.update_job(job["id"], phase_stats=[st.to_json() for st in line] + branches)


def rollback(store: StateStore, ref: str, settings: Settings, *, to_checkpoint: int | None = None,
             dry_run: bool = False) -> dict:
    """Undo the job's effect on every destination, entirely or back to a checkpoint."""
    job = _job(store, ref)
    _refuse_running(job, "roll it back")
    if replays.running(store, job["id"]):
        raise UserError(f"job {job['id']}: a replay of its rejects is running; wait for it to end")
    after_batch = None
    checkpoint_data: dict[str, Any] = {}     # of the checkpoint rolled back to
    if to_checkpoint is not None:
        if job["status"] == JobStatus.ROLLED_BACK:
            raise UserError(f"job {job['id']} was rolled back entirely; it has no checkpoints")
        found = store.checkpoint(job["id"], to_checkpoint)
        if found is None:
            raise UserError(f"job {job['id']} has no checkpoint {to_checkpoint} "
                            f"(see 'etlconsole checkpoints {job['id']}')")
        to_checkpoint = found["number"]      # an old store-wide id: reported by its number
        checkpoint_data = found["checkpoint_data"]
        after_batch = checkpoint_data["batch"]
    reports = [destinations.rollback(Path(d["path"]), job["id"], d.get("kind"),
                                     after_batch=after_batch, dry_run=dry_run,
                                     timeout_ms=settings.transaction_timeout_ms).to_dict()
               for d in _destinations(job)]
    summary = {"job_id": job["id"], "dry_run": dry_run, "to_checkpoint": to_checkpoint,
               "destinations": reports,
               "rows": sum(n for r in reports for n in r["rows"].values())}
    if dry_run:
        return summary
    # Every replay's rows went with the job's later batches: their rejects are open again
    # (before the reconcile, which counts them; ADR 0016).
    replays.after_job_rollback(store, job["id"])
    if after_batch is None:
        # The job's figures stay (what it read, loaded and rejected): its status says
        # that it was undone; the rollback's event says how many rows went.
        store.reconcile(job["id"], [], rolled_back_after=0, keep_figures=True)
        store.update_job(job["id"], status=JobStatus.ROLLED_BACK, finished_at=now(),
                         error=_error_after_rollback(job))
        shutil.rmtree(store.path.parent / "jobs" / job["id"], ignore_errors=True)
    else:
        ledger = [e.to_dict() for d in _destinations(job)
                  for e in destinations.committed(Path(d["path"]), job["id"], d.get("kind"))]
        counters = store.reconcile(job["id"], ledger, rolled_back_after=after_batch)
        _recount_phases(store, job, counters["rows_read"])
        # the bytes done are the checkpoint's too (the console's progress bar reads them)
        done = {"bytes_read": checkpoint_data["bytes_read"]} \
            if "bytes_read" in checkpoint_data else {}
        store.update_job(job["id"], status=JobStatus.INTERRUPTED,
                         error=f"{ROLLED_BACK_TO} {to_checkpoint}; resume to continue", **done)
    store.add_event(job["id"], "job.rolled_back", to_checkpoint=to_checkpoint, rows=summary["rows"],
                    batches=sum(r["batches"] for r in reports))
    summary["status"] = store.job(job["id"])["status"]
    return summary


def rerun(store: StateStore, ref: str, from_phase: str, settings: Settings, *, progress=None,
          log=None) -> dict:
    """Re-run the phases after a checkpointed phase, with the pipeline file as it is now,
    from that phase's materialized output, replacing the job's earlier load."""
    job = _job(store, ref)
    _refuse_running(job, "rerun it")
    if job["status"] == JobStatus.ROLLED_BACK:
        raise UserError(f"job {job['id']} was rolled back; its checkpoints are gone")
    pipeline = Path(job["pipeline_file"])
    then = spec_from_text(job["pipeline_toml"], pipeline)
    marked = [(i + 1, p) for i, p in enumerate(then.phases) if p.checkpoint and p.enabled]
    chosen = [i for i, p in marked if from_phase in (str(i), p.type, p.label(i - 1))]
    if not chosen:
        names = ", ".join(p.label(i - 1) for i, p in marked) or "none"
        raise UserError(f"job {job['id']} has no checkpoint of phase {from_phase!r} "
                        f"(checkpointed phases: {names}; mark a phase with checkpoint = true)")
    n = chosen[0]
    first = _destinations(job)[0]       # every destination holds the same batches
    dest = Path(first["path"]) if len(_destinations(job)) == 1 else None
    replayed = replays.batch_numbers(store, job["id"])    # fixed rejects: no checkpoint
    batches = [e.batch for e in destinations.committed(Path(first["path"]), job["id"],
                                                        first.get("kind")) if e.batch not in replayed]
    folder = snapshot_dir(store.path.parent / "jobs" / job["id"], n)
    missing = [b for b in batches if not (folder / f"{b:08d}.arrows").exists()]
    if not batches or missing:
        raise UserError(f"job {job['id']}: the checkpoint of phase {n} is incomplete "
                        f"({len(missing)} of {len(batches)} batches missing); run the pipeline again")
    now_spec = load_spec(pipeline)
    if len(now_spec.phases) <= n:
        raise UserError(f"{pipeline}: has no phases after phase {n} any more")
    labels = {p.label(i) for i, p in enumerate(then.phases) if i < n}
    carried = store.reject_records(job["id"], labels)
    size = (job["source_fingerprint"] or {}).get("size", 0)
    stream = CheckpointStream(folder, batches, carried, size, manyfiles.files_of(job))
    plan = make_plan(now_spec, source=job["source_path"], dest=dest, after_phase=n,
                     input_schema=stream.schema(), dialect=extract.Dialect(**job["dialect"]),
                     decisions=decisions_from_events(store.events(job["id"])))
    runner = Runner.rerun(plan, store, settings, stream=stream, fingerprint=job["source_fingerprint"],
                          parent=job["id"], progress=progress, log=log)
    # The checkpoint moves to the new job before the old job's load (and workspace) goes.
    replay = runner.workspace / f"replay-of-{job['id']}-phase-{n}"
    replay.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(replay))
    stream.files = [replay / f.name for f in stream.files]
    rollback(store, job["id"], settings)
    store.add_event(job["id"], "job.replaced", by=runner.job_id, from_phase=n)
    return runner.run()


def cleanup(store: StateStore, settings: Settings, *, older_than_hours: float | None = None,
            dry_run: bool = False) -> list[dict]:
    """Remove what failed and interrupted jobs left behind past retention, and orphans.

    Never touches the rows of succeeded jobs.
    """
    store.mark_dead_jobs()
    hours = settings.rollback_retention_hours if older_than_hours is None else older_than_hours
    cutoff = (datetime.now(timezone.utc) - timedelta(hours=hours)).isoformat()
    actions: list[dict] = []
    jobs = {j["id"]: j for j in store.jobs(limit=1_000_000)}
    for job in jobs.values():
        when = job["finished_at"] or job["heartbeat_at"] or job["created_at"]
        if job["status"] not in UNFINISHED or when > cutoff:
            continue
        dest = (_destinations(job) or [{}])[0]
        if dest.get("mode", "append") != "append" or dest.get("on_failure") == "rollback":
            # Staged rows never reached the target; partial rows go by the job's policy.
            report = rollback(store, job["id"], settings, dry_run=dry_run)
            actions.append({"job_id": job["id"], "action": "roll back", "rows": report["rows"],
                            "tables": [t for d in report["destinations"] for t in d["dropped"]]})
        elif job["resumable"]:
            # on_failure = "keep": its rows stay, but without its workspace it can no longer
            # be resumed exactly, so it is marked as such.
            actions.append({"job_id": job["id"], "action": "keep partial rows; no longer resumable"})
            if not dry_run:
                store.update_job(job["id"], resumable=0,
                                 error=f"{job['error'] or ''} [abandoned by cleanup: rows kept]".strip())
    paths = {(d["path"], d.get("kind") or "sqlite") for j in jobs.values() for d in _destinations(j)}
    for path, kind in sorted(paths):
        kept = destinations.get(kind)
        for left in kept.leftovers(Path(path)):
            owner = jobs.get(left.job_id)
            orphan = owner is None or (left.what == "stage"
                                       and owner["status"] in (JobStatus.SUCCEEDED, JobStatus.ROLLED_BACK))
            expired = (owner is not None and left.what == "replaced"
                       and owner["status"] == JobStatus.SUCCEEDED and (owner["finished_at"] or "") <= cutoff)
            if orphan or expired:
                actions.append({"job_id": left.job_id, "action": "drop orphaned table" if orphan
                                else "drop expired backup of a replaced table", "path": path,
                                "table": left.name, "kind": kind})
                if not dry_run:
                    kept.remove_leftover(Path(path), left, settings.transaction_timeout_ms)
    workspaces = store.path.parent / "jobs"
    for folder in sorted(workspaces.glob("*")) if workspaces.is_dir() else []:
        owner = jobs.get(folder.name)
        # Workspaces hold unique-key indexes (for resume) and phase checkpoints (for
        # rerun): kept for the retention period, whatever the job's end.
        if owner is None or owner["status"] == JobStatus.ROLLED_BACK or (
                owner["status"] in (JobStatus.SUCCEEDED, *UNFINISHED)
                and (owner["finished_at"] or owner["created_at"]) <= cutoff):
            actions.append({"job_id": folder.name, "action": "remove workspace", "path": str(folder)})
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
    if not dry_run and actions:
        store.add_event(None, "cleanup", actions=len(actions), older_than_hours=hours)
    return actions
