"""The pipeline's source: the CSV path (completed as typed) and how it is read, with what
the engine's sniff finds in that file shown beside the fields."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Footer, Input, Static, Switch

from ... import api
from ...errors import UserError
from ...spec import SourceSpec

MAX_LISTED = 8
MAX_FOLDERS = 50     # subfolders looked into when the folder itself has none


class PathSuggester(Suggester):
    """Completes a path typed relative to ``base`` (or absolute): the first entry of its
    folder that starts with what was typed, folders ending in '/'; CSV files first."""

    def __init__(self, base: Path):
        super().__init__(use_cache=False, case_sensitive=True)
        self.base = base

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        folder, _, stem = value.rpartition("/")
        where = self.base / Path(folder or ".").expanduser()
        try:
            names = sorted(os.listdir(where))
        except OSError:
            return None
        names = [n for n in names if n.startswith(stem) and not n.startswith(".")]
        names.sort(key=lambda n: (not n.lower().endswith((".csv", ".tsv", ".txt")), n))
        for name in names:
            slash = "/" if (where / name).is_dir() else ""
            full = (folder + "/" if value.count("/") else "") + name + slash
            if full != value:
                return full
        return None


def csv_files(base: Path) -> list[str]:
    """The CSV-like files in the pipeline's folder — else in its subfolders, one level down
    (``etlconsole demo`` keeps its data in ``etlconsole-demo/``) — as paths to type."""
    # CSV-like names, compressed or not, as the engine reads them
    csv_like = tuple(ext + z for ext in (".csv", ".tsv", ".txt") for z in ("", *api.compressed_suffixes()))
    here = _csv_in(base, "", csv_like)
    if here:
        return here[:MAX_LISTED]
    below: list[str] = []
    try:
        # a bounded look: the form opens on the UI thread, maybe in a home folder
        folders = sorted(e.name for e in os.scandir(base)
                         if e.is_dir() and not e.name.startswith("."))[:MAX_FOLDERS]
    except OSError:
        return []
    for name in folders:
        below += _csv_in(base / name, name + "/", csv_like)
        if len(below) >= MAX_LISTED:
            break
    return below[:MAX_LISTED]


def _csv_in(folder: Path, prefix: str, endings: tuple[str, ...]) -> list[str]:
    try:
        return sorted(prefix + e.name for e in os.scandir(folder)
                      if e.name.lower().endswith(endings) and e.is_file())
    except OSError:
        return []


@dataclass
class SniffView:
    """The sniff of a path as the form shows it."""

    text: Text
    dialect: object | None


def sniff_text(base: Path, source: SourceSpec) -> SniffView:
    from ...engine import extract
    if not source.path:
        return SniffView(Text("type the CSV file's path (relative to the pipeline file)"), None)
    try:     # a file, a glob or a directory: the first of its files is sniffed
        d, files = extract.sniff_source(str(Path(source.path).expanduser()), base,
                                        delimiter=source.delimiter, quote=source.quote,
                                        encoding=source.encoding, header=source.header)
    except (UserError, OSError) as exc:      # e.g. no permission: said, never a crash
        return SniffView(Text(str(exc), style="red"), None)
    cols = ", ".join(d.names[:12]) + (" …" if len(d.names) > 12 else "")
    many = (f"{len(files)} files, read in this order: {files[0].path.name} … "
            f"{files[-1].path.name} (the first is sniffed)\n" if len(files) > 1 else "")
    return SniffView(Text.assemble(
        many, ("sniffed: ", "bold"), f"delimiter {d.delimiter!r} · quote {d.quote!r} · "
        f"encoding {d.encoding} · header {'yes' if d.header else 'no'}\n",
        (f"{len(d.names)} columns: ", "bold"), cols), d)


class SourceForm(ModalScreen[SourceSpec | None]):
    DEFAULT_CSS = """
    SourceForm { align: center middle; }
    SourceForm > Vertical {
        width: 100; max-width: 100%; height: 90%; border: thick $accent;
        background: $surface; padding: 0 1;
    }
    SourceForm .title { text-style: bold; height: 1; }
    SourceForm #src-error { color: $error; height: auto; display: none; }
    SourceForm #src-error.shown { display: block; }
    SourceForm #src-sniff { height: auto; margin-top: 1; }
    SourceForm .src-label { height: 1; margin-top: 1; }
    SourceForm .src-help { height: auto; color: $text-muted; }
    SourceForm Input { height: 3; }
    """
    # Not priority bindings: those run ahead of the keys still queued for the focused
    # field, so Ctrl+S right after typing applied the form without the last letters.
    BINDINGS = [Binding("ctrl+s", "apply", "Apply"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, base: Path, source: SourceSpec):
        super().__init__()
        self.base, self.source = base, source

    def compose(self) -> ComposeResult:
        s = self.source
        files = csv_files(self.base)
        with Vertical():
            yield Static("source: the CSV file to read (Tab next, Ctrl+S apply, Esc cancel)",
                         classes="title", markup=False)
            yield Static("", id="src-error", markup=False)
            with VerticalScroll(can_focus=False):
                yield Static(Text.assemble(("path", "bold"), "  relative to the pipeline file; "
                                           "→ accepts the completion"),
                             classes="src-label", markup=False)
                yield Input(s.path, id="src-path", placeholder="orders.csv",
                            suggester=PathSuggester(self.base), select_on_focus=False)
                yield Static(Text("CSV files here: " + (", ".join(files) if files else "none")),
                             classes="src-help", markup=False)
                yield Static("", id="src-sniff", markup=False)
                for key, help_text in (("delimiter", "one character; empty: sniffed"),
                                       ("quote", "one character; empty: '\"'"),
                                       ("encoding", "e.g. latin-1; empty: utf-8 (BOMs detected)")):
                    yield Static(Text.assemble((key, "bold"), f"  {help_text}"),
                                 classes="src-label", markup=False)
                    yield Input(getattr(s, key) or "", id=f"src-{key}")
                yield Static(Text.assemble(("header", "bold"), "  the first line names the "
                                           "columns"), classes="src-label", markup=False)
                yield Switch(s.header, id="src-header")
        yield Footer(compact=True, show_command_palette=False)

    AUTO_FOCUS = ""         # focused below without scrolling: the path's label stays in view

    def on_mount(self) -> None:
        self.query_one("#src-path", Input).focus(scroll_visible=False)
        self.call_after_refresh(self.query_one(VerticalScroll).scroll_home, animate=False)
        self.resniff()

    def typed(self) -> SourceSpec:
        value = {k: self.query_one(f"#src-{k}", Input).value for k in
                 ("path", "delimiter", "quote", "encoding")}
        if value["delimiter"] == "\\t":
            value["delimiter"] = "\t"
        return SourceSpec(path=value["path"].strip(), delimiter=value["delimiter"] or None,
                          quote=value["quote"] or None, encoding=value["encoding"].strip() or None,
                          header=self.query_one("#src-header", Switch).value)

    def resniff(self) -> None:
        """Show what the engine makes of the file; the sniffed values as placeholders."""
        try:
            source = self.typed()
        except UserError:
            return
        view = sniff_text(self.base, source)
        self.query_one("#src-sniff", Static).update(view.text)
        d = view.dialect
        for key in ("delimiter", "quote", "encoding"):
            sniffed = getattr(d, key) if d is not None else ""
            shown = "\\t" if sniffed == "\t" else sniffed
            self.query_one(f"#src-{key}", Input).placeholder = (
                f"sniffed: {shown}" if sniffed else "sniffed when the job starts")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.resniff()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self.resniff()

    def action_apply(self) -> None:
        source = self.typed()
        error = self.query_one("#src-error", Static)
        error.add_class("shown")
        if not source.path:
            error.update("path: type the CSV file's path")
            return
        for key in ("delimiter", "quote"):
            value = getattr(source, key)
            if value is not None and len(value) != 1:
                error.update(f"{key}: must be a single character (\\t for a tab), got {value!r}")
                return
        self.dismiss(source)

    def action_cancel(self) -> None:
        self.dismiss(None)
