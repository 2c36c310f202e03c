"""Command line: a thin layer over the library. User errors print one line, exit 2."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import click

from . import __version__, config, interrupts, logs
from .errors import UserError
from .progress import ProgressLine, fmt_duration

EXIT_FOR_STATUS = {"succeeded": 0}


class Context:
    def __init__(self, state: str | None, log_format: str):
        self.state, self.log_format = state, log_format

    def progress_line(self) -> ProgressLine:
        """The headless progress: a line on stderr, or JSON log events with --log-format json."""
        return ProgressLine(log=logs.get() if self.log_format == "json" else None)

    def settings(self) -> config.Settings:
        return config.load_settings(state_db=self.state)

    def store(self, *, readonly: bool = False):
        """The state store; ``readonly`` for commands that only read (no write of any kind,
        so a store on read-only media or without write permission can be read)."""
        from .store import StateStore
        path = self.settings().state_path
        store = StateStore(path, readonly=readonly)
        store.on_event = self.event_log()
        return store

    def event_log(self):
        """With --log-format json every event a job records is a log line too (ADR 0019)."""
        return logs.job_event if self.log_format == "json" else None


class Group(click.Group):
    """Turns UserError into one line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:    # `etlconsole rejects JOB | head`: the reader has enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except Exception as exc:   # a bug: one line, the traceback only when asked for
            if os.environ.get("ETLCONSOLE_DEBUG"):
                raise
            click.echo(f"internal error: {type(exc).__name__}: {exc} "
                       "(set ETLCONSOLE_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, default=str, ensure_ascii=False))


def _console_wanted(no_ui: bool, as_json: bool = False) -> bool:
    """The console opens on a terminal unless --no-ui (or --json: output for a program)."""
    return not no_ui and not as_json and sys.stdout.isatty() and sys.stdin.isatty()


def _open_console(obj: "Context", **options) -> int:
    """Open the Textual console (imported only here: the headless path never loads it)."""
    from .ui import run_console
    settings = obj.settings()
    return run_console(settings.state_path, settings=settings, **options)


@click.group(cls=Group, invoke_without_command=True,
             epilog="Environment: " + ", ".join(config.ENV_VARS))
@click.option("--state", envvar="PIPELINE_STATE_DB", metavar="PATH",
              help="State store (default .etlconsole/state.db; env PIPELINE_STATE_DB).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Log lines on stderr: human text or JSON lines.")
@click.version_option(__version__, prog_name="etlconsole")
@click.pass_context
def main(ctx, state, log_format):
    """etlconsole: import CSV files into databases, crash-safe and in flat memory."""
    interrupts.install()      # SIGTERM as Ctrl-C: the runner marks the job interrupted
    logs.configure(log_format)
    ctx.obj = Context(state, log_format)
    if ctx.invoked_subcommand is None:
        if _console_wanted(False):
            sys.exit(_open_console(ctx.obj))
        click.echo(ctx.get_help())


# -- run ----------------------------------------------------------------------------
def _run_and_report(obj: Context, pipeline, source, dest, as_json: bool, **executor) -> int:
    from .engine.executors import run_pipeline
    settings = obj.settings()
    summary = run_pipeline(pipeline, settings, source=source, dest=dest,
                           progress=obj.progress_line(), log=logs.get(),
                           on_event=obj.event_log(), **executor)
    return _report(summary, as_json)


def _executor_options(f):
    """--executor, --workers, --scheduler (run and resume; ADR 0026)."""
    f = click.option("--scheduler", metavar="ADDRESS",
                     help="Dask: run on this scheduler (default: a local cluster for the job).")(f)
    f = click.option("--workers", type=int, metavar="N",
                     help="Dask: worker processes of the local cluster (default 2).")(f)
    return click.option("--executor", type=click.Choice(["local", "dask"]),
                        help="Where the job runs (default: the pipeline's executor, else local).")(f)


def _report(summary: dict, as_json: bool) -> int:
    if as_json:
        _echo_json(summary)
    else:
        _print_summary(summary)
    if summary["status"] != "succeeded":
        click.echo(f"error: job {summary['job_id']} {summary['status']}: {summary['error']}", err=True)
    return EXIT_FOR_STATUS.get(summary["status"], 1)


def _print_summary(s: dict) -> None:
    dest = s["destination"]
    click.echo(f"job {s['job_id']} {s['status']} in {s['elapsed_s']:.2f}s")
    click.echo(f"  rows read      {s['rows_read']:>12,}")
    where = f" (table {dest['table']})" if dest.get("table") else f" ({dest.get('kind')})"
    click.echo(f"  rows loaded    {s['rows_loaded']:>12,}  -> {dest['path']}{where}")
    if s.get("rows_staged"):
        click.echo(f"  rows staged    {s['rows_staged']:>12,}  (not published: resume to publish them)")
    click.echo(f"  rows rejected  {s['rows_rejected']:>12,}")
    if s.get("rows_warned"):
        click.echo(f"  rows warned    {s['rows_warned']:>12,}")
    click.echo(f"  throughput     {s['rows_per_s'] or 0:>12,.0f} rows/s, peak RSS {s['peak_rss_mb']:.0f} MB, "
               f"retries {s['retries']}")


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--no-ui", is_flag=True, help="Run headless, also on a terminal (no console).")
@click.option("--json", "as_json", is_flag=True, help="End stdout with the summary as one JSON object.")
@click.option("--source", type=click.Path(path_type=Path), multiple=True,
              help="Read this CSV (a file, a quoted glob or a directory; repeatable) instead "
                   "of [source].path.")
@click.option("--dest", type=str, help="Load into this file instead of the load phase's path "
              "(postgres: this URL instead of its url).")
@_executor_options
@click.pass_obj
def run(obj: Context, pipeline, no_ui, as_json, source, dest, executor, workers, scheduler):
    """Run PIPELINE (a TOML pipeline file) as a new job (on a terminal: in the console)."""
    source = _sources(source)
    if isinstance(source, list) and _console_wanted(no_ui, as_json):
        raise UserError("--source given more than once: run it with --no-ui (the console "
                        "takes one source)")
    if (executor or workers or scheduler) and _console_wanted(no_ui, as_json):
        raise UserError("--executor, --workers, --scheduler: run it with --no-ui (the console "
                        "runs the pipeline file's executor)")
    if _console_wanted(no_ui, as_json):
        from .jobs import plan_pipeline
        plan_pipeline(pipeline, source=source, dest=dest)   # user errors: one line, exit 2
        sys.exit(_open_console(obj, pipeline=pipeline,
                               run={"pipeline": pipeline, "source": source, "dest": dest}))
    sys.exit(_run_and_report(obj, pipeline, source, dest, as_json, executor=executor,
                             workers=workers, scheduler=scheduler))


@main.command()
@click.argument("job")
@click.option("--no-ui", is_flag=True, help="Run headless, also on a terminal (no console).")
@click.option("--json", "as_json", is_flag=True, help="End stdout with the summary as one JSON object.")
@_executor_options
@click.pass_obj
def resume(obj: Context, job, no_ui, as_json, executor, workers, scheduler):
    """Continue a failed or interrupted JOB after the last batch its destination committed."""
    from .engine.executors import resume as resume_job
    from .engine.recovery import nothing_to_resume
    if _console_wanted(no_ui, as_json):
        store = obj.store()
        store.mark_dead_jobs()
        found = store.job(job)
        message = nothing_to_resume(found)    # refusals: one line, exit 2, no console
        if message:
            click.echo(message)
            sys.exit(0)
        sys.exit(_open_console(obj, resume=found["id"]))
    summary = resume_job(obj.store(), job, obj.settings(), progress=obj.progress_line(), log=logs.get(),
                         executor=executor, workers=workers, scheduler=scheduler)
    if summary.get("nothing_to_do"):
        if as_json:
            _echo_json(summary)
        else:
            click.echo(summary["message"])
        sys.exit(0)
    sys.exit(_report(summary, as_json))


@main.command()
@click.argument("job")
@click.option("--to", "to_checkpoint", type=int, metavar="CHECKPOINT",
              help="Keep what the job had loaded at this checkpoint: its number in the job "
                   "(1, 2, 3 ..., see 'checkpoints JOB'; an older store-wide id is accepted "
                   "when it is not also one of the job's numbers).")
@click.option("--replay", "replay_number", type=int, metavar="N",
              help="Undo only replay N of the job (see 'show JOB'): its rows go, its rejects are open again.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def rollback(obj: Context, job, to_checkpoint, replay_number, yes, dry_run, as_json):
    """Undo JOB's effect on every destination (entirely, or back to a checkpoint)."""
    from .engine.recovery import rollback as rollback_job
    store, settings = obj.store(), obj.settings()
    if replay_number is not None and to_checkpoint is not None:
        raise UserError("--replay and --to are exclusive: undo one replay, or the job back to a "
                        "checkpoint")

    def undo(dry_run: bool = False) -> dict:
        """One replay (--replay), or the job (entirely, or back to --to)."""
        if replay_number is not None:
            from .engine.replaying import rollback_replay
            return rollback_replay(store, job, replay_number, settings, dry_run=dry_run)
        return rollback_job(store, job, settings, to_checkpoint=to_checkpoint, dry_run=dry_run)
    preview = undo(dry_run=True)
    if dry_run or not yes:
        _print_rollback(preview, as_json)
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UserError("rollback needs --yes when not run from a terminal (or use --dry-run)")
        click.confirm("Roll back?", abort=True)
    _print_rollback(undo(), as_json)


def _print_rollback(r: dict, as_json: bool) -> None:
    from .engine.recovery import rollback_lines
    if as_json:
        _echo_json(r)
        return
    verb = "would remove" if r["dry_run"] else "removed"
    target = f" back to checkpoint {r['to_checkpoint']}" if r["to_checkpoint"] else ""
    if r.get("replay"):
        target = f", replay {r['replay']}"
    click.echo(f"rollback of job {r['job_id']}{target}: {verb} {r['rows']:,} rows")
    for line in rollback_lines(r):
        click.echo(f"  {line}")
    if not r["dry_run"]:
        click.echo(f"  job status: {r['status']}")


@main.command()
@click.argument("job")
@click.option("--from", "from_phase", required=True, metavar="PHASE",
              help="A phase marked checkpoint = true: its number in the pipeline file or its type.")
@click.option("--no-ui", is_flag=True, help="Run headless, also on a terminal (no console).")
@click.option("--json", "as_json", is_flag=True, help="End stdout with the summary as one JSON object.")
@click.pass_obj
def rerun(obj: Context, job, from_phase, no_ui, as_json):
    """Re-run JOB's phases after a checkpointed phase with the pipeline file as it is now,
    without reading the source again; replaces the job's earlier load."""
    from .engine.recovery import rerun as rerun_job
    summary = rerun_job(obj.store(), job, from_phase, obj.settings(), progress=obj.progress_line(),
                        log=logs.get())
    sys.exit(_report(summary, as_json))


@main.command()
@click.option("--older-than", "hours", type=float, metavar="HOURS",
              help="Age limit (default PIPELINE_ROLLBACK_RETENTION_HOURS).")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def cleanup(obj: Context, hours, dry_run, as_json):
    """Remove staging data and workspaces left by failed jobs, and orphans."""
    from .engine.recovery import cleanup as cleanup_jobs
    actions = cleanup_jobs(obj.store(), obj.settings(), older_than_hours=hours, dry_run=dry_run)
    for a in actions:
        if as_json:
            _echo_json(a)
        else:
            where = f" {a.get('path', '')} {a.get('table', '')}".rstrip()
            click.echo(f"{'would ' if dry_run else ''}{a['action']}: job {a['job_id']}{where}")
    if not actions and not as_json:
        click.echo("nothing to clean up")


# -- history ------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one job per line.")
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def jobs(obj: Context, as_json, limit):
    """List jobs, most recent first."""
    store = obj.store(readonly=True)
    store.mark_dead_jobs()
    rows = store.jobs(limit)
    if as_json:
        for r in rows:
            _echo_json(_job_public(r))
        return
    if not rows:
        click.echo(f"no jobs yet in {store.path}")
        return
    click.echo(f"{'JOB':<9} {'PIPELINE':<16} {'STATUS':<12} {'READ':>11} {'LOADED':>11} "
               f"{'REJECTED':>9} {'STARTED':<20} {'TIME':>7}")
    for r in rows:
        click.echo(f"{r['id']:<9} {r['pipeline_name'][:16]:<16} {r['status']:<12} {r['rows_read']:>11,} "
                   f"{r['rows_loaded']:>11,} {r['rows_rejected']:>9,} {(r['started_at'] or '')[:19]:<20} "
                   f"{fmt_duration(r['elapsed_s']):>7}")


def _job_public(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in ("pipeline_toml",)}


@main.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show(obj: Context, job, as_json):
    """Details of JOB (an id, an id prefix, or 'last')."""
    store = obj.store(readonly=True)
    store.mark_dead_jobs()
    j = store.job(job)
    checkpoints, events = store.checkpoints(j["id"]), store.events(j["id"])
    metrics = store.metrics(j["id"], limit=2000)
    skipped = [e["details"].get("reason") for e in events if e["event"] == "phase.skipped"]
    from .engine.plan import decisions_from_events
    conditions = list(decisions_from_events(events).values())
    from .store.replays import replays as job_replays
    replays = job_replays(store, j["id"])
    if as_json:
        _echo_json({**_job_public(j), "skipped": skipped, "conditions": conditions,
                    "replays": replays,
                    "checkpoints": checkpoints, "events": events,
                    "segments": store.segments(j["id"]),
                    "batches": len(store.batches(j["id"])),
                    "metrics": {"samples": len(metrics),
                                "max_rss_mb": max((m["rss_mb"] for m in metrics), default=None),
                                "max_rows_per_s": max((m["rows_per_s"] for m in metrics), default=None)}})
        return
    click.echo(f"job {j['id']}  {j['status']}  pipeline {j['pipeline_name']} ({j['pipeline_file']})")
    click.echo(f"  source     {j['source_path']}  ({j['bytes_total'] or 0:,} bytes)")
    from .engine import manyfiles
    for line in manyfiles.file_lines(j):       # a source of many files: each of them
        click.echo(f"    file     {line}")
    for d in j["destinations"] or []:
        table = f" table {d['table']}" if d.get("table") else ""
        click.echo(f"  dest       {d['kind']}: {d['path']}{table} mode {d['mode']}")
    segments = store.segments(j["id"])
    click.echo(f"  started    {j['started_at']}  finished {j['finished_at']}  "
               f"({_time_text(j, segments)})")
    if len(segments) > 1:
        click.echo(f"  ran        {_segments_text(segments)}")
    click.echo(f"  rows       read {j['rows_read']:,}  loaded {j['rows_loaded']:,}  "
               f"rejected {j['rows_rejected']:,}  warned {j['rows_warned']:,}"
               + (f"  resolved {j['rows_resolved']:,} (loaded by replays; counted as loaded)"
                  if j.get("rows_resolved") else ""))
    for r in replays:
        click.echo(f"  replay {r['number']:<3} {r['status']:<11} loaded {r['rows_loaded']:,}  "
                   f"rejected again {r['rows_rejected']:,}  refused {r['rows_refused']:,}  "
                   f"{(r['created_at'] or '')[:19]}  {r['origin'] or ''}")
    click.echo(f"  memory     {_memory_text(j, metrics)} "
               f"(budget {j['settings']['max_memory_mb']} MB)"
               f"  retries {j['retries']}")
    if j["error"]:
        click.echo(f"  error      {j['error']}")
    if j["phase_stats"]:
        click.echo("  phases (busy: time at work; phases overlap, so these add up to more "
                   "than the job's)")
        for p in j["phase_stats"]:
            if p.get("branch"):      # a branch: its filter, phases and destination
                click.echo(f"    branch {p['branch']:<17} in {p['rows_in']:>10,}  filtered "
                           f"{p['filtered']:>10,}  rejected {p['rejected'] + p['refused']:>8,}  "
                           f"loaded {p['loaded']:>10,}  {p.get('seconds', 0):.2f}s")
                continue
            click.echo(f"    {p['label']:<24} in {p['rows_in']:>10,}  out {p['rows_out']:>10,}  "
                       f"rejected {p['rejected']:>8,}  {p['seconds']:.2f}s")
    for c in conditions:
        click.echo(f"  when       {c['phase']}: {'runs' if c['holds'] else 'skipped'} "
                   f"({'; '.join(x['why'] for x in c['checks'])})")
    for why in skipped:
        click.echo(f"  skipped    {why}")
    click.echo(f"  checkpoints {len(checkpoints)}  (etlconsole checkpoints {j['id']})")
    if j["status"] == "rolled_back":
        click.echo("  rolled back: the figures above are what the job did before it was undone")
    click.echo("  events")
    for e in events[-15:]:
        detail = ", ".join(f"{k}={v}" for k, v in e["details"].items() if v is not None and k != "traceback")
        click.echo(f"    {e['at'][11:19]} {e['level']:<5} {e['event']} {detail}")


def _limit_option(what: str):
    return click.option("--limit", type=click.IntRange(min=1), metavar="N",
                        help=f"Only the last N {what} (the most recent).")


def _last(rows: list, limit: int | None) -> list:
    return rows[-limit:] if limit else rows


def _header(what: str, job_id: str, shown: int, total: int, columns: str) -> None:
    """The line above a listing: what it is, how much of it is shown, the columns."""
    part = f"the last {shown:,} of {total:,}" if shown < total else f"{total:,}"
    click.echo(f"{what} of job {job_id}: {part} — {columns}")


@main.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True)
@_limit_option("checkpoints")
@click.pass_obj
def checkpoints(obj: Context, job, as_json, limit):
    """Checkpoints of JOB."""
    store = obj.store(readonly=True)
    j = store.job(job)
    every = store.checkpoints(j["id"])
    rows = _last(every, limit)
    if as_json:
        from .engine import manyfiles
        files = manyfiles.files_of(j)
        for r in rows:
            _echo_json({**r, **manyfiles.where(files, (r["checkpoint_data"] or {}).get("last_row"))})
        return
    _header("checkpoints", j["id"], len(rows), len(every),
            "number, phase, batch, last row, rows loaded, created (UTC)")
    for r in rows:
        d = r["checkpoint_data"]
        click.echo(f"{_checkpoint_number(r):>6}  {r['phase']:<6} batch {d['batch']:>5}  "
                   f"last row {d['last_row']:>11,}  "
                   f"loaded {d['rows_loaded']:>11,}  {r['created_at']}")


def _checkpoint_number(r: dict) -> int:
    """The checkpoint's number in its job (what rollback --to takes)."""
    return r["number"] if r.get("number") is not None else r["id"]


def _secs(seconds: float | None) -> str:
    """A short run to the hundredth ('0.14s', not '0s')."""
    if seconds is not None and seconds < 60:
        return f"{seconds:.2f}s"
    return fmt_duration(seconds)


def _memory_text(j: dict, metrics: list[dict]) -> str:
    """The peak RSS the engine measured at its end; before that (running, or killed), what
    the samples saw, never a made-up 0."""
    if j["peak_rss_mb"]:
        return f"peak RSS {j['peak_rss_mb']:.0f} MB"
    sampled = [m["rss_mb"] for m in metrics if m["rss_mb"]]
    if not sampled:
        return "RSS not sampled"
    return f"RSS {sampled[-1]:.0f} MB last sampled, {max(sampled):.0f} MB at most"


def _time_text(j: dict, segments: list[dict]) -> str:
    """'ran 12.30s'; for a job still running, its time so far (earlier segments plus the
    one under way)."""
    if j["status"] in ("running", "pending") and segments and segments[-1]["elapsed_s"] is None:
        from datetime import datetime, timezone
        started = datetime.fromisoformat(segments[-1]["started_at"])
        now = (datetime.now(timezone.utc) - started).total_seconds()
        return f"running for {_secs(sum(g['elapsed_s'] or 0 for g in segments) + now)}"
    return f"ran {_secs(j['elapsed_s'])}"


def _segments_text(segments: list[dict]) -> str:
    """'3 segments: run 1m 2s (0-41,000), resume 30s (41,000-100,000), ...'"""
    parts = []
    for g in segments:
        end = f"{g['rows_at_end']:,}" if g["rows_at_end"] is not None else "?"
        parts.append(f"{g['kind']} {_secs(g['elapsed_s'])} "
                     f"(records {g['rows_at_start']:,}-{end})")
    return f"{len(segments)} segments: " + ", ".join(parts)


@main.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one batch per line.")
@_limit_option("batches")
@click.pass_obj
def batches(obj: Context, job, as_json, limit):
    """Load batches of JOB: record range, rows, attempts, duration, status."""
    store = obj.store(readonly=True)
    j = store.job(job)
    every = store.batches(j["id"])
    rows = _last(every, limit)
    if not as_json:
        _header("batches", j["id"], len(rows), len(every),
                "number, status, records, rows loaded, rejected, attempts, duration")
    from .engine import manyfiles
    files = manyfiles.files_of(j)
    for b in rows:
        if as_json:
            _echo_json({**b, **manyfiles.where(files, b["row_start"])})
        else:
            click.echo(f"{b['batch_number']:>6}  {b['status']:<11} records {b['row_start']:>11,}-"
                       f"{b['row_end']:<11,} loaded {b['rows_loaded']:>9,}  rejected "
                       f"{b['rows_rejected']:>7,}  attempts {b['attempts']}  "
                       f"{(b['duration_ms'] or 0) / 1000:.2f}s")


@main.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True,
              help="JSON Lines: row, phase, rule, column, message, values.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the rejects to a CSV file.")
