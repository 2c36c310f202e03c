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

    def settings(self) -> config.Settings:
        return config.load_settings(state_db=self.state)

    def store(self):
        from .store import StateStore
        path = self.settings().state_path
        return StateStore(path)


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
def _run_and_report(obj: Context, pipeline, source, dest, as_json: bool) -> int:
    from .jobs import run_pipeline
    settings = obj.settings()
    summary = run_pipeline(pipeline, settings, source=source, dest=dest,
                           progress=ProgressLine(), log=logs.get())
    return _report(summary, as_json)


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
    click.echo(f"  rows rejected  {s['rows_rejected']:>12,}")
    if s.get("rows_warned"):
        click.echo(f"  rows warned    {s['rows_warned']:>12,}")
    click.echo(f"  throughput     {s['rows_per_s'] or 0:>12,.0f} rows/s, peak RSS {s['peak_rss_mb']:.0f} MB, "
               f"retries {s['retries']}")


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--no-ui", is_flag=True, help="Run headless, also on a terminal (no console).")
@click.option("--json", "as_json", is_flag=True, help="End stdout with the summary as one JSON object.")
@click.option("--source", type=click.Path(path_type=Path), help="Read this CSV instead of [source].path.")
@click.option("--dest", type=str, help="Load into this file instead of the load phase's path "
              "(postgres: this URL instead of its url).")
@click.pass_obj
def run(obj: Context, pipeline, no_ui, as_json, source, dest):
    """Run PIPELINE (a TOML pipeline file) as a new job (on a terminal: in the console)."""
    if _console_wanted(no_ui, as_json):
        from .jobs import plan_pipeline
        plan_pipeline(pipeline, source=source, dest=dest)   # user errors: one line, exit 2
        sys.exit(_open_console(obj, pipeline=pipeline,
                               run={"pipeline": pipeline, "source": source, "dest": dest}))
    sys.exit(_run_and_report(obj, pipeline, source, dest, as_json))


@main.command()
@click.argument("job")
@click.option("--no-ui", is_flag=True, help="Run headless, also on a terminal (no console).")
@click.option("--json", "as_json", is_flag=True, help="End stdout with the summary as one JSON object.")
@click.pass_obj
def resume(obj: Context, job, no_ui, as_json):
    """Continue a failed or interrupted JOB after the last batch its destination committed."""
    from .engine.recovery import nothing_to_resume, resume as resume_job
    if _console_wanted(no_ui, as_json):
        store = obj.store()
        store.mark_dead_jobs()
        found = store.job(job)
        message = nothing_to_resume(found)    # refusals: one line, exit 2, no console
        if message:
            click.echo(message)
            sys.exit(0)
        sys.exit(_open_console(obj, resume=found["id"]))
    summary = resume_job(obj.store(), job, obj.settings(), progress=ProgressLine(), log=logs.get())
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
              help="Keep what the job had loaded at this checkpoint (see 'checkpoints JOB').")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def rollback(obj: Context, job, to_checkpoint, yes, dry_run, as_json):
    """Undo JOB's effect on every destination (entirely, or back to a checkpoint)."""
    from .engine.recovery import rollback as rollback_job
    store, settings = obj.store(), obj.settings()
    preview = rollback_job(store, job, settings, to_checkpoint=to_checkpoint, dry_run=True)
    if dry_run or not yes:
        _print_rollback(preview, as_json)
    if dry_run:
        return
    if not yes:
        if not sys.stdin.isatty():
            raise UserError("rollback needs --yes when not run from a terminal (or use --dry-run)")
        click.confirm("Roll back?", abort=True)
    _print_rollback(rollback_job(store, job, settings, to_checkpoint=to_checkpoint), as_json)


