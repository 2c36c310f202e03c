"""Jobs: history, the selected job's checkpoints and batches; resume, roll back, clean up."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import PurePath
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Static

from ... import api
from ...errors import UserError
from ...progress import fmt_duration
from ...records import UNFINISHED as RESUMABLE
from ...records import (Batch, Checkpoint, CleanupAction, Job, JobStatus, RollbackSummary, named,
                        phase_lines)
from .. import format as fmt
from ..widgets.table import LiveTable
from .base import UNCHANGED, PolledScreen
from .modals import ConfirmModal, DetailsModal

JOBS_SHOWN = 200
BATCHES_SHOWN = 200
CHECKPOINTS_SHOWN = 200
DEAD_CHECK_S = 5.0


@dataclass
class JobsData:
    jobs: list[Job]
    selected: Job | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    # a job of many files: each batch's (part on Dask, file); empty for one file
    batch_files: dict[int, tuple[int | None, str]] = field(default_factory=dict)


BATCH_COLUMNS = [("batch", "n"), ("status", "status"), ("last row", "last"), ("loaded", "loaded"),
                 ("try", "try")]


class JobsTable(LiveTable):
    BINDINGS = [Binding("enter", "screen.details", "Details")]


class JobsScreen(PolledScreen):
    DEFAULT_CSS = """
    JobsScreen { layout: vertical; }
    #jobs-title { height: 1; background: $boost; text-style: bold; }
    #jobs { height: 1fr; min-height: 5; }
    #jobs-info { height: 1; color: $text-muted; }
    #jobs-lower { height: 1fr; min-height: 5; }
    #jobs-lower > Vertical { width: 1fr; }
    #jobs-lower > #checkpoints-pane { width: 3fr; max-width: 40; }
    #jobs-lower > #batches-pane { width: 5fr; }
    .caption { height: 1; color: $text-muted; }
    #checkpoints, #batches { height: 1fr; }
    """
    BINDINGS = [
        Binding("r", "resume", "Resume"),
        Binding("b", "rollback", "Rollback"),
        Binding("c", "cleanup", "Cleanup"),
    ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.data: JobsData | None = None
        self.busy = False          # a rollback/cleanup is in progress
        # the poll worker's copy of the store (read only what changed since)
        self._jobs: dict[str, Job] | None = None
        self._stamp: str | None = None          # newest updated_at read
        self._detail_key: tuple | None = None   # (job id, updated_at) of checkpoints/batches
        self._detail: tuple[list[Checkpoint], list[Batch], dict] = ([], [], {})
        # job id -> batch -> (part, file): its executor and split are the job's for good
        self._locators: dict[str, Callable[[Batch], tuple[int | None, str] | None]] = {}
        self._dead_check = 0.0
        self._shown_job: str | None = None       # whose checkpoints/batches are on screen

    def compose(self) -> ComposeResult:
        yield Static("jobs (most recent first)", id="jobs-title", markup=False)
        yield JobsTable([("job", "id"), ("pipeline", "pipeline"), ("status", "status"),
                         ("rows", "rows"), ("started (UTC)", "started"), ("time", "time")],
                        id="jobs")
        yield Static("", id="jobs-info", markup=False)
        with Horizontal(id="jobs-lower"):
            # Sized to fit 80 columns: a checkpoint is named by its last row (as the batch
            # it closes is), and a batch by its number and last row (its first row is the
            # previous batch's last + 1); 'etlconsole batches JOB' prints the ranges.
            with Vertical(id="checkpoints-pane"):
                yield Static("checkpoints (b: roll back)", classes="caption",
                             markup=False)
                yield LiveTable([("id", "id"), ("last row", "row"), ("loaded", "loaded")],
                                id="checkpoints")
            with Vertical(id="batches-pane"):
                yield Static("batches", classes="caption", markup=False)
                yield LiveTable(BATCH_COLUMNS, id="batches")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#jobs", LiveTable).focus()

    # -- data -----------------------------------------------------------------------
    @property
    def selected(self) -> Job | None:
        if not self.data:
            return None
        key = self.query_one("#jobs", LiveTable).cursor_key
        return next((j for j in self.data.jobs if j.id == key), None)

    def collect(self) -> JobsData | object:
        """Reads only what changed: nothing when no other connection wrote (and the
        operator asked for nothing), else the job rows written since the last poll, and
        the selected job's checkpoints and batches only when that job's row changed."""
        store = self.store
        changed = self.store_changed()
        if self._dead_check_due() and api.mark_dead_jobs(store):
            changed = True                     # our own write: data_version does not see it
        if not (changed or self.forced or self._jobs is None):
            return UNCHANGED
        known = self._read_jobs(store) if changed or self._jobs is None else self._jobs
        jobs = sorted(known.values(), key=lambda j: j.created_at, reverse=True)
        jobs = jobs[:JOBS_SHOWN]
        wanted = self.console_app.selected_job_id
        selected = next((j for j in jobs if j.id == wanted), jobs[0] if jobs else None)
        if selected is None:
            return JobsData(jobs)
        key = (selected.id, selected.updated_at)
        if key != self._detail_key:
            batches = api.recent_batches(store, selected.id, BATCHES_SHOWN)
            self._detail = (api.recent_checkpoints(store, selected.id, CHECKPOINTS_SHOWN),
                            batches, self._batch_files(store, selected, batches))
            self._detail_key = key
        return JobsData(jobs, selected, *self._detail)

    def _batch_files(self, store, job: Job, batches: list[Batch]) -> dict:
        """Each batch's part and file, for a job of parts or of many files (ADR 0025, 0026,
        0029); empty for a local job of one file."""
        if job.id not in self._locators:
            self._locators[job.id] = api.batch_files(store, job)
        of = self._locators[job.id]
        return {b.number: found for b in batches if (found := of(b)) is not None}

    def _read_jobs(self, store) -> dict[str, Job]:
        """The jobs known so far, with those changed since the last read; returns them."""
        rows = api.jobs_changed_since(store, self._stamp, JOBS_SHOWN)
        if self._jobs is None:
            self._jobs = {}
        for j in rows:
            self._jobs[j.id] = j
        stamps = [j.updated_at for j in rows if j.updated_at]
        if stamps:
            self._stamp = max([self._stamp or "", *stamps])
        return self._jobs

    def _dead_check_due(self) -> bool:
        """Engine processes that died leave their job 'running': look for them on the
        first poll, then every few seconds while a job is shown as active."""
        known = self._jobs
        first = known is None
        active = known is not None and any(j.status.active for j in known.values())
        if first or (active and time.monotonic() - self._dead_check > DEAD_CHECK_S):
            self._dead_check = time.monotonic()
            return True
        return False

    def render_data(self, data: JobsData) -> None:
        self.data = data
        table = self.query_one("#jobs", LiveTable)
        table.sync([(j.id, (j.id, j.pipeline_name, fmt.status(j.status),
                           fmt.num(j.rows_read), fmt.stamp(j.started_at)[:16],
                           fmt.duration(j.elapsed_s) if not j.status.active else "…"))
                    for j in data.jobs])
        if self.console_app.selected_job_id is None and data.selected is not None:
            self.console_app.selected_job_id = data.selected.id
        shown = data.selected if data.selected and data.selected.id == table.cursor_key else None
        self.query_one("#checkpoints", LiveTable).sync([
            (str(c.number), (c.number, fmt.num(c.last_row), fmt.num(c.rows_loaded)))
            for c in (data.checkpoints if shown else [])])
        batches = self.query_one("#batches", LiveTable)
        files = data.batch_files if shown else {}
        # last, so that at 80 columns the figures stay where they were
        batches.set_columns(BATCH_COLUMNS + [("file", "file")] if files else BATCH_COLUMNS)
        batches.sync([
            (str(b.number), (b.number, b.status, fmt.num(b.row_end), fmt.num(b.rows_loaded),
                             b.attempts, *((_batch_file(files.get(b.number)),) if files else ())))
            for b in (data.batches if shown else [])])
        self._open_details_at_top(shown.id if shown else None)
        self._render_info()
        self.refresh_bindings()

    def _open_details_at_top(self, job_id: str | None) -> None:
        """Another job's checkpoints and batches open at their first row (a table keeps its
        cursor and scroll offset across a refill, which showed the previous job's place)."""
        if job_id == self._shown_job:
            return
        self._shown_job = job_id
        for table in self.query("#checkpoints, #batches").results(LiveTable):
            table.move_cursor(row=0, column=0, animate=False, scroll=False)
            table.scroll_to(0, 0, animate=False, immediate=True)

    def _render_info(self) -> None:
        job = self.selected
        info = self.query_one("#jobs-info", Static)
        if not self.data or not self.data.jobs:
            info.update(Text(f"no jobs yet: p opens the pipeline builder · store "
                             f"{self.console_app.state_path}"))
            return
        if job is None:
            info.update("")
            return
        line = Text.assemble(fmt.status(job.status), "  ",
                             f"loaded {fmt.num(job.rows_loaded)} · rejected "
                             f"{fmt.num(job.rows_rejected)}  ")
        if job.error:
            line.append(job.error, style="red")
        line.no_wrap, line.overflow = True, "ellipsis"
        info.update(line)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "jobs" and event.row_key is not None:
            if self.console_app.selected_job_id != event.row_key.value:
                self.console_app.selected_job_id = event.row_key.value
                self.poll_now()
            self._render_info()
        self.refresh_bindings()

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    # -- keys -----------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action not in ("resume", "rollback", "cleanup", "details"):
            return True
        if self.busy:
            return None
        job = self.selected
        if action == "cleanup":
            return True
        if job is None:
            return None
        if action == "resume":
            return True if job.status in RESUMABLE and job.resumable else None
        if action == "rollback":
            return None if job.status.active or job.status is JobStatus.ROLLED_BACK else True
        return True

    def _checkpoint_choice(self) -> int | None:
        table = self.query_one("#checkpoints", LiveTable)
        if self.focused is table and table.cursor_key is not None:
            return int(table.cursor_key)
        return None

    def action_details(self) -> None:
        job = self.selected
        if job is None:
            return

        def done(result: str | None) -> None:
            if result == "monitor":
                self.console_app.follow_job(job.id)
        self.app.push_screen(DetailsModal(f"job {job.id}", job_details(job)), done)

    def action_resume(self) -> None:
        job = self.selected
        if job is not None and self.check_action("resume", ()):
            self.console_app.launch_resume(job.id)

    def action_rollback(self) -> None:
        job = self.selected
        if job is None or not self.check_action("rollback", ()):
            return
        self._preview_rollback(job.id, self._checkpoint_choice())

    def action_cleanup(self) -> None:
        if self.check_action("cleanup", ()):
            self._preview_cleanup()

    # -- workers: the recovery library in a thread, one connection each ----------------
    def _begin(self, message: str) -> None:
        self.notify(message, timeout=3)
        self.busy = True
        self.refresh_bindings()

    def _end(self) -> None:
        self.busy = False
        self.refresh_bindings()
        self.poll_now()

    @work(thread=True, group="recovery", exit_on_error=False)
    def _preview_rollback(self, job_id: str, to_checkpoint: int | None) -> None:
        self.app.call_from_thread(self._begin, f"job {job_id}: finding what a rollback removes …")
        try:
            report = self.console_app.with_store(lambda s: api.rollback(
                s, job_id, self.console_app.settings, to_checkpoint=to_checkpoint, dry_run=True))
        except UserError as exc:
            self.app.call_from_thread(self._fail, str(exc))
            return
        self.app.call_from_thread(self._confirm_rollback, report)

    def _confirm_rollback(self, report: RollbackSummary) -> None:
        target = (f"back to checkpoint {report.to_checkpoint}" if report.to_checkpoint
                  else "entirely")
        title = f"Roll back job {report.job_id} {target}?"

        def answer(yes: bool | None) -> None:
            if yes:
                self.notify(f"rolling back job {report.job_id} …", timeout=3)
                self._rollback(report.job_id, report.to_checkpoint)
            else:
                self._end()
        self.app.push_screen(ConfirmModal(title, rollback_text(report)), answer)

    @work(thread=True, group="recovery", exit_on_error=False)
    def _rollback(self, job_id: str, to_checkpoint: int | None) -> None:
        try:
            report = self.console_app.with_store(lambda s: api.rollback(
                s, job_id, self.console_app.settings, to_checkpoint=to_checkpoint))
        except UserError as exc:
            self.app.call_from_thread(self._fail, str(exc))
            return
        self.app.call_from_thread(self._done, f"job {job_id}: removed {report.rows:,} rows; "
                                              f"status {report.status}")

    @work(thread=True, group="recovery", exit_on_error=False)
    def _preview_cleanup(self) -> None:
        self.app.call_from_thread(self._begin, "finding what cleanup would remove …")
        try:
            app = self.console_app
            actions = app.with_store(lambda s: api.cleanup(s, app.settings, dry_run=True))
        except UserError as exc:
            self.app.call_from_thread(self._fail, str(exc))
            return
        self.app.call_from_thread(self._confirm_cleanup, actions)

    def _confirm_cleanup(self, actions: list[CleanupAction]) -> None:
        if not actions:
            self._done("nothing to clean up")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._cleanup()
            else:
                self._end()
        body = Text("\n".join(a.line() for a in actions))
        self.app.push_screen(ConfirmModal(f"Clean up? ({len(actions)} actions)", body), answer)

    @work(thread=True, group="recovery", exit_on_error=False)
    def _cleanup(self) -> None:
        try:
            actions = self.console_app.with_store(lambda s: api.cleanup(s, self.console_app.settings))
        except UserError as exc:
            self.app.call_from_thread(self._fail, str(exc))
            return
        self.app.call_from_thread(self._done, f"cleanup: {len(actions)} actions done")

    def _fail(self, message: str) -> None:
        self.notify(message, severity="error", timeout=8)
        self._end()

    def _done(self, message: str) -> None:
        self.notify(message)
        self._end()


