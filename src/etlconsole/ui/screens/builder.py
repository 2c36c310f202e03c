"""Pipeline builder: the loaded pipeline's phases and the registered phases to add."""

from __future__ import annotations

import json
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from ...errors import UserError
from ..pipeline_edit import PipelineEditor, option_schema, registered
from ..widgets.table import LiveTable
from .modals import AddPhaseModal
from .options_form import OptionsForm


def _summary(options: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}"
                     for k, v in options.items())[:160]


class BuilderScreen(Screen):
    DEFAULT_CSS = """
    BuilderScreen { layout: vertical; }
    #b-title { height: 1; background: $boost; text-style: bold; }
    #b-open { height: 3; }
    #b-phases { height: 1fr; min-height: 4; }
    #b-problems { height: auto; max-height: 4; padding: 0 1; }
    #b-problems.ok { color: $success; }
    #b-problems.bad { color: $error; }
    #b-registered-caption { height: 1; color: $text-muted; }
    #b-registered { height: auto; max-height: 7; }
    """
    BINDINGS = [
        Binding("space", "toggle", "On/off", key_display="␣"),
        Binding("shift+up", "move(-1)", "Move up", show=False),   # hint on screen
        Binding("shift+down", "move(1)", "Move down", show=False),
        Binding("a", "add", "Add"),
        Binding("delete", "remove", "Del", key_display="⌦"),
        Binding("e", "edit", "Edit"),
        Binding("ctrl+s", "save", "Save"),
        Binding("r", "run", "Run"),
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.editor: PipelineEditor | None = None
        self.problem: str | None = "not checked yet"
        self.checks = 0             # completed checks (tests wait on this)
        self.types = []

    def compose(self) -> ComposeResult:
        yield Static("pipeline builder", id="b-title", markup=False)
        yield Input(placeholder="pipeline file to open (TOML), then Enter", id="b-open")
        yield LiveTable([("#", "n"), ("type", "type"), ("on", "on"), ("ckpt", "ckpt"),
                         ("options", "options")], id="b-phases")
        yield Static("", id="b-problems", markup=False)
        yield Static("Shift+Up/Down moves the selected phase · registered phases (a adds):",
                     id="b-registered-caption", markup=False)
        yield LiveTable([("phase", "name"), ("origin", "origin"), ("description", "desc")],
                        id="b-registered", cursor_type="none", show_cursor=False)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.types = registered()
        self.query_one("#b-registered", LiveTable).sync(
            [(t.name, (t.name, t.origin, t.description)) for t in self.types])
        path = self.app.pipeline_path
        if path is not None:
            self.load(path)
        else:
            self.redraw()
            # the path field is one Tab away: focusing it would swallow p/m/j/x/q
            self.query_one("#b-phases", LiveTable).focus()

    # -- loading and drawing ----------------------------------------------------------
    def load(self, path: Path) -> bool:
        try:
            self.editor = PipelineEditor(path)
        except UserError as exc:
            self.editor = None
            self.problem = str(exc)
            self.redraw()
            return False
        self.app.pipeline_path = Path(path)
        self.redraw()
        self.query_one("#b-phases", LiveTable).focus()
        self.check()
        return True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "b-open" and event.value.strip():
            self.load(Path(event.value.strip()).expanduser())

    @property
    def index(self) -> int:
        table = self.query_one("#b-phases", LiveTable)
        return table.cursor_row if self.editor and self.editor.phases else -1

    def redraw(self) -> None:
        ed = self.editor
        title = self.query_one("#b-title", Static)
        self.query_one("#b-open", Input).display = ed is None
        if ed is None:
            title.update("pipeline builder: no pipeline file loaded (Tab, type its path, Enter)")
        else:
            title.update(Text.assemble(("pipeline ", "bold"), (ed.path.name, "bold"),
                                       f"  (name {ed.spec.name}, source {ed.spec.source.path})",
                                       ("  modified, Ctrl+S saves" if ed.dirty else "", "yellow")))
        rows = []
        for i, p in enumerate(ed.phases if ed else []):
            rows.append((str(id(p)), (
                str(i + 1), p.type,
                Text("on", style="green") if p.enabled else Text("off", style="dim"),
                "yes" if p.checkpoint else "", _summary(p.options))))
        self.query_one("#b-phases", LiveTable).sync(rows)
        problems = self.query_one("#b-problems", Static)
        ok = self.problem is None or self.problem.startswith("OK")
        problems.set_class(ok, "ok")
        problems.set_class(not ok, "bad")
        problems.update(Text(self.problem or ""))
        self.refresh_bindings()

    def changed(self, select: int | None = None) -> None:
        self.redraw()
        if select is not None:
            self.query_one("#b-phases", LiveTable).move_cursor(row=select)
        self.check()

    # -- problems are found before running: make_plan in a worker -----------------------
    def check(self) -> None:
        if self.editor is not None:
            self.problem = "checking …"
            self._check(self.editor)

    @work(thread=True, exclusive=True, group="check", exit_on_error=False)
    def _check(self, editor: PipelineEditor) -> None:
        ok, message = editor.check()
        self.app.call_from_thread(self._checked, editor, ok, message)

    def _checked(self, editor: PipelineEditor, ok: bool, message: str) -> None:
        if editor is self.editor:
            self.problem = message
            self.checks += 1
            self.redraw()

    @property
    def has_problem(self) -> bool:
        return not (self.problem or "").startswith("OK")

    # -- keys -----------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        ed = self.editor
        if action in ("toggle", "move", "add", "remove", "edit", "save", "run"):
            if ed is None:
                return None
            if action in ("toggle", "move", "remove", "edit") and not ed.phases:
                return None
            if action == "save":
                return True if ed.dirty else None
            if action == "run":
                return None if ed.dirty or self.has_problem else True
        return True

    def action_toggle(self) -> None:
        if self.check_action("toggle", ()):
            self.editor.toggle(self.index)
            self.changed()

    def action_move(self, delta: int) -> None:
        if self.check_action("move", ()):
            self.changed(self.editor.move(self.index, delta))

    def action_remove(self) -> None:
        if self.check_action("remove", ()):
            index = self.index
            self.editor.remove(index)
            self.changed(max(0, min(index, len(self.editor.phases) - 1)))

    def action_add(self) -> None:
        if not self.check_action("add", ()):
            return

        def picked(name: str | None) -> None:
            if name:
                at = self.editor.add(self.index, name)
                self.changed(at)
                self.notify(f"added a {name} phase: e edits its options")
        self.app.push_screen(AddPhaseModal(self.types), picked)

    def action_edit(self) -> None:
        if not self.check_action("edit", ()):
            return
        index = self.index
        phase = self.editor.phases[index]
        try:
            schema = option_schema(phase.type)
        except UserError as exc:
            self.notify(str(exc), severity="error")
            return

        def edited(options: dict | None) -> None:
            if options is not None and options != phase.options:
                self.editor.set_options(index, options)
                self.changed(index)
        self.app.push_screen(OptionsForm(phase.label(index), phase.type, schema, phase.options),
                             edited)

    def action_save(self) -> None:
        if not self.check_action("save", ()):
            return
        try:
            self.editor.save()
        except OSError as exc:
            self.notify(f"{self.editor.path}: {exc}", severity="error")
            return
        self.notify(f"saved {self.editor.path}")
        self.redraw()

    def action_run(self) -> None:
        if self.check_action("run", ()):
            self.app.launch_run(self.editor.path)