@click.option("--fix", "fix_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the open rejects as the source had them (its header and dialect, plus "
                   "_etl_row, _etl_reason, _etl_raw), to fix and 'replay'.")
@click.pass_obj
def rejects(obj: Context, job, as_json, csv_file, fix_file):
    """Rejected rows of JOB with their reasons."""
    store = obj.store(readonly=True)
    j = store.job(job)
    if fix_file:
        _write_fix_file(store, j, fix_file, as_json)
        return
    rows = store.rejects(j["id"])
    if csv_file:
        with csv_file.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["row", "phase", "rule", "column", "message", "values"])
            n = 0
            for r in rows:
                w.writerow([r["row"], r["phase"], r["rule"], r["column"], r["message"],
                            json.dumps(r["values"], ensure_ascii=False)])
                n += 1
        click.echo(f"wrote {n:,} rejected rows to {csv_file}")
        return
    from .store.replays import resolutions
    resolved = resolutions(store, j["id"])      # rows a replay loaded since (issue 16)
    from .engine import manyfiles
    files = manyfiles.files_of(j)               # many files: each row's file and record in it
    for r in rows:
        by, at = resolved.get(r["row"], (None, None))
        if as_json:
            _echo_json({**r, **manyfiles.where(files, r["row"]), "resolved_by": by,
                        "resolved_at": at})
        else:
            click.echo(f"row {r['row']}: {r['phase']}/{r['rule']}"
                       f"{'/' + r['column'] if r['column'] else ''}: {r['message']}"
                       + (f"  [resolved by replay {by}]" if by else ""))


