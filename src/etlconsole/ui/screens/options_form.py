"""Edit a phase's options in a form built from the phase's option schema, plus the keys
every phase has (``checkpoint``, ``when``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Select, Static, Switch, TextArea

from ...errors import UserError
from ..pipeline_edit import MULTILINE_KINDS, option_text, parse_option, parse_when, when_text

FREE = "__options__"     # a phase without a declared schema: all options as TOML lines
WHEN_HELP = ('a condition decided when the job starts; empty: always. env = "MASK", '
             'column_exists = "email", min_rows = 1000, { not = { env = "X" } }, '
             'or a predicate pkg.module:function')


@dataclass
class Edited:
    """What the form gives back: the phase's options, its condition and checkpoint."""

    options: dict[str, Any]
    when: Any
    checkpoint: bool


class OptionsForm(ModalScreen[Edited | None]):
    DEFAULT_CSS = """
    OptionsForm { align: center middle; }
    OptionsForm > Vertical {
        width: 100; max-width: 100%; height: 90%; border: thick $accent;
        background: $surface; padding: 0 1;
    }
    OptionsForm .title { text-style: bold; height: 1; }
    OptionsForm #form-error { color: $error; height: auto; display: none; }
    OptionsForm #form-error.shown { display: block; }
    OptionsForm .opt-label { height: 1; margin-top: 1; }
    OptionsForm .opt-help { height: auto; color: $text-muted; }
    OptionsForm TextArea { height: 6; }
    OptionsForm Input, OptionsForm Select { height: 3; }
    """
    # Not priority bindings: those run ahead of the keys still queued for the focused
    # field, so Ctrl+S right after typing applied the form without the last letters.
    BINDINGS = [Binding("ctrl+s", "apply", "Apply"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, label: str, phase_type: str, schema: dict[str, Any],
                 options: dict[str, Any], *, when: Any = None, checkpoint: bool = False):
        super().__init__()
        self.label, self.phase_type = label, phase_type
        self.schema, self.options = schema, dict(options)
        self.when, self.checkpoint = when, checkpoint
        # the spec refuses these (a load/branch ends the line; a branch has no output)
        self.conditional = phase_type not in ("load", "branch")
        self.checkpointable = phase_type != "branch"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"{self.label}: options (Tab next, Ctrl+S apply, Esc cancel)",
                         classes="title", markup=False)
            yield Static("", id="form-error", markup=False)
            with VerticalScroll(can_focus=False):   # Tab goes field to field
                if not self.schema:
                    yield from self._label("options", "table",
                                           "key = value lines, e.g. column = \"email\"")
                    yield TextArea(option_text("table", self.options), id=f"opt-{FREE}",
                                   classes="opt-field")
                for name, opt in self.schema.items():
                    default = opt.default if opt.default not in (None, [], {}) else None
                    shown = (f"  default: {option_text(opt.kind, default)}"
                             if default is not None else "")
                    yield from self._label(name, opt.kind + (" (required)" if opt.required else ""),
                                           opt.help + shown)
                    yield self._field(name, opt, self.options.get(name)).add_class("opt-field")
                if self.checkpointable:
                    yield from self._label("checkpoint", "bool", "keep this phase's output so "
                                           "'rerun JOB --from' can start after it")
                    yield Switch(self.checkpoint, id="opt-_checkpoint", classes="opt-field")
                if self.conditional:
                    yield from self._label("when", "condition", WHEN_HELP)
                    yield Input(when_text(self.when), id="opt-_when", classes="opt-field",
                                placeholder="always (no condition)")
        yield Footer(compact=True, show_command_palette=False)

    AUTO_FOCUS = ""         # focused below without scrolling: its label stays in view

    def on_mount(self) -> None:
        fields = self.query(".opt-field")
        if fields:
            fields.first().focus(scroll_visible=False)
        self.call_after_refresh(self.query_one(VerticalScroll).scroll_home, animate=False)

    @staticmethod
    def _label(name: str, kind: str, help_text: str):
        yield Static(Text.assemble((name, "bold"), f"  {kind}"), classes="opt-label", markup=False)
        yield Static(Text(help_text), classes="opt-help", markup=False)

    def _field(self, name: str, opt, value):
        wid = f"opt-{name}"
        if opt.kind == "bool":
            return Switch(bool(value if value is not None else opt.default), id=wid)
        if opt.choices:
            # Not set in the file: its default is what the engine uses, so show that
            # (an unset option without a default shows blank). Never a value outside
            # the choices: Select refuses it.
            shown = value if value in opt.choices else opt.default
            return Select([(c, c) for c in opt.choices],
                          value=shown if shown in opt.choices else Select.NULL,
                          allow_blank=opt.default not in opt.choices, id=wid)
        if opt.kind in MULTILINE_KINDS:
            return TextArea(option_text(opt.kind, value), id=wid)
        return Input(option_text(opt.kind, value), id=wid,
                     placeholder="TOML value" if opt.kind != "string" else "")

    def values(self) -> dict[str, Any]:
        """The options as typed; ValueError naming the option if one cannot be read.
        An option left at its default that the file did not set stays unset."""
        if not self.schema:
            try:
                value = parse_option("table", self.query_one(f"#opt-{FREE}", TextArea).text)
            except ValueError as exc:
                raise ValueError(f"options: {exc}") from None
            return dict(value or {})
        out: dict[str, Any] = {}
        for name, opt in self.schema.items():
            widget = self.query_one(f"#opt-{name}")
            if isinstance(widget, (Switch, Select)):
                value = widget.value
                if value is Select.NULL:
                    continue
                # a bool without a default is off when not set
                default = False if opt.kind == "bool" and opt.default is None else opt.default
                if name in self.options or value != default:
                    out[name] = value
                continue
            raw = widget.text if isinstance(widget, TextArea) else cast(Input, widget).value
            try:
                value = parse_option(opt.kind, raw)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            if value is not None:
                out[name] = value
        return out

    def edited(self) -> Edited:
        when = self.when
        if self.conditional:
            try:
                when = parse_when(self.query_one("#opt-_when", Input).value)
            except ValueError as exc:
                raise ValueError(f"when: {exc}") from None
        checkpoint = (self.query_one("#opt-_checkpoint", Switch).value if self.checkpointable
                      else self.checkpoint)
        return Edited(self.values(), when, checkpoint)

    def action_apply(self) -> None:
        from ...conditions import check_when
        from ...engine.phases import build, check_options, resolve
        error = self.query_one("#form-error", Static)
        try:
            edited = self.edited()
            check_options(resolve(self.phase_type), edited.options, {"phase": self.label})
            if self.phase_type == "load":
                # read as the engine reads it: url or path by kind, and a password in a
                # postgres URL refused here, before it can be saved in the file
                build("load", edited.options, where={"phase": self.label})
            if edited.when is not None:
                check_when(edited.when, file=None, phase=self.label)
        except (ValueError, UserError) as exc:
            error.update(Text(str(exc)))
            error.add_class("shown")
            return
        self.dismiss(edited)

    def action_cancel(self) -> None:
        self.dismiss(None)
