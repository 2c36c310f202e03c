"""Rejects: the selected job's rejected rows grouped by rule/column, the rows, CSV export."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from .. import format as fmt
from ..widgets.table import LiveTable
from .base import UNCHANGED, PolledScreen
from .modals import RejectModal

PAGE = 100          # reject rows read per poll: one page, never the whole table
ALL = "*"


@dataclass
class RejectsData:
    job: dict | None
    groups: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    group_key: str = ALL
    page: int = 0

    @property
    def total(self) -> int:
        return sum(g["count"] for g in self.groups)

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
    BINDINGS = [Binding("e", "export", "Export CSV"),
                Binding("right_square_bracket", "page(1)", "Next page"),
                Binding("left_square_bracket", "page(-1)", "Prev page")]
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

    def on_mount(self) -> None:
        super().on_mount()
        self.interval *= self.interval_factor
        self.query_one("#groups", LiveTable).focus()

    def compose(self) -> ComposeResult:
        yield Static("rejects", id="rejects-title", markup=False)
        yield LiveTable([("phase", "phase"), ("rule", "rule"), ("column", "column"),
                         ("rows", "count")], id="groups")
        yield Static("", id="rejects-caption", markup=False)
        yield RejectRows([("row", "row"), ("column", "column"), ("value", "value"),
                          ("rule", "rule"), ("message", "message")], id="reject-rows",
                         cursor_type="row")
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
            job = store.job(self.console_app.selected_job_id or "last")
        except Exception:
            return RejectsData(None)
        if self._groups_key is not None and job["id"] != self._groups_key[0]:
            self.page = 0                   # another job: from its first page
        if (job["id"], job.get("updated_at")) != self._groups_key:
            self._groups = store.reject_groups(job["id"])
            self._groups_key = (job["id"], job.get("updated_at"))
        key, page = self.group, self.page
        page_key = (self._groups_key, key, page)
        if page_key != self._page_key:
            self._rows = self._read_page(store, job["id"], key, page)
            self._page_key = page_key
        return RejectsData(job, self._groups, self._rows, key, page)

    @staticmethod
    def _read_page(store, job_id: str, key: str, page: int) -> list[dict]:
        if key == ALL:
            return store.reject_rows(job_id, limit=PAGE, offset=page * PAGE)
        phase, rule, column = json.loads(key)
        return store.reject_rows(job_id, phase=phase, rule=rule, column=column, grouped=True,
                                 limit=PAGE, offset=page * PAGE)

    def render_data(self, data: RejectsData) -> None:
        self.data = data
        self.refresh_bindings()     # "Export CSV" depends on the data (check_action)
        title = self.query_one("#rejects-title", Static)
        if data.job is None:
            title.update(Text("rejects: no jobs yet"))
            return
        total = data.total
        title.update(Text.assemble(("rejects of job ", "bold"), (data.job["id"], "bold"), "  ",
                                   fmt.status(data.job["status"]),
                                   f"  {data.job['pipeline_name']}  {total:,} rejected rows"))
        self.query_one("#groups", LiveTable).sync(
            [(ALL, ("(all)", "", "", fmt.num(total)))] +
            [(group_key(g), (g["phase"], g["rule"], g["column"] or "", fmt.num(g["count"])))
             for g in data.groups])
        self.query_one("#rejects-caption", Static).update(_caption(data))
        rows = self.query_one("#reject-rows", RejectRows)
        rows.rejects = {str(r["id"]): r for r in data.rows}
        rows.sync([(str(r["id"]), (fmt.num(r["row"]), r["column"] or "",
                                   _short(_rejected_value(r)), r["rule"], r["message"]))
                   for r in data.rows])
        self._render_values(rows.highlighted_reject())

    def _render_values(self, reject: dict | None) -> None:
        """The highlighted reject's values, all of them, wrapped under the table."""
        pane = self.query_one("#reject-values", Static)
        if reject is None:
            pane.update("")
            return
        out = Text(f"row {reject['row']:,}: ", style="bold")
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
            self.app.push_screen(RejectModal(reject, self.data.job))

    def check_action(self, action: str, parameters: tuple) -> bool | None:
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
            n = self.console_app.with_store(lambda s: write_rejects_csv(s, job_id, path))
        except OSError as exc:
            self.app.call_from_thread(self.notify, f"{path}: {exc}", severity="error")
            return
        self.app.call_from_thread(self.notify, f"wrote {n:,} rejected rows to {path}")


def write_rejects_csv(store, job_id: str, path: Path) -> int:
    """The same columns as 'etlconsole rejects JOB --csv FILE'."""
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["row", "phase", "rule", "column", "message", "values"])
        for r in store.rejects(job_id):
            w.writerow([r["row"], r["phase"], r["rule"], r["column"], r["message"],
                        json.dumps(r["values"], ensure_ascii=False)])
            n += 1
    return n


class RejectRows(LiveTable):
    """The page of rejected rows; Enter opens the highlighted one in full."""

    BINDINGS = [Binding("enter", "screen.open_reject", "Open reject")]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rejects: dict[str, dict] = {}

    def highlighted_reject(self) -> dict | None:
        return self.rejects.get(self.cursor_key) if self.cursor_key else None


def _caption(data: RejectsData) -> str:
    which = "all groups" if data.group_key == ALL else "the selected group"
    n = data.shown_total
    if n <= PAGE:
        return f"rows of {which}   Enter: open one   e: export all to CSV"
    first = data.page * PAGE + 1
    last = min(n, first + PAGE - 1)
    return f"rows {first:,}-{last:,} of {n:,} ({which})   [ ]: pages   Enter: open one   e: export"


def _rejected_value(r: dict) -> object:
    values = r["values"] or {}
    return values.get(r["column"], "") if r["column"] else ""


def _short(value: object, width: int = 24) -> str:
    """A value on one line, cut with an ellipsis (the whole value: Enter)."""
    text = "" if value is None else str(value)
    text = text.replace("\n", "⏎").replace("\r", "")
    return text if len(text) <= width else text[:width - 1] + "…"