def _write_fix_file(store, j: dict, path: Path, as_json: bool) -> None:
    from .engine.fixes import write_fix_file
    from .store.replays import open_rejects
    done = write_fix_file(j, open_rejects(store, j["id"]), path)
    if as_json:
        _echo_json({"job_id": j["id"], "file": str(path), **done})
        return
    raw = f" ({done['raw']:,} as raw text in _etl_raw)" if done["raw"] else ""
    click.echo(f"wrote {done['rows']:,} open rejects of job {j['id']} to {path}{raw}")
    if done["unnumbered"]:
        click.echo(f"  {done['unnumbered']:,} rejects without a record number are left out")
    if done["note"]:
        click.echo(f"  note: {done['note']}")
    click.echo(f"  fix them, then: etlconsole replay {j['id']} {path} --dry-run")


@main.command()
@click.argument("job")
@click.argument("fix_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="COLUMN=VALUE",
              help="Give COLUMN this value (source text) in the rows replayed; repeatable.")
@click.option("--where", metavar="CONDITION",
              help="Only the rejects where CONDITION holds (row, phase, rule, column, message "
                   "and the record's fields), e.g. \"rule == 'allowed' and column == 'status'\".")
@click.option("--dry-run", is_flag=True,
              help="Show what would load and what would be rejected; write nothing.")
