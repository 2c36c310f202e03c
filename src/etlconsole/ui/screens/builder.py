"""Pipeline builder: the loaded pipeline's phases and the registered phases to add."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from ...errors import UserError
from ..pipeline_edit import PhaseType, PipelineEditor, option_schema, phase_options, registered, toml_value
from ..widgets.table import LiveTable
from .modals import AddPhaseModal
from .options_form import Edited, OptionsForm
from .source_form import SourceForm

if TYPE_CHECKING:
    from ..app import ConsoleApp

NO_FILE = ("no pipeline file: Tab to the path field, type a file to open or a new "
           "name.toml to create, Enter")


def _summary(options: dict) -> str:
    return ", ".join(f"{k} = {toml_value(v)}"
                     for k, v in options.items())[:160]


class BuilderScreen(Screen):
    DEFAULT_CSS = """
    BuilderScreen { layout: vertical; }
    #b-title { height: 1; background: $boost; text-style: bold; }
    #b-open { height: 3; }
    #b-source { height: auto; max-height: 2; padding: 0 1; }
    #b-phases { height: 1fr; min-height: 4; }
    #b-problems { height: auto; max-height: 4; padding: 0 1; }
    #b-problems.ok { color: $success; }
    #b-problems.bad { color: $error; }
    #b-registered-caption { height: 1; color: $text-muted; }
    #b-registered { height: auto; max-height: 7; }
    """
    @property
    def console_app(self) -> ConsoleApp:
        """``app``, typed: these screens only run in the console."""
        return cast("ConsoleApp", self.app)

    BINDINGS = [
        Binding("space", "toggle", "On/off", key_display="␣"),
        Binding("shift+up", "move(-1)", "Move up", show=False),   # hint on screen
        Binding("shift+down", "move(1)", "Move down", show=False),
        Binding("s", "source", "Source"),
        Binding("a", "add", "Add"),
        Binding("delete", "remove", "Del", key_display="⌦"),
        Binding("e", "edit", "Edit"),
        Binding("ctrl+s", "save", "Save"),
        Binding("r", "run", "Run"),
    ]

    # Focus is given explicitly: with no file loaded nothing is focused (p/m/j/x/q stay
    # screen keys) and the first Tab lands on the path field; with a file, the phases.
    AUTO_FOCUS = ""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.editor: PipelineEditor | None = None
        self.problem: str | None = "not checked yet"
        self.checks = 0             # completed checks (tests wait on this)
        self.types: list[PhaseType] = []
        self.source_line: Text = Text("")

    def compose(self) -> ComposeResult:
        yield Static("pipeline builder", id="b-title", markup=False)
        yield Input(placeholder="pipeline file to open, or a new name.toml; then Enter",
                    id="b-open")
        yield Static("", id="b-source", markup=False)
        yield LiveTable([("#", "n"), ("type", "type"), ("on", "on"), ("ckpt", "ckpt"),
                         ("options", "options")], id="b-phases")
        yield Static("", id="b-problems", markup=False)
        yield Static("Shift+Up/Down moves the selected phase · registered phases (a adds):",
                     id="b-registered-caption", markup=False)
        registered_table = LiveTable([("phase", "name"), ("origin", "origin"),
                                      ("description", "desc")],
                                     id="b-registered", cursor_type="none", show_cursor=False)
        registered_table.can_focus = False     # a list to read: Tab skips it
        yield registered_table
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.types = registered()
        self.query_one("#b-registered", LiveTable).sync(
            [(t.name, (t.name, t.origin, t.description)) for t in self.types])
        path = self.console_app.pipeline_path
        if path is not None:
            self.load(path)
        else:
            self.problem = NO_FILE
            self.redraw()
            # Nothing focused: p/m/j/x/q still switch screens, and the first Tab lands
            # on the path field (the only focusable widget while no file is loaded).
            self.set_focus(None)

    # -- loading and drawing ----------------------------------------------------------
    def load(self, path: Path) -> bool:
        try:
            self.editor = PipelineEditor(path)
        except UserError as exc:
            self.editor = None
            self.problem = str(exc)
            self.redraw()
            return False
        self.console_app.pipeline_path = Path(path)
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
        # no file: the phase list is hidden, so Tab goes to the path field
        self.query_one("#b-phases", LiveTable).display = ed is not None
        self.query_one("#b-source", Static).display = ed is not None
        if ed is None:
            title.update("pipeline builder: no pipeline file loaded")
        else:
            state = ("  new file, Ctrl+S writes it" if ed.new else
                     "  modified, Ctrl+S saves" if ed.dirty else "")
            title.update(Text.assemble(("pipeline ", "bold"), (ed.path.name, "bold"),
                                       f"  (name {ed.spec.name})", (state, "yellow")))
            self.query_one("#b-source", Static).update(self.source_line)
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
        source = source_line(editor)           # reads the file's head: off the UI thread
        ok, message = editor.check()
        self.app.call_from_thread(self._checked, editor, ok, message, source)

    def _checked(self, editor: PipelineEditor, ok: bool, message: str, source: Text) -> None:
        if editor is self.editor:
            self.problem = message
            self.source_line = source
            self.checks += 1
            self.redraw()

    @property
    def has_problem(self) -> bool:
        return not (self.problem or "").startswith("OK")

    # -- keys -----------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        ed = self.editor
        if action in ("toggle", "move", "add", "remove", "edit", "save", "run", "source"):
            if ed is None:
                return None
            if action in ("toggle", "move", "remove", "edit") and not ed.phases:
                return None
            if action == "save":
                return True if ed.dirty else None
            if action == "run":
                return None if ed.dirty or self.has_problem else True
        return True

    @property
    def _ed(self) -> PipelineEditor:
        """The open pipeline: actions run only when there is one (``check_action``)."""
        assert self.editor is not None
        return self.editor

    # the screen's own "toggle" key (a phase on/off), not DOMNode's toggle of an attribute
    def action_toggle(self) -> None:  # type: ignore[override]
        if self.check_action("toggle", ()):
            self._ed.toggle(self.index)
            self.changed()

    def action_move(self, delta: int) -> None:
        if self.check_action("move", ()):
            self.changed(self._ed.move(self.index, delta))

    def action_remove(self) -> None:
        if self.check_action("remove", ()):
            index = self.index
            self._ed.remove(index)
            self.changed(max(0, min(index, len(self._ed.phases) - 1)))

    def action_add(self) -> None:
        if not self.check_action("add", ()):
            return

        def picked(name: str | None) -> None:
            if name:
                at = self._ed.add(self.index, name)
                self.changed(at)
                self.notify(f"added a {name} phase: e edits its options")
        self.app.push_screen(AddPhaseModal(self.types), picked)

    def action_edit(self) -> None:
        if not self.check_action("edit", ()):
            return
        index = self.index
        phase = self._ed.phases[index]
        try:
            schema = option_schema(phase.type)
        except UserError as exc:
            self.notify(str(exc), severity="error")
            return
        options = phase_options(phase)

        def edited(result: Edited | None) -> None:
            if result is None or (result.options, result.when, result.checkpoint) == (
                    options, phase.when, phase.checkpoint):
                return
            try:
                self._ed.set_options(index, result.options, when=result.when,
                                        checkpoint=result.checkpoint)
            except UserError as exc:
                self.notify(str(exc), severity="error")
                return
            self.changed(index)
        self.app.push_screen(OptionsForm(phase.label(index), phase.type, schema, options,
                                         when=phase.when, checkpoint=phase.checkpoint), edited)

    def action_source(self) -> None:
        if not self.check_action("source", ()):
            return
        ed = self._ed

        def picked(source) -> None:
            if source is None:
                return
            try:
                ed.set_source(source.path, delimiter=source.delimiter, quote=source.quote,
                              encoding=source.encoding, header=source.header)
            except UserError as exc:
                self.notify(str(exc), severity="error")
                return
            self.changed(self.index if ed.phases else None)
        self.app.push_screen(SourceForm(ed.spec.base_dir, ed.spec.source), picked)

    def action_save(self) -> None:
        if not self.check_action("save", ()):
            return
        try:
            self._ed.save()
        except OSError as exc:
            self.notify(f"{self._ed.path}: {exc}", severity="error")
            return
        self.notify(f"saved {self._ed.path}")
        self.redraw()
        self.check()

    def action_run(self) -> None:
        if self.check_action("run", ()):
            self.console_app.launch_run(self._ed.path)


def source_line(editor: PipelineEditor) -> Text:
    """The source and what the engine's sniff sees in it, in one line."""
    src = editor.spec.source
    if not src.path:
        return Text.assemble(("source ", "bold"), ("none yet: s sets the CSV file", "yellow"))
    try:
        d = editor.sniff()
    except (UserError, OSError) as exc:      # unreadable: said on the line, never a crash
        return Text.assemble(("source ", "bold"), (str(exc), "red"))
    delim = "tab" if d.delimiter == "\t" else repr(d.delimiter)
    return Text.assemble(("source ", "bold"), src.path,
                         f"  delimiter {delim} · {d.encoding} · quote {d.quote!r} · "
                         f"header {'yes' if d.header else 'no'} · {len(d.names)} columns")
