"""Command line: a thin layer over the library. User errors print one line, exit 2."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import __version__, api, config, interrupts, logs
from .errors import UserError
from .progress import ProgressLine
from .records import Job, RollbackSummary, RunSummary, named


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
        store = api.open_store(self.settings().state_path, readonly=readonly)
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


def _echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


def _console_wanted(no_ui: bool, as_json: bool = False) -> bool:
    """The console opens on a terminal unless --no-ui (or --json: output for a program)."""
    return not no_ui and not as_json and sys.stdout.isatty() and sys.stdin.isatty()


def _open_console(obj: "Context", **options) -> int:
    """Open the Textual console (imported only here: the headless path never loads it)."""
    from .ui import run_console
    settings = obj.settings()
    return run_console(settings.state_path, settings=settings, **options)


# Options several commands take, declared once.
def _json_option(help: str | None = None):
    return click.option("--json", "as_json", is_flag=True, help=help)


_SUMMARY_JSON = "End stdout with the summary as one JSON object."
_no_ui_option = click.option("--no-ui", is_flag=True,
                             help="Run headless, also on a terminal (no console).")
_dry_run_option = click.option("--dry-run", is_flag=True, help="Only show what would be removed.")


def _limit_option(what: str):
    return click.option("--limit", type=click.IntRange(min=1), metavar="N",
                        help=f"Only the last N {what} (the most recent).")


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
    summary = api.run(pipeline, obj.settings(), source=source, dest=dest,
                      progress=obj.progress_line(), log=logs.get(), on_event=obj.event_log(),
                      **executor)
    return _report(summary, as_json)


def _executor_options(f):
    """--executor, --workers, --scheduler (run and resume; ADR 0026)."""
    f = click.option("--scheduler", metavar="ADDRESS",
                     help="Dask: run on this scheduler (default: a local cluster for the job).")(f)
    f = click.option("--workers", type=int, metavar="N",
                     help="Dask: worker processes of the local cluster (default 2).")(f)
    return click.option("--executor", type=click.Choice(["local", "dask"]),
                        help="Where the job runs (default: the pipeline's executor, else local).")(f)


def _report(summary: RunSummary, as_json: bool) -> int:
    if as_json:
        _echo_json(summary.to_json())
    else:
        _echo_lines(summary.lines())
    error = summary.error_line()
    if error:
        click.echo(error, err=True)
    return summary.exit_code


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=True, path_type=Path))
@_no_ui_option
@_json_option(_SUMMARY_JSON)
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
        api.plan_pipeline(pipeline, source=source, dest=dest)   # user errors: one line, exit 2
        sys.exit(_open_console(obj, pipeline=pipeline,
                               run={"pipeline": pipeline, "source": source, "dest": dest}))
    sys.exit(_run_and_report(obj, pipeline, source, dest, as_json, executor=executor,
                             workers=workers, scheduler=scheduler))


@main.command()
@click.argument("job")
@_no_ui_option
@_json_option(_SUMMARY_JSON)
@_executor_options
@click.pass_obj
def resume(obj: Context, job, no_ui, as_json, executor, workers, scheduler):
    """Continue a failed or interrupted JOB after the last batch its destination committed."""
    if _console_wanted(no_ui, as_json):
        found, message = api.resume_check(obj.store(), job)   # refusals: one line, exit 2
        if message:
            click.echo(message)
            sys.exit(0)
        sys.exit(_open_console(obj, resume=found.id))
    summary = api.resume(obj.store(), job, obj.settings(), progress=obj.progress_line(),
                         log=logs.get(), executor=executor, workers=workers, scheduler=scheduler)
    if summary.nothing_to_do:
        if as_json:
            _echo_json(summary.to_json())
        else:
            _echo_lines(summary.lines())
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
@_dry_run_option
@_json_option()
@click.pass_obj
def rollback(obj: Context, job, to_checkpoint, replay_number, yes, dry_run, as_json):
    """Undo JOB's effect on every destination (entirely, or back to a checkpoint)."""
    store, settings = obj.store(), obj.settings()

    def undo(dry_run: bool = False) -> RollbackSummary:
        """One replay (--replay), or the job (entirely, or back to --to)."""
        return api.rollback(store, job, settings, to_checkpoint=to_checkpoint,
                            replay=replay_number, dry_run=dry_run)
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