def _print_rollback(r: dict, as_json: bool) -> None:
    from .engine.recovery import rollback_lines
    if as_json:
        _echo_json(r)
        return
    verb = "would remove" if r["dry_run"] else "removed"
    target = f" back to checkpoint {r['to_checkpoint']}" if r["to_checkpoint"] else ""
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
    summary = rerun_job(obj.store(), job, from_phase, obj.settings(), progress=ProgressLine(),
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
    store = obj.store()
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
    store = obj.store()
    store.mark_dead_jobs()
    j = store.job(job)
    checkpoints, events = store.checkpoints(j["id"]), store.events(j["id"])
    metrics = store.metrics(j["id"], limit=2000)
    skipped = [e["details"].get("reason") for e in events if e["event"] == "phase.skipped"]
    from .engine.plan import decisions_from_events
    conditions = list(decisions_from_events(events).values())
    if as_json:
        _echo_json({**_job_public(j), "skipped": skipped, "conditions": conditions,
                    "checkpoints": checkpoints, "events": events,
                    "batches": len(store.batches(j["id"])),
                    "metrics": {"samples": len(metrics),
                                "max_rss_mb": max((m["rss_mb"] for m in metrics), default=None),
                                "max_rows_per_s": max((m["rows_per_s"] for m in metrics), default=None)}})
        return
    click.echo(f"job {j['id']}  {j['status']}  pipeline {j['pipeline_name']} ({j['pipeline_file']})")
    click.echo(f"  source     {j['source_path']}  ({j['bytes_total'] or 0:,} bytes)")
    for d in j["destinations"] or []:
        table = f" table {d['table']}" if d.get("table") else ""
        click.echo(f"  dest       {d['kind']}: {d['path']}{table} mode {d['mode']}")
    click.echo(f"  started    {j['started_at']}  finished {j['finished_at']}  ({fmt_duration(j['elapsed_s'])})")
    click.echo(f"  rows       read {j['rows_read']:,}  loaded {j['rows_loaded']:,}  "
               f"rejected {j['rows_rejected']:,}  warned {j['rows_warned']:,}")
    click.echo(f"  memory     peak RSS {j['peak_rss_mb'] or 0:.0f} MB (budget {j['settings']['max_memory_mb']} MB)"
               f"  retries {j['retries']}")
    if j["error"]:
        click.echo(f"  error      {j['error']}")
    if j["phase_stats"]:
        click.echo("  phases")
        for p in j["phase_stats"]:
            click.echo(f"    {p['label']:<24} in {p['rows_in']:>10,}  out {p['rows_out']:>10,}  "
                       f"rejected {p['rejected']:>8,}  {p['seconds']:.2f}s")
    for c in conditions:
        click.echo(f"  when       {c['phase']}: {'runs' if c['holds'] else 'skipped'} "
                   f"({'; '.join(x['why'] for x in c['checks'])})")
    for why in skipped:
        click.echo(f"  skipped    {why}")
    click.echo(f"  checkpoints {len(checkpoints)}  (etlconsole checkpoints {j['id']})")
    click.echo("  events")
    for e in events[-15:]:
        detail = ", ".join(f"{k}={v}" for k, v in e["details"].items() if v is not None and k != "traceback")
        click.echo(f"    {e['at'][11:19]} {e['level']:<5} {e['event']} {detail}")


@main.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def checkpoints(obj: Context, job, as_json):
    """Checkpoints of JOB."""
    store = obj.store()
    j = store.job(job)
    rows = store.checkpoints(j["id"])
    if as_json:
        for r in rows:
            _echo_json(r)
        return
    for r in rows:
        d = r["checkpoint_data"]
        click.echo(f"{r['id']:>6}  {r['phase']:<6} batch {d['batch']:>5}  last row {d['last_row']:>11,}  "
                   f"loaded {d['rows_loaded']:>11,}  {r['created_at']}")


@main.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one batch per line.")
@click.pass_obj
def batches(obj: Context, job, as_json):
    """Load batches of JOB: record range, rows, attempts, duration, status."""
    store = obj.store()
    j = store.job(job)
    for b in store.batches(j["id"]):
        if as_json:
            _echo_json(b)
        else:
            click.echo(f"{b['batch_number']:>6}  {b['status']:<11} records {b['row_start']:>11,}-"
                       f"{b['row_end']:<11,} loaded {b['rows_loaded']:>9,}  rejected "
                       f"{b['rows_rejected']:>7,}  attempts {b['attempts']}  "
                       f"{(b['duration_ms'] or 0) / 1000:.2f}s")


@main.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: row, phase, rule, column, message, values.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the rejects to a CSV file.")
@click.pass_obj
def rejects(obj: Context, job, as_json, csv_file):
    """Rejected rows of JOB with their reasons."""
    store = obj.store()
    j = store.job(job)
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
    for r in rows:
        if as_json:
            _echo_json(r)
        else:
            click.echo(f"row {r['row']}: {r['phase']}/{r['rule']}"
                       f"{'/' + r['column'] if r['column'] else ''}: {r['message']}")


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
            req = " (required)" if o["required"] else ""
            choices = f" one of: {', '.join(o['choices'])}" if o.get("choices") else ""
            click.echo(f"    {k:<12} {o['kind']:<9} {o['help']}{req}{choices}")
    if broken:
        raise UserError(f"{len(broken)} phase plugin(s) cannot be loaded: {'; '.join(broken)}")


def _print_phase(p: dict, indent: str) -> None:
    origin = "" if p["source"] == "built-in" else f"  [{p['source']}: {p['ref']}]"
    cond = ""
    if "condition" in p:
        cond = f"  when {' ; '.join(c['why'] for c in p['condition']['checks'])}: runs"
    click.echo(f"{indent}{p['label']}{origin}{cond}")


@main.command()
@click.argument("pipeline", type=click.Path(path_type=Path))
@click.option("--source", type=click.Path(path_type=Path))
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
    plan = plan_pipeline(pipeline, source=source)
    settings = obj.settings()
    targets = ([(b.load, b.destination_path, b.output_schema) for b in plan.branches]
               or [(plan.load, plan.destination_path, plan.output_schema)])
    for load, path, schema in targets:
        destinations.open_destination(load, path, "check", settings).check(schema)
    info = plan.describe()
    if as_json:
        _echo_json(info)
        return
    click.echo(f"pipeline {info['pipeline']}: OK")
    click.echo(f"  source {info['source']}  ({'; '.join(plan.dialect.notes)})")
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
@click.pass_obj
def ui(obj: Context, pipeline):
    """Open the operator console (with PIPELINE: on the pipeline builder)."""
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise UserError("the console needs a terminal (stdin and stdout); "
                        "every command also works headless")
    if pipeline is not None:
        from .spec import load_spec
        load_spec(pipeline)                        # a bad file: one line, exit 2
    sys.exit(_open_console(obj, pipeline=pipeline, start="builder" if pipeline else "jobs"))


def entry() -> None:
    """The `etlconsole` program: main(), then out without the interpreter's teardown.

    By then every write is committed and every file closed. What the teardown would still
    do is destroy C++ libraries' state while their threads may run — Arrow's read-ahead of
    the reader a stopped job abandoned — which aborted the process now and then (SIGABRT
    "terminate called without an active exception", SIGSEGV) after a clean stop: about
    one Ctrl-C in a hundred and fifty under load turned exit 1 into a crash."""
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