@click.option("--no-ui", is_flag=True, help="Headless (replay always is; for symmetry with run).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON object.")
@click.pass_obj
def replay(obj: Context, job, fix_file, sets, where, dry_run, no_ui, as_json):
    """Replay JOB's fixed rejects (a fix file, or --set/--where over its open rejects)
    through its recorded pipeline into its destination, as part of the same job."""
    from .engine.replaying import replay as replay_job
    s = replay_job(obj.store(), job, obj.settings(), fix_file=fix_file, sets=sets, where=where,
                   dry_run=dry_run)
    if as_json:
        _echo_json(s)
    else:
        _print_replay(s)
    if s["status"] != "succeeded":
        click.echo(f"error: replay of job {s['job_id']} {s['status']}: {s['error']}", err=True)
        sys.exit(1)


def _print_replay(s: dict) -> None:
    dry = s["dry_run"]
    name = "dry run" if dry else f"replay {s['replay']}"
    click.echo(f"{name} of job {s['job_id']}: {s['rows_in']:,} rows ({s['origin']})")
    d = s["destination"]
    where = f" (table {d['table']})" if d.get("table") else ""
    loaded = 'would load' if dry else 'loaded (resolved)'
    click.echo(f"  {loaded:<18} {s['rows_loaded']:>9,}  -> {d['path']}{where}")
    click.echo(f"  {'would be rejected' if dry else 'rejected again':<18} {s['rows_rejected']:>9,}")
    for extra in (s.get("destinations") or [])[1:]:     # a branched job: every branch
        click.echo(f"  {'':<18} {'':>9}  -> {extra['path']}"
                   + (f" (table {extra['table']})" if extra.get("table") else ""))
    if "branch_rejected" in s:
        click.echo(f"  {'rejected in branches':<18} {s['branch_rejected']:>9,}  (rejects of the branches)")
    click.echo(f"  {'refused':<18} {s['rows_refused']:>9,}  (already loaded or resolved)")
    for r in s["rejected"][:10]:
        click.echo(f"    row {r['row']}: {r['phase']}/{r['rule']}"
                   f"{'/' + r['column'] if r['column'] else ''}: {r['message']}")
    for r in s["refused"][:5]:
        click.echo(f"    row {r['row']}: refused, {r['reason']}")
    if s.get("job"):
        j = s["job"]
        click.echo(f"  job: read {j['rows_read']:,} = loaded {j['rows_loaded']:,} + open rejects "
                   f"{j['rows_rejected']:,}  (resolved {j['rows_resolved']:,})")


