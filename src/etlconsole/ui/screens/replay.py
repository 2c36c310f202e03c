"""Fixing rejects in the console (issue 16): edit one reject's values as the source had
them, set one column over a group, and the confirmation that shows a replay's dry run.

The console never replays in-process: the edits become a fix file (the format of
``etlconsole rejects JOB --fix``) and ``etlconsole replay JOB FILE`` runs in a subprocess
(see ``RejectsScreen``); this module holds the forms and the texts.
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

from ...api import EXTRA, FixRow, dialect_of, reason_text
from .modals import MODAL_CSS


@dataclass
class Edit:
    """A reject the operator edited, not replayed yet."""

    reject: dict
    fix: FixRow
    original: FixRow          # the record before the edit (as the source had it)


def source_row(job: dict, reject: dict) -> FixRow:
    """The reject's record as a fix file gives it: as the source had it (read again when the
    file is unchanged), as the last replay's fix gave it, or as kept where it was rejected.
    Reads the source file: call it from a worker thread."""
    from ...api import rows_for
    rows, _ = rows_for(job, [reject])
    fix = rows[0][1]
    if fix.fields is not None:       # text, as the form holds it (an empty field is "")
        fix = FixRow(fix.record, ["" if v is None else str(v) for v in fix.fields], None)
    return fix


def write_fix_rows(job: dict, edits: list[Edit], path: Path) -> Path:
    """The edits as a fix file: the source's header and dialect plus _etl_row, _etl_reason
    and _etl_raw (what ``etlconsole replay JOB FILE`` reads)."""
    d = dialect_of(job)
    name = codecs.lookup(d.encoding).name
    encoding = ("utf-8-sig" if d.bom else "utf-8") if name == "utf-8" else name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as f:
        w = csv.writer(f, delimiter=d.delimiter, quotechar=d.quote, lineterminator="\n")
        w.writerow([*d.names, *EXTRA])
        for e in sorted(edits, key=lambda e: e.fix.record):
            reason = reason_text(e.reject)
            if e.fix.fields is None:
                w.writerow(["" for _ in d.names] + [e.fix.record, reason, e.fix.raw or ""])
            else:
                w.writerow([*e.fix.fields, e.fix.record, reason, ""])
    return path


def group_where(group: dict) -> str:
    """The --where condition selecting one group's rejects (expression syntax of derive)."""
    column = f"column == {group['column']!r}" if group["column"] else "is_null(column)"
    return f"phase == {group['phase']!r} and rule == {group['rule']!r} and {column}"


def replay_text(s: dict) -> Text:
    """What a replay would do, from its dry run (``replay --dry-run --json``)."""
    d = s.get("destination") or {}
    where = f" (table {d['table']})" if d.get("table") else ""
    out = Text()
    n = s["rows_in"]
    out.append(f"dry run of {n:,} row{'' if n == 1 else 's'}: nothing written yet\n\n")
    out.append(f"would load {s['rows_loaded']:,}", style="bold green" if s["rows_loaded"] else "bold")
    out.append(f"  -> {d.get('path', '?')}{where}\n")
    out.append(f"would reject {s['rows_rejected']:,}", style="bold red" if s["rows_rejected"] else "bold")
    out.append("  (they stay open rejects, with the new reason)\n" if s["rows_rejected"] else "\n")
    if s.get("branch_rejected"):
        out.append(f"rejected in branches {s['branch_rejected']:,}\n")
    if s["rows_refused"]:
        out.append(f"refused {s['rows_refused']:,}  (already loaded or resolved)\n", style="yellow")
    shown = s["rejected"][:8]
    for r in shown:
        where = "/".join(x for x in (r["phase"], r["rule"], r["column"]) if x)
        out.append(f"  row {r['row']:,}: {where}: {r['message']}\n", style="red")
    if s["rows_rejected"] > len(shown):
        out.append(f"  … and {s['rows_rejected'] - len(shown):,} more\n", style="dim")
    for r in s["refused"][:4]:
        out.append(f"  row {r['row']:,}: refused, {r['reason']}\n", style="yellow")
    out.append("\nThe rows that pass load into the job's destination as part of job "
               f"{s['job_id']} (undo: rollback --replay N).", style="dim")
    return out


FORM_CSS = MODAL_CSS + """
{name} > Vertical {{ width: 90; }}
{name} VerticalScroll {{ height: auto; max-height: 60vh; }}
{name} .field {{ height: 1; }}
{name} .field Label {{ width: 18; color: $text-muted; }}
{name} .field Label.bad {{ color: $error; text-style: bold; }}
{name} .field Input {{ width: 1fr; }}
{name} .hint {{ height: auto; color: $text-muted; }}
"""


