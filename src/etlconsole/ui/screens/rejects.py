"""Rejects: the selected job's rejected rows grouped by rule/column (open and resolved),
the rows, CSV export; fixing them (issue 16): Enter opens one, e in it edits its values,
r replays the edited rejects (or sets a column over the selected group) after a
confirmation that shows the dry run. Replays run as ``etlconsole replay`` subprocesses
from a thread worker, never in the console's process."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rich.text import Text
from textual import work
from textual.worker import get_current_worker
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from ... import api
from ...records import FixFile, Job, JobStatus, ReplayStatus
from .. import format as fmt
from ..widgets.table import LiveTable
from .base import UNCHANGED, PolledScreen
from .modals import ConfirmModal, RejectModal
from .replay import (Edit, EditRejectModal, FixFileModal, SetModal, group_where, replay_text,
                     source_row, write_fix_rows)

PAGE = 100          # reject rows read per poll: one page, never the whole table
ALL = "*"
FILE_COLUMN_WIDTH = 120     # from this width, a job of many files has a "file" column
ROW_COLUMNS = [("row", "row"), ("state", "state"), ("column", "column"), ("value", "value"),
               ("rule", "rule"), ("message", "message")]


@dataclass
class RejectsData:
    job: dict | None
    groups: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    group_key: str = ALL
    page: int = 0
    many_files: bool = False      # rows carry "file" and "file_record" (ADR 0025)

    @property
    def total(self) -> int:
        return sum(g["count"] for g in self.groups)

    @property
    def resolved(self) -> int:
        return sum(g.get("resolved") or 0 for g in self.groups)

    def group(self) -> dict | None:
        return next((g for g in self.groups if group_key(g) == self.group_key), None)

    @property
    def shown_total(self) -> int:
        """Rows in the selected group (all groups: every reject of the job)."""
        if self.group_key == ALL:
            return self.total
        return next((g["count"] for g in self.groups if group_key(g) == self.group_key), 0)


def group_key(g: dict) -> str:
    return json.dumps([g["phase"], g["rule"], g["column"]])


class RejectsScreen(PolledScreen):
    DEFAULT_CSS = """
    RejectsScreen { layout: vertical; }
    #rejects-title { height: 1; background: $boost; text-style: bold; }
    #groups { height: auto; max-height: 7; }
    #rejects-caption { height: 1; color: $text-muted; }
    #reject-rows { height: 1fr; min-height: 4; }
    #reject-values { height: auto; max-height: 4; background: $boost; }
    """
    # Short labels, and the page keys only in the caption ("[ ]: pages") and the palette:
    # at 80 columns the footer must still show the screens' keys and q Quit.
    BINDINGS = [Binding("e", "export", "Export"),
                Binding("r", "replay", "Replay"),
                Binding("f", "fix_file", "Fix file"),
                Binding("F", "replay_file", "Replay file"),
                # not in the footer (80 columns): the palette lists it (PALETTE_ONLY)
                Binding("u", "undo_replay", "Undo replay", show=False),
                Binding("right_square_bracket", "page(1)", "Next page", show=False),
                Binding("left_square_bracket", "page(-1)", "Prev page", show=False)]
    PALETTE_ONLY = ("undo_replay",)
    interval_factor = 4      # rejects change slowly: poll less often than the monitor

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.group = ALL                   # a row key of the groups table
        self.page = 0
        self.data: RejectsData | None = None
        self._groups_key: tuple | None = None    # (job id, updated_at) the groups were read at
        self._groups: list[dict] = []
        self._page_key: tuple | None = None      # what the shown page was read for
        self._rows: list[dict] = []
        self._many_files = False
        self.edits: dict[int, Edit] = {}         # record -> edited values, not replayed yet
        self.edits_job: str | None = None
        self.replaying = False                   # a dry run or replay subprocess is running

    def on_mount(self) -> None:
        super().on_mount()
        self.interval *= self.interval_factor
        self.query_one("#groups", LiveTable).focus()

    def compose(self) -> ComposeResult:
        yield Static("rejects", id="rejects-title", markup=False)
        yield LiveTable([("phase", "phase"), ("rule", "rule"), ("column", "column"),
                         ("rows", "count"), ("open", "open"), ("resolved", "resolved")],
                        id="groups")
        yield Static("", id="rejects-caption", markup=False)
        yield RejectRows(ROW_COLUMNS, id="reject-rows", cursor_type="row")
        yield Static("", id="reject-values", markup=False)
        yield Footer(compact=True, show_command_palette=False)

    def collect(self) -> RejectsData | object:
        """Reads only what changed: nothing while the store is unchanged; the groups when
        the job's row changed (its rejects are counted when a batch commits); one page of
        rows when the job, the group or the page changed."""
        store = self.store
        changed = self.store_changed()
        if not (changed or self.forced):
            return UNCHANGED
        try:
            job = api.job_row(store, self.console_app.selected_job_id or "last")
        except Exception:
            return RejectsData(None)
        if self._groups_key is not None and job["id"] != self._groups_key[0]:
            self.page = 0                   # another job: from its first page
        # a replay moves rows_rejected/rows_resolved without touching updated_at
        groups_key = (job["id"], job.get("updated_at"), job.get("rows_rejected"),
                      job.get("rows_resolved"))
        if groups_key != self._groups_key:
            self._groups = api.reject_groups(store, job["id"])
            self._groups_key = groups_key
        key, page = self.group, self.page
        page_key = (self._groups_key, key, page)
        if page_key != self._page_key:
            self._rows = self._read_page(store, job["id"], key, page)
            # a job of many files: each record's file and record within it, from where the
            # job recorded each file starts (the job's row: re-read when it changes)
            locate = api.file_locator(Job.from_row(job))
            self._rows = [{**r, **locate(r["row"])} for r in self._rows]
            self._many_files = bool(locate(1)) or any("file" in r for r in self._rows)
            self._page_key = page_key
        return RejectsData(job, self._groups, self._rows, key, page, self._many_files)

    @staticmethod
    def _read_page(store, job_id: str, key: str, page: int) -> list[dict]:
        if key == ALL:
            return api.reject_rows(store, job_id, limit=PAGE, offset=page * PAGE)
        phase, rule, column = json.loads(key)
        return api.reject_rows(store, job_id, phase=phase, rule=rule, column=column, grouped=True,
                                 limit=PAGE, offset=page * PAGE)

    def render_data(self, data: RejectsData) -> None:
        self.data = data
        self.refresh_bindings()     # "Export CSV" depends on the data (check_action)
        title = self.query_one("#rejects-title", Static)
        if data.job is None:
            title.update(Text("rejects: no jobs yet"))
            return
        if data.job["id"] != self.edits_job:          # edits belong to one job
            self.edits, self.edits_job = {}, data.job["id"]
        total, resolved = data.total, data.resolved
        title.update(Text.assemble(("rejects of job ", "bold"), (data.job["id"], "bold"), "  ",
                                   fmt.status(data.job["status"]),
                                   f"  {data.job['pipeline_name']}  {total:,} rejects: "
                                   f"{total - resolved:,} open, {resolved:,} resolved"))
        self.query_one("#groups", LiveTable).sync(
            [(ALL, ("(all)", "", "", fmt.num(total), fmt.num(total - resolved), fmt.num(resolved)))] +
            [(group_key(g), (g["phase"], g["rule"], g["column"] or "", fmt.num(g["count"]),
                             fmt.num(g["open"]), fmt.num(g["resolved"])))
             for g in data.groups])
        self._render_rows()

    def _render_rows(self) -> None:
        data = self.data
        if data is None:
            return
        self.query_one("#rejects-caption", Static).update(_caption(data, len(self.edits)))
        rows = self.query_one("#reject-rows", RejectRows)
        rows.rejects = {str(r["id"]): r for r in data.rows}
        # the file column only where it leaves the others readable (80 columns: the
        # values line under the table and Enter say the file)
        with_file = data.many_files and self.size.width >= FILE_COLUMN_WIDTH
        rows.set_columns(ROW_COLUMNS[:1] + [("file", "file")] + ROW_COLUMNS[1:] if with_file
                         else ROW_COLUMNS)
        rows.sync([(str(r["id"]), (fmt.num(r["row"]),
                                   *((file_cell(r),) if with_file else ()),
                                   self._state(r), r["column"] or "",
                                   self._value(r), r["rule"], r["message"]))
                   for r in data.rows])
        self._render_values(rows.highlighted_reject())

    def on_resize(self) -> None:
        self._render_rows()         # the file column comes and goes with the width

    def _value(self, r: dict) -> str:
        """The rejected value; for an edited reject, the value the edit gives it."""
        edit = self.edits.get(r["row"])
        fixed = r.get("source") if r.get("resolved_at") else None
        if edit is None and fixed and r["column"] in fixed:       # as the replay loaded it
            return "→ " + _short(fixed[r["column"]], 22)
        if edit is None:
            return _short(_rejected_value(r))
        names = self._names()
        if edit.fix.fields is None:
            return "→ " + _short(edit.fix.raw, 22)
        if r["column"] in names:
            return "→ " + _short(edit.fix.fields[names.index(r["column"])], 22)
        return _short(_rejected_value(r))

    def _names(self) -> list[str]:
        """The source's column names (of the job shown)."""
        job = self.data.job if self.data is not None else None
        return list(((job or {}).get("dialect") or {}).get("names") or [])

    def _state(self, r: dict) -> Text:
        """resolved (by which replay), edited here (not replayed yet), or open."""
        if r.get("resolved_at"):
            return Text(f"✓ #{r['resolved_by']}", style="green")
        if r["row"] in self.edits:
            return Text("✎ edited", style="yellow")
        if r.get("replay"):
            return Text(f"again #{r['replay']}", style="red")
        return Text("open", style="dim")

    def _render_values(self, reject: dict | None) -> None:
        """The highlighted reject's values, all of them, wrapped under the table."""
        pane = self.query_one("#reject-values", Static)
        if reject is None:
            pane.update("")
            return
        where = f" ({file_cell(reject)})" if reject.get("file") else ""
        out = Text(f"row {reject['row']:,}{where}: ", style="bold")
        if reject.get("resolved_at"):
            out.append(f"resolved by replay {reject['resolved_by']} · ", style="green")
            if reject.get("source"):            # the record as the replay's fix gave it
                reject = {**reject, "values": reject["source"]}
        edit = self.edits.get(reject["row"])
        if edit is not None:
            out.append("edited (r replays it): ", style="yellow")
            names = self._names()
            values = ({"raw": edit.fix.raw} if edit.fix.fields is None
                      else dict(zip(names, edit.fix.fields, strict=False)))
            reject = {**reject, "values": values}
        for i, (col, value) in enumerate((reject["values"] or {}).items()):
            style = "bold red" if col == reject["column"] else ""
            out.append(" · " if i else "")
            out.append(f"{col}=", style="dim")
            out.append(_short(value, 40), style=style)
        pane.update(out)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "groups" and event.row_key is not None:
            key = event.row_key.value          # the groups' rows are keyed by text
            if key is not None and key != self.group:
                self.group, self.page = key, 0
                self.poll_now()
        elif event.data_table.id == "reject-rows":
            self._render_values(self.query_one("#reject-rows", RejectRows).highlighted_reject())

    def action_page(self, step: int) -> None:
        if self.check_action("page", (step,)):
            self.page += step
            self.poll_now()

    def action_open_reject(self) -> None:
        reject = self.query_one("#reject-rows", RejectRows).highlighted_reject()
        if reject is not None and self.data and self.data.job:
            job = self.data.job

            def then(choice: str | None) -> None:
                if choice == "edit":
                    self.edit_reject(reject, job)
            self.app.push_screen(RejectModal(reject, job), then)

    # -- fixing and replaying (issue 16) -------------------------------------------------
    def edit_reject(self, reject: dict, job: dict) -> None:
        """The edit form, pre-filled with the pending edit or the record as the source had it."""
        if reject.get("resolved_at") or reject["row"] is None:
            self.notify("a resolved reject (or one without a record number) is not edited",
                        severity="warning")
            return
        edit = self.edits.get(reject["row"])
        if edit is not None:
            self._show_edit(reject, job, edit.fix, edit.original)
        else:
            self._load_edit(reject, job)

    @work(thread=True, group="edit", exit_on_error=False)
    def _load_edit(self, reject: dict, job: dict) -> None:
        try:
            fix = source_row(job, reject)
        except Exception as exc:         # the source unreadable: say so, stay on the screen
            self.app.call_from_thread(self.notify, f"cannot read row {reject['row']}: {exc}",
                                      severity="error")
            return
        self.app.call_from_thread(self._show_edit, reject, job, fix)

    def _show_edit(self, reject: dict, job: dict, fix, original=None) -> None:
        original = original or fix

        def kept(result) -> None:
            if result is None:
                return
            if result == original:          # nothing changed (or put back): no edit
                if self.edits.pop(reject["row"], None) is not None:
                    self.notify(f"row {reject['row']:,}: edit dropped", timeout=3)
            else:
                self.edits[reject["row"]] = Edit(reject, result, original)
                self.notify(f"row {reject['row']:,} edited ({len(self.edits)} edited): r "
                            "replays after a dry run", timeout=3)
            if self.data is not None:
                self._render_rows()
            self.refresh_bindings()
        self.app.push_screen(EditRejectModal(reject, job, fix, original), kept)

    def action_replay(self) -> None:
        """Replay the edited rejects; without edits, set a column over the selected group's
        open rejects. A dry run first, shown in a confirmation."""
        if not self.check_action("replay", ()):
            return
        if self.replaying:
            self.notify("a replay is running; wait for it to end", severity="warning")
            return
        data = self.data
        if data is None or data.job is None:
            return
        job: dict = data.job
        if not self._replayable(job):
            return
        if self.edits:
            n = len(self.edits)
            what = f"Replay {n} edited reject{'s' if n != 1 else ''} of job {job['id']}?"
            self.replaying = True
            self._preview(job, what, edits=list(self.edits.values()))
            return
        group = data.group()
        if group is None:
            self.notify("nothing edited: open a reject (Enter) and edit it (e), or select a "
                        "group and press r to set a column over it", severity="warning")
            return
        if not group["open"]:
            self.notify("every reject of this group is resolved", severity="warning")
            return

        def chosen(assignment: str | None) -> None:
            if assignment:
                where = group_where(group)
                what = (f"Replay {group['open']:,} open rejects of {group['rule']}/"
                        f"{group['column'] or '-'} with {assignment}?")
                self.replaying = True
                self._preview(job, what, sets=(assignment,), where=where)
        self.app.push_screen(SetModal(group, job), chosen)

    def _replayable(self, job: dict) -> bool:
        if job["status"] != JobStatus.SUCCEEDED:
            self.notify(f"job {job['id']} is {job['status']}: only a succeeded job's rejects "
                        "are replayed", severity="error")
            return False
        return True

    def _fix_file_of(self, job: dict) -> Path:
        """Where f writes the job's fix file (and F looks first): the export folder."""
        return self.console_app.export_dir / f"fix-{job['id']}.csv"

    def action_fix_file(self) -> None:
        """Write the job's fix file (``rejects JOB --fix``) to the export folder."""
        if self.check_action("fix_file", ()) and self.data is not None and self.data.job:
            self._write_fix_file(self.data.job["id"], self._fix_file_of(self.data.job))

    @work(thread=True, group="export", exit_on_error=False)
    def _write_fix_file(self, job_id: str, path: Path) -> None:
        def write(store) -> FixFile:    # the job read again: as the CLI sees it now
            return api.write_fix_file(store, job_id, path)
        try:
            done = self.console_app.with_store(write)
        except Exception as exc:          # UserError: its one line; the screen stays usable
            self.app.call_from_thread(self.notify, f"fix file not written: {exc}",
                                      severity="error", timeout=10)
            return
        extra = f" ({done.raw:,} as raw text)" if done.raw else ""
        self.app.call_from_thread(
            self.notify, f"wrote {done.rows:,} open rejects{extra} to {path}: fix them, "
            "then F replays it" + (f"\n{done.note}" if done.note else ""), timeout=10)

    def action_replay_file(self) -> None:
        """Replay a fix file: its path, then the dry run's confirmation, as r."""
        if not self.check_action("replay_file", ()) or self.data is None or self.data.job is None:
            return
        if self.replaying:
            self.notify("a replay is running; wait for it to end", severity="warning")
            return
        job: dict = self.data.job
        if not self._replayable(job):
            return

        def chosen(path: Path | None) -> None:
            if path is not None and not self.replaying:
                self.replaying = True
                self._preview(job, f"Replay {path.name} into job {job['id']}?", fix_file=path)
        self.app.push_screen(FixFileModal(job, self._fix_file_of(job), self.console_app.export_dir),
                             chosen)

    def _fix_path(self, job: dict) -> Path:
        """Fix files of the console go to the job's workspace (a temp dir without one)."""
        workspace = self.console_app.state_path.parent / "jobs" / job["id"]
        folder = workspace / "fixes" if workspace.is_dir() else Path(tempfile.mkdtemp(prefix="etlfix-"))
        return folder / f"console-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}.csv"

    @work(thread=True, group="replay", exit_on_error=False)
    def _preview(self, job: dict, what: str, *, edits: list[Edit] | None = None,
                 sets: tuple[str, ...] = (), where: str | None = None,
                 fix_file: Path | None = None) -> None:
        """(worker) write the fix file (of the edits; or the operator's ``fix_file``), run
        the dry run, then ask (``self.replaying`` is set by the caller, on the UI thread)."""
        try:
            if edits:
                fix_file = write_fix_rows(job, edits, self._fix_path(job))
            self.app.call_from_thread(self.notify, "dry run …", timeout=2)
            summary, error = self._call(job["id"], fix_file, sets, where, dry_run=True)
        except OSError as exc:
            summary, error = None, f"cannot write the fix file: {exc}"
        except Exception as exc:          # whatever happened, the screen must not stay busy
            summary, error = None, f"{type(exc).__name__}: {exc}"
        if summary is None:
            self.replaying = False
            self.app.call_from_thread(self.notify, error, severity="error", timeout=10)
            return
        records = [e.fix.record for e in edits or []]
        self.app.call_from_thread(self._confirm, job, what, summary, fix_file, sets, where, records)

    def _call(self, job_id: str, fix_file: Path | None, sets: tuple[str, ...], where: str | None,
              *, dry_run: bool) -> tuple[dict | None, str | None]:
        """``etlconsole replay … --json`` in a subprocess (worker thread): its summary, or
        None and the command's error line."""
        launched = self.console_app.launcher.replay(job_id, fix_file, sets=sets, where=where,
                                            dry_run=dry_run)
        worker = get_current_worker()
        while launched.wait(0.25) is None:
            if worker.is_cancelled:     # the console is closing: the replay, in its own
                return None, "cancelled"        # session, finishes without it
        summary = launched.output_json()
        if summary is None or (summary.get("status") != JobStatus.SUCCEEDED):
            error = launched.error_line() or (summary or {}).get("error") or \
                f"replay exited with {launched.returncode} (log: {launched.log_path})"
            return (summary if summary and not dry_run else None), error
        return summary, None

    def _confirm(self, job: dict, what: str, summary: dict, fix_file: Path | None,
                 sets: tuple[str, ...], where: str | None, records: list[int]) -> None:
        def answer(yes: bool | None) -> None:
            if yes:
                self.notify(f"replaying into job {job['id']} …", timeout=3)
                self._replay(job, fix_file, sets, where, records)
            else:
                self.replaying = False
        if not summary["rows_loaded"]:
            what = what.rstrip("?") + ": nothing would load. Replay anyway?"
        self.app.push_screen(ConfirmModal(what, replay_text(summary)), answer)

    @work(thread=True, group="replay", exit_on_error=False)
    def _replay(self, job: dict, fix_file: Path | None, sets: tuple[str, ...], where: str | None,
                records: list[int]) -> None:
        try:
            summary, error = self._call(job["id"], fix_file, sets, where, dry_run=False)
        finally:
            self.replaying = False
        self.app.call_from_thread(self._replayed, summary, error, records)

    def _replayed(self, summary: dict | None, error: str | None, records: list[int]) -> None:
        if summary is not None and summary.get("replay") is not None:
            for record in records:          # loaded, or rejected again with the edit kept
                self.edits.pop(record, None)     # in the store (the next edit starts there)
            j = summary.get("job") or {}
            self.notify(f"replay {summary['replay']} of job {summary['job_id']}: loaded "
                        f"{summary['rows_loaded']:,}, rejected again {summary['rows_rejected']:,}"
                        f", refused {summary['rows_refused']:,}"
                        + (f"; job: read {j['rows_read']:,} = loaded {j['rows_loaded']:,} + open "
                           f"{j['rows_rejected']:,}" if j else ""),
                        severity="information" if error is None else "error", timeout=10)
        if error is not None and (summary is None or summary.get("replay") is None):
            self.notify(error, severity="error", timeout=10)
        self.refresh_bindings()
        self.poll_now()

    # -- undoing a replay (rollback JOB --replay N) -------------------------------------
    def action_undo_replay(self) -> None:
        """Undo the job's latest replay that loaded rows, after a confirmation that shows
        the rollback's dry run (the CLI's rules: it refuses what it refuses)."""
        if not self.check_action("undo_replay", ()) or self.data is None or self.data.job is None:
            return
        if self.replaying:
            self.notify("a replay is running; wait for it to end", severity="warning")
            return
        self.replaying = True
        self._undo_preview(self.data.job)

    @work(thread=True, group="replay", exit_on_error=False)
    def _undo_preview(self, job: dict) -> None:
        """(worker) the latest replay holding rows, the rollback's dry run, then ask."""
        number: int | None = None
        summary: dict | None = None
        error: str | None = None
        try:
            found = self.console_app.with_store(lambda s: api.replays(s, job["id"]))
            held = [r for r in found
                    if r["status"] != ReplayStatus.ROLLED_BACK and r["batch_first"] is not None]
            if not held:
                summary, error = None, f"job {job['id']}: no replay holds rows, nothing to undo"
            else:
                number = held[-1]["number"]
                summary, error = self._call_rollback(job["id"], number, dry_run=True)
        except Exception as exc:          # whatever happened, the screen must not stay busy
            summary, error = None, f"{type(exc).__name__}: {exc}"
        if summary is None or number is None:
            self.replaying = False
            self.app.call_from_thread(self.notify, error or "rollback failed", severity="error",
                                      timeout=10)
            return
        self.app.call_from_thread(self._confirm_undo, job, number, summary)

    def _call_rollback(self, job_id: str, number: int, *,
                       dry_run: bool) -> tuple[dict | None, str | None]:
        """``etlconsole rollback JOB --replay N … --json`` in a subprocess (worker thread)."""
        launched = self.console_app.launcher.rollback_replay(job_id, number, dry_run=dry_run)
        worker = get_current_worker()
        while launched.wait(0.25) is None:
            if worker.is_cancelled:
                return None, "cancelled"
        summary = launched.output_json()
        if launched.returncode != 0 or summary is None:
            return None, (launched.error_line() or
                          f"rollback exited with {launched.returncode} (log: {launched.log_path})")
        return summary, None

    def _confirm_undo(self, job: dict, number: int, summary: dict) -> None:
        def answer(yes: bool | None) -> None:
            if yes:
                self.notify(f"undoing replay {number} of job {job['id']} …", timeout=3)
                self._undo(job, number)
            else:
                self.replaying = False
        n = summary["rows"]
        body = Text(f"This removes {n:,} row{'' if n == 1 else 's'} the replay loaded; its "
                    "rejects are open again.\n\n")
        for line in api.rollback_summary(summary).change_lines():
            body.append(f"  {line}\n")
        body.append(f"\n(etlconsole rollback {job['id']} --replay {number})", style="dim")
        self.app.push_screen(ConfirmModal(f"Undo replay {number} of job {job['id']}?", body),
                             answer)

    @work(thread=True, group="replay", exit_on_error=False)
    def _undo(self, job: dict, number: int) -> None:
        try:
            summary, error = self._call_rollback(job["id"], number, dry_run=False)
        except Exception as exc:
            summary, error = None, f"{type(exc).__name__}: {exc}"
        finally:
            self.replaying = False
        self.app.call_from_thread(self._undone, number, summary, error)

    def _undone(self, number: int, summary: dict | None, error: str | None) -> None:
        if summary is None:
            self.notify(error or "rollback failed", severity="error", timeout=10)
        else:
            j = summary.get("job") or {}
            self.notify(f"replay {number} of job {summary['job_id']} undone: removed "
                        f"{summary['rows']:,} rows, {summary.get('reopened') or 0:,} rejects "
                        "open again"
                        + (f"; job: read {j['rows_read']:,} = loaded {j['rows_loaded']:,} + open "
                           f"{j['rows_rejected']:,}" if j else ""), timeout=10)
        self.refresh_bindings()
        self.poll_now()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("replay", "fix_file", "replay_file", "undo_replay"):
            return True if self.data and self.data.job and self.data.groups else None
        if action == "export":
            return True if self.data and self.data.job and self.data.groups else None
        if action == "page":
            if not self.data or not self.data.job:
                return None
            target = self.page + parameters[0]
            return True if 0 <= target * PAGE < self.data.shown_total else None
        return True

    def action_export(self) -> None:
        if self.check_action("export", ()) and self.data is not None and self.data.job:
            job_id = self.data.job["id"]
            self._export(job_id, self.console_app.export_dir / f"rejects-{job_id}.csv")

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, job_id: str, path: Path) -> None:
        try:
            n = self.console_app.with_store(lambda s: api.export_rejects(s, job_id, path))
        except OSError as exc:
            self.app.call_from_thread(self.notify, f"{path}: {exc}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"wrote {n:,} rejected rows to {path}")


class RejectRows(LiveTable):
    """The page of rejected rows; Enter opens the highlighted one in full."""

    BINDINGS = [Binding("enter", "screen.open_reject", "Open reject")]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rejects: dict[str, dict] = {}

    def highlighted_reject(self) -> dict | None:
        return self.rejects.get(self.cursor_key) if self.cursor_key else None


def _caption(data: RejectsData, edited: int = 0) -> str:
    which = "all groups" if data.group_key == ALL else "this group"
    n = data.shown_total
    group = data.group()
    replay = f"   r: replay {edited} edited" if edited else (
        "" if group is None else "   r: fix the group" if group.get("open") else "   all resolved")
    if n <= PAGE:
        return f"rows of {which}   Enter: open (e: edit){replay}   e: export"
    first = data.page * PAGE + 1
    last = min(n, first + PAGE - 1)
    return f"rows {first:,}-{last:,} of {n:,} ({which})   [ ]: pages   Enter: open (e: edit){replay}"


def file_cell(r: dict) -> str:
    """'b.csv.gz:3': the name of the reject's file and its record within it."""
    if not r.get("file"):
        return ""
    return f"{Path(r['file']).name}:{r['file_record']:,}"


def _rejected_value(r: dict) -> object:
    values = r["values"] or {}
    return values.get(r["column"], "") if r["column"] else ""


def _short(value: object, width: int = 24) -> str:
    """A value on one line, cut with an ellipsis (the whole value: Enter)."""
    text = "" if value is None else str(value)
    text = text.replace("\n", "⏎").replace("\r", "")
    return text if len(text) <= width else text[:width - 1] + "…"