# -- pipelines ----------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one phase type per line.")
def phases(as_json):
    """Registered phase types (built-in and plugins) and their options.

    A plugin that cannot be loaded is listed with its error, and the command exits 2."""
    from .engine.phases import available, resolve
    from .errors import SpecError
    broken = []
    for name, (ref, origin) in sorted(available().items()):
        try:
            cls = resolve(name)
        except SpecError as exc:
            broken.append(f"{name} [{origin}]: {exc.detail}")
            if as_json:
                _echo_json({"name": name, "source": origin, "ref": ref, "error": exc.detail})
            else:
                click.echo(f"{name}  [{origin}]  BROKEN: {exc.detail}")
            continue
        declared = getattr(cls, "options", None)
        opts = {k: o.to_json() for k, o in declared.items()} if isinstance(declared, dict) else None
        if as_json:
            entry = {"name": name, "source": origin, "ref": ref,
                     "description": getattr(cls, "description", "") or (cls.__doc__ or "").strip(),
                     "options": opts}
            if opts is None:
                entry["options_note"] = ("declares no options: every key of the phase table "
                                         "is passed to it as a keyword argument")
            _echo_json(entry)
            continue
        click.echo(f"{name}  [{origin}]  {getattr(cls, 'description', '')}")
        if opts is None:
            click.echo("    (declares no options; keys are passed as keyword arguments)")
        for k, o in (opts or {}).items():
            req = " (required)" if o["required"] else f" (default: {_default_text(o)})"
            choices = f"; one of: {', '.join(o['choices'])}" if o.get("choices") else ""
            click.echo(f"    {k:<12} {o['kind']:<9} {o['help']}{choices}{req}")
    if broken:
        raise UserError(f"{len(broken)} phase plugin(s) cannot be loaded: {'; '.join(broken)}")