class EditRejectModal(ModalScreen[FixRow | None]):
    """A form of the source's fields, pre-filled with the reject's record as the source had
    it (the rejected column focused, its text selected: type to replace). Enter keeps the
    edit (replay it with r), Esc cancels, ctrl+r puts the source's values back (kept
    unchanged, the edit is dropped). A record that did not split into fields is one line
    of raw text (the cursor at its end, nothing selected), split again by the replay."""

    DEFAULT_CSS = FORM_CSS.format(name="EditRejectModal")
    BINDINGS = [Binding("escape", "cancel", "Cancel"),
                Binding("ctrl+s", "save", "Keep edit"),
                Binding("ctrl+r", "reset", "Source values")]

    def __init__(self, reject: dict, job: dict, fix: FixRow, original: FixRow | None = None):
        super().__init__()
        self.reject, self.job, self.fix = reject, job, fix
        self.original = original or fix
        self.names: list[str] = list(job["dialect"]["names"])

    def compose(self) -> ComposeResult:
        r = self.reject
        with Vertical():
            yield Static(f"edit reject: row {r['row']:,} of job {self.job['id']}",
                         classes="title", markup=False)
            yield Static(Text(reason_text(r), style="red"), markup=False, classes="hint")
            with VerticalScroll():
                if self.fix.fields is None:
                    with Horizontal(classes="field"):
                        yield Label("raw record", classes="bad", markup=False)
                        yield Input(self.fix.raw or "", id="raw", compact=True,
                                    select_on_focus=False)
                else:
                    for i, (name, value) in enumerate(zip(self.names, self.fix.fields, strict=True)):
                        with Horizontal(classes="field"):
                            yield Label(name[:17], markup=False,
                                        classes="bad" if name == r["column"] else "")
                            yield Input("" if value is None else str(value), id=f"field-{i}",
                                        compact=True)
            hint = ("the record as read: repair it (split again with the source's dialect, "
                    f"{len(self.names)} fields)" if self.fix.fields is None else
                    "Tab / ↑↓: next field   values are source text (before the clean phase)")
            yield Static(Text(f"{hint}\nEnter: keep the edit   ctrl+r: source values   "
                              "Esc: cancel", style="dim"), markup=False, classes="hint")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        first = "#raw"
        if self.fix.fields is not None:
            at = self.names.index(self.reject["column"]) if self.reject["column"] in self.names else 0
            first = f"#field-{at}"
        self.query_one(first, Input).focus()

    def on_key(self, event) -> None:
        if event.key in ("down", "up") and isinstance(self.focused, Input):
            event.stop()
            self.focus_next() if event.key == "down" else self.focus_previous()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def values(self) -> FixRow:
        if self.fix.fields is None:
            return FixRow(self.fix.record, None, self.query_one("#raw", Input).value)
        return FixRow(self.fix.record, [self.query_one(f"#field-{i}", Input).value
                                        for i in range(len(self.names))], None)

    def action_reset(self) -> None:
        if self.original.fields is None:
            self.query_one("#raw", Input).value = self.original.raw or ""
            return
        for i, value in enumerate(self.original.fields):
            self.query_one(f"#field-{i}", Input).value = "" if value is None else str(value)

    def action_save(self) -> None:
        self.dismiss(self.values())

    def action_cancel(self) -> None:
        self.dismiss(None)


class SetModal(ModalScreen[str | None]):
    """A bulk fix of one group: COLUMN=VALUE for its open rejects (``replay --set --where``).
    Enter goes on to the dry run; Esc cancels."""

    DEFAULT_CSS = FORM_CSS.format(name="SetModal")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, group: dict, job: dict):
        super().__init__()
        self.group, self.job = group, job
        self.names: list[str] = list(job["dialect"]["names"])

    def compose(self) -> ComposeResult:
        g = self.group
        where = "/".join(x for x in (g["phase"], g["rule"], g["column"]) if x)
        with Vertical():
            yield Static(f"fix a group: {g['open']:,} open rejects of {where}", classes="title",
                         markup=False)
            with Horizontal(classes="field"):
                yield Label("set column", markup=False)
                yield Input(g["column"] if g["column"] in self.names else "", id="set-column",
                            compact=True)
            with Horizontal(classes="field"):
                yield Label("to the value", classes="bad", markup=False)
                yield Input("", id="set-value", compact=True, placeholder="source text")
            yield Static(Text(f"columns: {', '.join(self.names)}\n"
                              "Enter: dry run first, then confirm   Tab: next field   Esc: cancel",
                              style="dim"), markup=False, classes="hint")
            yield Static("", id="set-error", markup=False, classes="hint")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        column = self.query_one("#set-column", Input)
        (self.query_one("#set-value", Input) if column.value else column).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        column = self.query_one("#set-column", Input).value.strip()
        if column not in self.names:
            self.query_one("#set-error", Static).update(
                Text(f"no column {column!r} in the source", style="red"))
            self.query_one("#set-column", Input).focus()
            return
        if event.input.id == "set-column":
            self.query_one("#set-value", Input).focus()
            return
        self.dismiss(f"{column}={self.query_one('#set-value', Input).value}")

    def action_cancel(self) -> None:
        self.dismiss(None)


class FixFileModal(ModalScreen[Path | None]):
    """Which fix file to replay (F on the rejects screen): a path, pre-filled with the
    job's ``fix-JOB.csv`` of the export folder. Enter goes on to the dry run (a file that
    is not there is said here); Esc cancels."""

    DEFAULT_CSS = FORM_CSS.format(name="FixFileModal")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, job: dict, path: Path, base: Path):
        super().__init__()
        self.job, self.path, self.base = job, path, base

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"replay a fix file into job {self.job['id']}", classes="title",
                         markup=False)
            with Horizontal(classes="field"):
                yield Label("fix file", markup=False)
                yield Input(str(self.path), id="fix-path", compact=True, select_on_focus=False)
            yield Static(Text("the rows of `rejects JOB --fix` (f writes it), fixed\n"
                              "Enter: dry run first, then confirm   Esc: cancel", style="dim"),
                         markup=False, classes="hint")
            yield Static("", id="fix-error", markup=False, classes="hint")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#fix-path", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.input.value.strip()
        path = (self.base / Path(text).expanduser()) if text else None
        if path is None or not path.is_file():
            self.query_one("#fix-error", Static).update(
                Text(f"no file {text!r}" if text else "a path, please", style="red"))
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