def _print_rollback(r: RollbackSummary, as_json: bool) -> None:
    if as_json:
        _echo_json(r.to_json())
    else:
        _echo_lines(r.lines())


@main.command()
@click.argument("job")
@click.option("--from", "from_phase", required=True, metavar="PHASE",
              help="A phase marked checkpoint = true: its number in the pipeline file or its type.")
@_no_ui_option
@_json_option(_SUMMARY_JSON)
@click.pass_obj
def rerun(obj: Context, job, from_phase, no_ui, as_json):
    """Re-run JOB's phases after a checkpointed phase with the pipeline file as it is now,
    without reading the source again; replaces the job's earlier load."""
    summary = api.rerun(obj.store(), job, from_phase, obj.settings(), progress=obj.progress_line(),
                        log=logs.get())
    sys.exit(_report(summary, as_json))


@main.command()
@click.option("--older-than", "hours", type=float, metavar="HOURS",
              help="Age limit (default PIPELINE_ROLLBACK_RETENTION_HOURS).")
@_dry_run_option
@_json_option()
@click.pass_obj
def cleanup(obj: Context, hours, dry_run, as_json):
    """Remove staging data and workspaces left by failed jobs, and orphans."""
    actions = api.cleanup(obj.store(), obj.settings(), older_than_hours=hours, dry_run=dry_run)
    for a in actions:
        if as_json:
            _echo_json(a.to_json())
        else:
            click.echo(f"{'would ' if dry_run else ''}{a.line()}")
    if not actions and not as_json:
        click.echo("nothing to clean up")


# -- history ------------------------------------------------------------------------
@main.command()
@_json_option("JSON Lines, one job per line.")
@click.option("--limit", default=50, show_default=True)
@click.pass_obj
def jobs(obj: Context, as_json, limit):
    """List jobs, most recent first."""
    store = obj.store(readonly=True)
    rows = api.jobs(store, limit)
    if as_json:
        for r in rows:
            _echo_json(r.to_json())
        return
    if not rows:
        click.echo(f"no jobs yet in {store.path}")
        return
    click.echo(Job.LIST_HEADER)
    for r in rows:
        click.echo(r.list_line())


@main.command()
@click.argument("job")
@_json_option()
@click.option("--files", "every_file", is_flag=True,
              help="List every file of a job of many files (else the first and last few, "
                   "and where reading is).")
@click.pass_obj
def show(obj: Context, job, as_json, every_file):
    """Details of JOB (an id, an id prefix, or 'last')."""
    details = api.show(obj.store(readonly=True), job, every_file=every_file)
    if as_json:
        _echo_json(details.to_json())
    else:
        _echo_lines(details.lines())


def _last(rows: list, limit: int | None) -> list:
    return rows[-limit:] if limit else rows


def _header(what: str, job_id: str, shown: int, total: int, columns: str) -> None:
    """The line above a listing: what it is, how much of it is shown, the columns."""
    part = f"the last {shown:,} of {total:,}" if shown < total else f"{total:,}"
    click.echo(f"{what} of job {job_id}: {part} — {columns}")


@main.command()
@click.argument("job")
@_json_option()
@_limit_option("checkpoints")
@click.pass_obj
def checkpoints(obj: Context, job, as_json, limit):
    """Checkpoints of JOB."""
    j, every = api.checkpoints(obj.store(readonly=True), job)
    rows = _last(every, limit)
    if as_json:
        where = api.file_locator(j)      # many files: each checkpoint's file and record in it
        for r in rows:
            _echo_json({**r.to_json(), **where(r.last_row)})
        return
    _header("checkpoints", j.id, len(rows), len(every),
            "number, phase, batch, last row, rows loaded, created (UTC)")
    for r in rows:
        click.echo(r.line())