def _default_text(option: dict) -> str:
    """An option's default as it would be written in the pipeline file (TOML-ish)."""
    if "default" not in option:
        return "none"
    return json.dumps(option["default"], ensure_ascii=False, default=str)


def _print_phase(p: dict, indent: str) -> None:
    origin = "" if p["source"] == "built-in" else f"  [{p['source']}: {p['ref']}]"
    cond = ""
    if "condition" in p:
        cond = f"  when {' ; '.join(c['why'] for c in p['condition']['checks'])}: runs"
    click.echo(f"{indent}{p['label']}{origin}{cond}")


def _sources(given: tuple[Path, ...]) -> Path | list[str] | None:
    """--source as the engine takes it: none, one (a file, glob or directory), or a list."""
    if len(given) <= 1:
        return given[0] if given else None
    return [str(p) for p in given]


@main.command()
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--source", type=click.Path(path_type=Path), multiple=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def check(obj: Context, pipeline, source, as_json):
    """Validate PIPELINE against its source and explain the plan; nothing is written.

    Shows the phases in order with their origin (built-in or plugin), which `when`
    conditions hold for this source and which phases they skip, and for a branched
    pipeline each branch with its filter and destination. Each destination is checked as
    a job would check it before writing (reachable, writable, its table compatible)."""
    from .engine import destinations
    from .jobs import plan_pipeline
    plan = plan_pipeline(pipeline, source=_sources(source))
    settings = obj.settings()
    targets = [(b.load, b.destination_path, b.output_schema) for b in plan.branches]
    if not targets:
        assert plan.load is not None and plan.destination_path is not None
        targets = [(plan.load, plan.destination_path, plan.output_schema)]
    for load, path, schema in targets:
        destinations.open_destination(load, path, "check", settings).check(schema)
    info = plan.describe()
    if as_json:
        _echo_json(info)
        return
    click.echo(f"pipeline {info['pipeline']}: OK")
    click.echo(f"  source {info['source']}  ({'; '.join(plan.dialect.notes)})")
    for f in info.get("files", []):            # a source of many files, in reading order
        codec = f" {f['compression']}" if f["compression"] else ""
        click.echo(f"    file {f['path']}  ({f['size']:,} bytes{codec})")
    if info["estimated_rows"] is not None:
        click.echo(f"  rows   about {info['estimated_rows']:,} (estimated for min_rows/max_rows)")
    for p in info["phases"]:
        _print_phase(p, "  ")
    for s in info["skipped"]:
        click.echo(f"  skipped: {s}")
    for b in info["branches"]:
        flt = f" where {b['filter']}" if b["filter"] else " (every row)"
        click.echo(f"  branch {b['name']}{flt}")
        for p in b["phases"]:
            _print_phase(p, "    ")
        d = b["destination"]
        table = f" table {d['table']}" if d["table"] else ""
        click.echo(f"    -> {d['kind']} {d['path']}{table} ({d['mode']})")
        click.echo(f"    columns loaded: {', '.join(b['phases'][-1]['columns'])}")
    if info["destination"]:
        d = info["destination"]
        table = f" table {d['table']}" if d["table"] else ""
        click.echo(f"  -> {d['kind']} {d['path']}{table} ({d['mode']})")
        click.echo(f"  columns loaded: {', '.join(info['phases'][-1]['columns'])}")


