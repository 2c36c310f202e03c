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
from .base import PolledScreen

ROW_LIMIT = 500
ALL = "*"


@dataclass
class RejectsData:
    job: dict | None
    groups: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    group_key: str = ALL


def group_key(g: dict) -> str:
    return json.dumps([g["phase"], g["rule"], g["column"]])


class RejectsScreen(PolledScreen):
    DEFAULT_CSS = """
    RejectsScreen { layout: vertical; }
    #rejects-title { height: 1; background: $boost; text-style: bold; }
    #groups { height: auto; max-height: 9; }
    #rejects-caption { height: 1; color: $text-muted; }
    #reject-rows { height: 1fr; }
    """
    BINDINGS = [Binding("e", "export", "Export CSV")]
    interval_factor = 4      # rejects change slowly: poll less often than the monitor

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.group = ALL
        self.data: RejectsData | None = None

    def on_mount(self) -> None:
        super().on_mount()
        self.interval *= self.interval_factor
        self.query_one("#groups", LiveTable).focus()

    def compose(self) -> ComposeResult:
        yield Static("rejects", id="rejects-title", markup=False)
        yield LiveTable([("phase", "phase"), ("rule", "rule"), ("column", "column"),
                         ("rows", "count")], id="groups")
        yield Static("", id="rejects-caption", markup=False)
        yield LiveTable([("row", "row"), ("rule", "rule"), ("column", "column"),
                         ("message", "message"), ("values", "values")], id="reject-rows",
                        cursor_type="row")
        yield Footer(compact=True, show_command_palette=False)

    def collect(self) -> RejectsData:
        store = self.store
        ref = self.app.selected_job_id or "last"
        try:
            job = store.job(ref)
        except Exception:
            return RejectsData(None)
        groups = store.reject_groups(job["id"])
        key = self.group
        if key == ALL:
            rows = store.reject_rows(job["id"], limit=ROW_LIMIT)
        else:
            phase, rule, column = json.loads(key)
            rows = store.reject_rows(job["id"], phase=phase, rule=rule, column=column,
                                     grouped=True, limit=ROW_LIMIT)
        return RejectsData(job, groups, rows, key)

    def render_data(self, data: RejectsData) -> None:
        self.data = data
        self.refresh_bindings()     # "Export CSV" depends on the data (check_action)
        title = self.query_one("#rejects-title", Static)
        if data.job is None:
            title.update(Text("rejects: no jobs yet"))
            return
        total = sum(g["count"] for g in data.groups)
        title.update(Text.assemble(("rejects of job ", "bold"), (data.job["id"], "bold"), "  ",
                                   fmt.status(data.job["status"]),
                                   f"  {data.job['pipeline_name']}  {total:,} rejected rows"))
        self.query_one("#groups", LiveTable).sync(
            [(ALL, ("(all)", "", "", fmt.num(total)))] +
            [(group_key(g), (g["phase"], g["rule"], g["column"] or "", fmt.num(g["count"])))
             for g in data.groups])
        shown = len(data.rows)
        caption = (f"rows of {'all groups' if data.group_key == ALL else 'the selected group'}"
                   f" (first {shown:,})" if shown >= ROW_LIMIT else
                   f"rows of {'all groups' if data.group_key == ALL else 'the selected group'}")
        self.query_one("#rejects-caption", Static).update(caption + "   e: export all to CSV")
        self.query_one("#reject-rows", LiveTable).sync([
            (str(r["id"]), (fmt.num(r["row"]), r["rule"], r["column"] or "", r["message"],
                            json.dumps(r["values"], ensure_ascii=False, default=str)[:200]))
            for r in data.rows])

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "groups" and event.row_key is not None:
            if event.row_key.value != self.group:
                self.group = event.row_key.value
                self.poll_now()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "export":
            return True if self.data and self.data.job and self.data.groups else None
        return True

    def action_export(self) -> None:
        if self.check_action("export", ()):
            self._export(self.data.job["id"], self.app.export_dir / f"rejects-{self.data.job['id']}.csv")

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, job_id: str, path: Path) -> None:
        try:
            n = self.app.with_store(lambda s: write_rejects_csv(s, job_id, path))
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
