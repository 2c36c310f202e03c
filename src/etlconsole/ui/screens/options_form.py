"""Edit a phase's options in a form built from the phase's option schema."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Select, Static, Switch, TextArea

from ...errors import UserError
from ..pipeline_edit import MULTILINE_KINDS, option_text, parse_option

FREE = "__options__"     # a phase without a declared schema: all options as one TOML table


class OptionsForm(ModalScreen[dict | None]):
    DEFAULT_CSS = """
    OptionsForm { align: center middle; }
    OptionsForm > Vertical {
        width: 100; max-width: 100%; height: 90%; border: thick $accent;
        background: $surface; padding: 0 1;
    }
    OptionsForm .title { text-style: bold; height: 1; }
    OptionsForm #form-error { color: $error; height: auto; }
    OptionsForm .opt-label { height: 1; margin-top: 1; }
    OptionsForm .opt-help { height: auto; color: $text-muted; }
    OptionsForm TextArea { height: 6; }
    OptionsForm Input, OptionsForm Select { height: 3; }
    """
    BINDINGS = [Binding("ctrl+s", "apply", "Apply", priority=True),
                Binding("escape", "cancel", "Cancel")]

    def __init__(self, label: str, phase_type: str, schema: dict[str, Any],
                 options: dict[str, Any]):
        super().__init__()
        self.label, self.phase_type = label, phase_type
        self.schema, self.options = schema, dict(options)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"{self.label}: options (Ctrl+S apply, Esc cancel)", classes="title",
                         markup=False)
            yield Static("", id="form-error", markup=False)
            with VerticalScroll():
                if not self.schema:
                    yield Static("options (a TOML inline table)", classes="opt-label", markup=False)
                    yield TextArea(option_text("table", self.options) if self.options else "",
                                   id=f"opt-{FREE}")
                for name, opt in self.schema.items():
                    req = " (required)" if opt.required else ""
                    yield Static(Text.assemble((name, "bold"), f"  {opt.kind}{req}"),
                                 classes="opt-label", markup=False)
                    yield Static(Text(opt.help + (f"  default: {opt.default!r}"
                                                  if opt.default is not None else "")),
                                 classes="opt-help", markup=False)
                    yield self._field(name, opt, self.options.get(name))
        yield Footer(compact=True, show_command_palette=False)

    def _field(self, name: str, opt, value):
        wid = f"opt-{name}"
        if opt.kind == "bool":
            return Switch(bool(value if value is not None else opt.default), id=wid)
        if opt.choices:
            return Select([(c, c) for c in opt.choices], value=value if value in opt.choices
                          else Select.BLANK, allow_blank=True, id=wid)
        if opt.kind in MULTILINE_KINDS or opt.kind == "table":
            return TextArea(option_text(opt.kind, value), id=wid)
        return Input(option_text(opt.kind, value), id=wid,
                     placeholder="TOML value" if opt.kind != "string" else "")

    def values(self) -> dict[str, Any]:
        """The options as typed; ValueError naming the option if one cannot be read."""
        if not self.schema:
            text = self.query_one(f"#opt-{FREE}", TextArea).text
            try:
                value = parse_option("table", text)
            except ValueError as exc:
                raise ValueError(f"options: {exc}") from None
            return dict(value or {})
        out: dict[str, Any] = {}
        for name, opt in self.schema.items():
            widget = self.query_one(f"#opt-{name}")
            if isinstance(widget, Switch):
                if widget.value != bool(opt.default) or name in self.options:
                    out[name] = widget.value
                continue
            if isinstance(widget, Select):
                if widget.value is not Select.BLANK and widget.value is not None:
                    out[name] = widget.value
                continue
            raw = widget.text if isinstance(widget, TextArea) else widget.value
            try:
                value = parse_option(opt.kind, raw)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            if value is not None:
                out[name] = value
        return out

    def action_apply(self) -> None:
        from ...engine.phases import check_options, resolve
        error = self.query_one("#form-error", Static)
        try:
            options = self.values()
            check_options(resolve(self.phase_type), options, {"phase": self.label})
        except (ValueError, UserError) as exc:
            error.update(Text(str(exc)))
            return
        self.dismiss(options)

    def action_cancel(self) -> None:
        self.dismiss(None)