@main.command()
@click.option("--no-ui", is_flag=True, help="Run headless, also on a terminal (no console).")
@click.option("--rows", default=20_000, show_default=True, help="Rows of sample data to generate.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def demo(obj: Context, no_ui, rows, as_json):
    """Generate sample orders data in ./etlconsole-demo/ and run the sample pipeline on it
    (on a terminal: in the console)."""
    from .sample import SAMPLE_PIPELINE_TOML, write_orders_csv
    folder = Path("etlconsole-demo")
    folder.mkdir(exist_ok=True)
    manifest = write_orders_csv(folder / "orders.csv", rows)
    (folder / "pipeline.toml").write_text(SAMPLE_PIPELINE_TOML, encoding="utf-8")
    (folder / "warehouse.db").unlink(missing_ok=True)      # the demo starts from scratch
    if _console_wanted(no_ui, as_json):
        pipeline = folder / "pipeline.toml"
        sys.exit(_open_console(obj, pipeline=pipeline, run={"pipeline": pipeline}))
    if not as_json:
        click.echo(f"wrote {folder}/orders.csv ({manifest.rows:,} rows, "
                   f"{manifest.expected_rejected:,} with known defects) and {folder}/pipeline.toml")
    code = _run_and_report(obj, folder / "pipeline.toml", None, None, as_json)
    if not as_json:
        click.echo("\ntry next:")
        click.echo("  etlconsole jobs                       # job history")
        click.echo("  etlconsole show last                  # details, phases, checkpoints")
        click.echo("  etlconsole rejects last               # rejected rows and why")
        click.echo("  etlconsole rollback last --dry-run    # what undoing the job would remove")
        click.echo(f"  sqlite3 {folder}/warehouse.db 'select * from orders limit 5'")
        click.echo(f"  etlconsole run {folder}/pipeline.toml --no-ui   # run it again")
    sys.exit(code)


@main.command()
@click.argument("pipeline", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--watch", "watch", metavar="JOB", help="Open on the monitor, following JOB "
              "(e.g. one left running when the console was quit).")
@click.pass_obj
def ui(obj: Context, pipeline, watch):
    """Open the operator console (with PIPELINE: on the pipeline builder)."""
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise UserError("the console needs a terminal (stdin and stdout); "
                        "every command also works headless")
    if pipeline is not None and pipeline.exists():  # a new path: the builder creates it
        from .spec import load_spec
        load_spec(pipeline)                        # a bad file: one line, exit 2
    if watch is not None:
        watch = obj.store().job(watch)["id"]       # an unknown job: one line, exit 2
    sys.exit(_open_console(obj, pipeline=pipeline, watch=watch,
                           start="builder" if pipeline else "jobs"))


# -- global options after the command ------------------------------------------------
def _set_global(ctx: click.Context, param: click.Parameter, value) -> None:
    """``--state``/``--log-format`` given after the command: they win over the ones
    before it (the group has already run, so the log format is configured again)."""
    if value is None:
        return
    obj = ctx.find_object(Context)
    assert obj is not None, "the main group made the Context before any command's options"
    if param.name == "state":
        obj.state = value
    else:
        obj.log_format = value
        logs.configure(value)


def _global_options() -> list[click.Option]:
    return [
        click.Option(["--state"], metavar="PATH", expose_value=False, callback=_set_global,
                     help="State store (also accepted before the command)."),
        click.Option(["--log-format"], type=click.Choice(["text", "json"]), expose_value=False,
                     callback=_set_global, help="Log lines on stderr (also before the command)."),
    ]


# Every command takes the global options after its name as well ('etlconsole jobs --state X'),
# as the README promises: added here, once, so commands added later get them too.
for _command in main.commands.values():
    _command.params.extend(_global_options())


def entry() -> None:
    """The `etlconsole` program: main(), then out without the interpreter's teardown.

    By then every write is committed and every file closed. What the teardown would still
    do is destroy C++ libraries' state while their threads may run — Arrow's read-ahead of
    the reader a stopped job abandoned — which aborted the process now and then (SIGABRT
    "terminate called without an active exception", SIGSEGV) after a clean stop: about
    one Ctrl-C in a hundred and fifty under load turned exit 1 into a crash."""
    code: str | int | None
    try:
        main()                  # click's standalone mode ends with SystemExit
        code = 0
    except SystemExit as exc:
        code = exc.code
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe: the reader has what it wanted
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
