"""Small modal dialogs: confirm (y/n/Esc), quit with a running job, job details, add phase,
one reject in full."""

from __future__ import annotations

import csv
import io
from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

MODAL_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 76; max-width: 100%; height: auto; max-height: 90%;
    border: thick $accent; background: $surface; padding: 0 1;
}}
{name} .title {{ text-style: bold; height: auto; }}
{name} VerticalScroll {{ height: auto; max-height: 16; }}
"""


class ConfirmModal(ModalScreen[bool]):
    """Says what will happen; ``y`` confirms, ``n`` or Esc cancels."""

    DEFAULT_CSS = MODAL_CSS.format(name="ConfirmModal")
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n", "answer(False)", "No"),
                Binding("escape", "answer(False)", "Cancel")]

    def __init__(self, title: str, body: Text | str):
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title", markup=False)
            with VerticalScroll():
                yield Static(self.body, markup=False, id="confirm-body")
            yield Static(Text("y: yes   n / Esc: no", style="bold"), markup=False)
        yield Footer(compact=True, show_command_palette=False)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class QuitModal(ModalScreen[str]):
    """Quitting with a job running: leave it running, stop it (resumable), or cancel.

    ``still_running`` is asked again every half second: a job that ends while the dialog
    is open is not called running any more, and quitting then leaves nothing behind."""

    DEFAULT_CSS = MODAL_CSS.format(name="QuitModal")
    BINDINGS = [Binding("l", "answer('leave')", "Leave running"),
                Binding("s", "answer('stop')", "Stop (resumable)"),
                Binding("q,enter", "answer('quit')", "Quit"),
                Binding("c", "answer('cancel')", "Cancel"),
                Binding("escape", "answer('cancel')", "Cancel", show=False)]
    RECHECK_S = 0.5

    def __init__(self, jobs: list[str], still_running: Callable[[], list[str]] | None = None,
                 ended_line: Callable[[], str | None] | None = None):
        super().__init__()
        self.jobs = jobs
        self.still_running = still_running
        self.ended_line = ended_line       # once it ended: what became of the job
        self.ended: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Quit the console?", classes="title", markup=False)
            yield Static(self._body(), markup=False, id="quit-body")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        if self.still_running is not None:
            self.set_interval(self.RECHECK_S, self.recheck)

    def recheck(self) -> None:
        if self.still_running is None:      # not scheduled without it (on_mount)
            return
        now = self.still_running()
        if now != self.jobs:
            self.jobs = now
            if not now and self.ended_line is not None:
                self.ended = self.ended_line()
            self.query_one("#quit-body", Static).update(self._body())
            self.refresh_bindings()

    def _body(self) -> Text:
        if not self.jobs:
            parts = ["The job this console started has ended: nothing is running now.",
                     self.ended, "q / Enter  quit\nc  cancel: stay in the console"]
            return Text("\n\n".join(p for p in parts if p))
        return Text(
            f"A job this console started is still running ({', '.join(self.jobs)}).\n\n"
            "l  leave it running: it continues headless (watch it again with "
            "'etlconsole ui' or 'etlconsole show')\n"
            "s  stop it: it is marked interrupted and can be resumed later\n"
            "c  cancel: stay in the console")

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "answer" and parameters:
            if parameters[0] in ("leave", "stop"):
                return bool(self.jobs)
            if parameters[0] == "quit":
                return not self.jobs
        return True

    def action_answer(self, what: str) -> None:
        self.dismiss(what)


class DetailsModal(ModalScreen[str | None]):
    """A job's details; ``m`` watches it on the monitor."""

    DEFAULT_CSS = MODAL_CSS.format(name="DetailsModal")
    BINDINGS = [Binding("escape,enter", "close", "Close"),
                Binding("m", "monitor", "Monitor this job")]

    def __init__(self, title: str, body: Text):
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="title", markup=False)
            with VerticalScroll():
                yield Static(self.body, markup=False)
        yield Footer(compact=True, show_command_palette=False)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_monitor(self) -> None:
        self.dismiss("monitor")