def rollback_text(report: RollbackSummary | Mapping[str, Any]) -> Text:
    """What a rollback will remove, from its dry run (as the facade returns it, or as
    ``rollback --json`` printed it)."""
    r = report if isinstance(report, RollbackSummary) else api.rollback_summary(dict(report))
    out = Text(f"This removes {r.rows:,} rows:\n")
    for line in r.change_lines():
        out.append(f"  {line}\n")
    if not r.to_checkpoint:
        out.append("The job becomes rolled_back (its workspace is removed).\n")
    else:
        out.append("The job becomes interrupted: resume continues from the checkpoint.\n")
    return out


def _batch_file(found: tuple[int | None, str] | None) -> str:
    """'p1 b.csv.gz' (a Dask job's part and its file), 'b.csv.gz' (a local job's)."""
    if found is None:
        return ""
    part, path = found
    name = PurePath(path).name
    return name if part is None else f"p{part} {name}"


def job_details(j: Job) -> Text:
    out = Text()
    out.append(f"pipeline   {j.pipeline_name} ({j.pipeline_file})\n")
    out.append(f"source     {j.source_path} ({fmt.num(j.bytes_total)} bytes)\n")
    files = api.file_lines(j)       # a job of many files, as `show` lists them
    if files:
        count = api.file_count(j)
        more = any(line.startswith("… ") for line in files)
        out.append(f"files      {fmt.num(count)}, in this order"
                   + (f" (etlconsole show {j.id} --files lists them all)" if more else "") + ":\n")
        for line in files:
            out.append(f"  {line}\n")
    for d in j.destinations:
        path, table = named(d, d.get("table"))       # postgres://host/db schema.table
        table = f" table {table}" if table else ""
        out.append(f"dest       {d['kind']}: {path}{table} mode {d['mode']}\n")
    out.append("status     ")
    out.append_text(fmt.status(j.status))
    out.append(f"\nstarted    {fmt.stamp(j.started_at)}  finished {fmt.stamp(j.finished_at)}"
               f"  ({fmt_duration(j.elapsed_s)})\n")
    out.append(f"rows       read {fmt.num(j.rows_read)}  loaded {fmt.num(j.rows_loaded)}  "
               f"rejected {fmt.num(j.rows_rejected)}  warned {fmt.num(j.rows_warned)}\n")
    budget = j.settings.get("max_memory_mb")
    out.append(f"memory     peak RSS {j.peak_rss_mb or 0:.0f} MB (budget {budget} MB)  "
               f"retries {j.retries}\n")
    if j.error:
        out.append(f"error      {j.error}\n", style="red")
    for p in phase_lines(j):
        # a branch's line: what its destination loaded
        out.append(f"  {p.label:<20} in {p.rows_in:>10,} {'loaded' if p.branch else 'out'} "
                   f"{p.rows_out:>10,} rej {p.rejected:>7,} {p.seconds:>6.2f}s\n")
    return out
