"""Small modal dialogs: confirm (y/n/Esc), quit with a running job, job details, add phase."""

from __future__ import annotations

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
    """Quitting with a job running: leave it running, stop it (resumable), or cancel."""

    DEFAULT_CSS = MODAL_CSS.format(name="QuitModal")
    BINDINGS = [Binding("l", "answer('leave')", "Leave running"),
                Binding("s", "answer('stop')", "Stop (resumable)"),
                Binding("c", "answer('cancel')", "Cancel"),
                Binding("escape", "answer('cancel')", "Cancel", show=False)]

    def __init__(self, jobs: list[str]):
        super().__init__()
        self.jobs = jobs

    def compose(self) -> ComposeResult:
        names = ", ".join(self.jobs)
        with Vertical():
            yield Static("Quit the console?", classes="title", markup=False)
            yield Static(Text(
                f"A job this console started is still running ({names}).\n\n"
                "l  leave it running: it continues headless (watch it again with "
                "'etlconsole ui' or 'etlconsole show')\n"
                "s  stop it: it is marked interrupted and can be resumed later\n"
                "c  cancel: stay in the console"), markup=False)
        yield Footer(compact=True, show_command_palette=False)

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