class AddPhaseModal(ModalScreen[str | None]):
    """Pick a registered phase type to add."""

    DEFAULT_CSS = MODAL_CSS.format(name="AddPhaseModal") + """
    AddPhaseModal OptionList { height: auto; max-height: 14; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, types: list):
        super().__init__()
        self.types = types

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Add a phase (after the selected one, before the final load)",
                         classes="title", markup=False)
            yield OptionList(*[Option(Text.assemble((t.name, "bold"), f"  [{t.origin}]  ",
                                                    (t.description, "dim")), id=t.name)
                               for t in self.types])
        yield Footer(compact=True, show_command_palette=False)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RejectModal(ModalScreen[str | None]):
    """One rejected row in full: why, every value (none cut), and the record as CSV text.
    ``e`` edits its values (dismisses with "edit"), unless a replay resolved it."""

    DEFAULT_CSS = MODAL_CSS.format(name="RejectModal") + """
    RejectModal > Vertical { width: 110; }
    RejectModal VerticalScroll { max-height: 75vh; }
    """
    BINDINGS = [Binding("escape,enter,q", "close", "Close"),
                Binding("e", "edit", "Edit values")]

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()      # arrows and PgDn scroll a long record

    def __init__(self, reject: dict, job: dict):
        super().__init__()
        self.reject, self.job = reject, job

    def compose(self) -> ComposeResult:
        r = self.reject
        with Vertical():
            yield Static(f"reject: row {r['row']:,} of job {self.job['id']}", classes="title",
                         markup=False)
            with VerticalScroll():
                yield Static(reject_text(r, self.job), markup=False, id="reject-body")
        yield Footer(compact=True, show_command_palette=False)

    def action_close(self) -> None:
        self.dismiss(None)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "edit":
            return self.reject.get("resolved_at") is None and self.reject.get("row") is not None
        return True

    def action_edit(self) -> None:
        if self.check_action("edit", ()):
            self.dismiss("edit")


def reject_text(r: dict, job: dict) -> Text:
    """Rule, column and message, each value on a line of its own, then the raw record."""
    out = Text()
    where = f"{r['phase']}" + (f" ({r['phase_label']})" if r.get("phase_label") else "")
    if r.get("file"):       # a job of many files: where the record is (ADR 0025)
        out.append(f"file     {r['file']}, record {r['file_record']:,}\n")
    out.append(f"phase    {where}\nrule     {r['rule']}\ncolumn   {r['column'] or '-'}\n")
    out.append(f"message  {r['message']}\n", style="red")
    if r.get("resolved_at"):
        out.append(f"resolved by replay {r['resolved_by']} at {r['resolved_at'][:19]} "
                   "(loaded; the reason is the one it had)\n", style="green")
    elif r.get("replay"):
        out.append(f"rejected again by replay {r['replay']}\n", style="yellow")
    out.append("\n")
    values = r["values"] or {}
    if set(values) == {"raw"}:          # the extract could not split it into fields
        out.append("raw record (as read from the source)\n", style="bold")
        out.append(f"{values['raw']}\n")
        return out
    width = min(max((len(str(k)) for k in values), default=0), 30)
    out.append("values\n", style="bold")
    for col, value in values.items():
        out.append(f"  {str(col):<{width}}  ", style="bold red" if col == r["column"] else "dim")
        out.append("(null)" if value is None else str(value), style="italic" if value is None else "")
        out.append("\n")
    out.append("\nrecord (CSV, as this phase saw it)\n", style="bold")
    out.append(csv_record(values, (job.get("dialect") or {}).get("delimiter") or ","))
    return out


def csv_record(values: dict, delimiter: str = ",") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="").writerow(
        ["" if v is None else v for v in values.values()])
    return buf.getvalue()