@main.command()
@click.argument("job")
@_json_option("JSON Lines, one batch per line.")
@_limit_option("batches")
@click.pass_obj
def batches(obj: Context, job, as_json, limit):
    """Load batches of JOB: record range, rows, attempts, duration, status."""
    j, every = api.batches(obj.store(readonly=True), job)
    rows = _last(every, limit)
    if not as_json:
        _header("batches", j.id, len(rows), len(every),
                "number, status, records, rows loaded, rejected, attempts, duration")
    where = api.file_locator(j)
    for b in rows:
        if as_json:
            _echo_json({**b.to_json(), **where(b.row_start)})
        else:
            click.echo(b.line())


@main.command()
@click.argument("job")
@_json_option("JSON Lines: row, phase, rule, column, message, values.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the rejects to a CSV file.")
@click.option("--fix", "fix_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the open rejects as the source had them (its header and dialect, plus "
                   "_etl_row, _etl_reason, _etl_raw), to fix and 'replay'.")
@click.pass_obj
def rejects(obj: Context, job, as_json, csv_file, fix_file):
    """Rejected rows of JOB with their reasons."""
    store = obj.store(readonly=True)
    j = api.find(store, job).id
    if fix_file:
        _write_fix_file(store, j, fix_file, as_json)
        return
    if csv_file:
        n = api.export_rejects(store, j, csv_file)
        click.echo(f"wrote {n:,} rejected rows to {csv_file}")
        return
    where = api.file_locator(api.job(store, j))   # many files: each row's file and record in it
    for r in api.rejects(store, j):
        if as_json:
            _echo_json({**r.to_json(), **where(r.row)})
        else:
            click.echo(r.line())


def _write_fix_file(store, job_id: str, path: Path, as_json: bool) -> None:
    done = api.write_fix_file(store, job_id, path)
    if as_json:
        _echo_json(done.to_json())
    else:
        _echo_lines(done.lines())


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
@_json_option("Print the outcome as one JSON object.")
@click.pass_obj
def replay(obj: Context, job, fix_file, sets, where, dry_run, no_ui, as_json):
    """Replay JOB's fixed rejects (a fix file, or --set/--where over its open rejects)
    through its recorded pipeline into its destination, as part of the same job."""
    s = api.replay(obj.store(), job, obj.settings(), fix_file=fix_file, sets=sets, where=where,
                   dry_run=dry_run)
    if as_json:
        _echo_json(s.to_json())
    else:
        _echo_lines(s.lines())
    error = s.error_line()
    if error:
        click.echo(error, err=True)
        sys.exit(1)


# -- pipelines ----------------------------------------------------------------------
@main.command()
@_json_option("JSON Lines, one phase type per line.")
def phases(as_json):
    """Registered phase types (built-in and plugins) and their options.

    A plugin that cannot be loaded is listed with its error, and the command exits 2."""
    broken = []
    for name, ref, origin, cls, error in api.phase_types():
        if cls is None:
            broken.append(f"{name} [{origin}]: {error}")
            if as_json:
                _echo_json({"name": name, "source": origin, "ref": ref, "error": error})
            else:
                click.echo(f"{name}  [{origin}]  BROKEN: {error}")
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
    plan = api.check(pipeline, obj.settings(), source=_sources(source))
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
        where, table = named(d, d.get("table"))
        table = f" table {table}" if table else ""
        click.echo(f"    -> {d['kind']} {where}{table} ({d['mode']})")
        click.echo(f"    columns loaded: {', '.join(b['phases'][-1]['columns'])}")
    if info["destination"]:
        d = info["destination"]
        where, table = named(d, d.get("table"))
        table = f" table {table}" if table else ""
        click.echo(f"  -> {d['kind']} {where}{table} ({d['mode']})")
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
        watch = api.find(obj.store(), watch).id    # an unknown job: one line, exit 2
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
