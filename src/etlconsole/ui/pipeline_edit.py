"""The builder's editing of a pipeline file, in one place.

It edits ``PipelineSpec``/``PhaseSpec`` (what the builder API builds) and saves into the
operator's own file. The file is kept as text cut into pieces: the preamble (name,
source, …) and one piece per ``[[phases]]`` table, each with the comment lines written
right above its header. Moving a phase moves its piece (its comments go with it); a phase
that was not edited is written back byte for byte; an edited one is updated key by key
with tomlkit, so its comments and untouched keys stay too. No Textual here.
"""

from __future__ import annotations

import datetime
import json
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import tomlkit

from ..errors import SpecError, UserError
from ..spec import (BRANCH, COMMON_PHASE_KEYS, BranchSpec, PhaseSpec, PipelineSpec, SourceSpec,
                    _phase_from_dict, load_spec, spec_from_text)

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# Option kinds edited in a multi-line text area (one list item or table key per line).
MULTILINE_KINDS = {"table", "table[]", "any"}
TERMINAL = ("load", BRANCH)             # phases that end the main line
LINE = 88                               # longer values are written one item per line
_KEEP = object()


@dataclass(frozen=True)
class PhaseType:
    name: str
    origin: str                  # "built-in" or "plugin (dist)"
    description: str
    options: dict[str, Any]      # name -> Option


def registered() -> list[PhaseType]:
    """Every registered phase (built-ins and plugins), with its option schema."""
    from ..engine.phases import available, resolve
    out = []
    for name, (_ref, origin) in sorted(available().items()):
        try:
            cls = resolve(name)
        except UserError as exc:          # a broken plugin is listed, not fatal
            out.append(PhaseType(name, origin, f"cannot load: {exc}", {}))
            continue
        out.append(PhaseType(name, origin, getattr(cls, "description", "") or "",
                             dict(getattr(cls, "options", {}) or {})))
    return out


def option_schema(phase_type: str) -> dict[str, Any]:
    from ..engine.phases import resolve
    return dict(getattr(resolve(phase_type), "options", {}) or {})


def phase_options(phase: PhaseSpec) -> dict[str, Any]:
    """A phase's own options as the form edits them (a branch's branches included)."""
    return {k: v for k, v in phase.to_dict().items() if k not in COMMON_PHASE_KEYS}


# -- the file as pieces of text --------------------------------------------------------
_PHASE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*phases[ \t]*\]\][ \t]*(#.*)?$")
_ANY_HEADER = re.compile(r"^[ \t]*\[\[?[ \t]*([A-Za-z0-9_.\"' -]+?)[ \t]*\]\]?[ \t]*(#.*)?$")


def split_phases(text: str) -> tuple[str, list[str]] | None:
    """(preamble, one text per [[phases]] table with the comments right above it), or
    None when the file is not laid out that way (phases inline, tables after them)."""
    lines = text.splitlines(keepends=True)
    starts = []
    for i, line in enumerate(lines):
        if _PHASE_HEADER.match(line.rstrip("\r\n")):
            start = i
            while start > 0 and lines[start - 1].lstrip().startswith("#"):
                start -= 1            # the comment block above the header is the phase's
            starts.append(start)
        elif starts:
            m = _ANY_HEADER.match(line.rstrip("\r\n"))
            if m and not m.group(1).replace(" ", "").startswith("phases."):
                return None           # e.g. a [source] table after the phases
    if not starts:
        return text, []
    pieces = ["".join(lines[a:b]) for a, b in zip(starts, starts[1:] + [len(lines)], strict=False)]
    return "".join(lines[:starts[0]]), pieces


def _leading_comments(piece: str) -> str:
    out = []
    for line in piece.splitlines(keepends=True):
        if not line.lstrip().startswith("#"):
            break
        out.append(line)
    return "".join(out)


def _reads_as(text: str, phase: PhaseSpec) -> bool:
    """Does this [[phases]] text load back as exactly ``phase``?"""
    try:
        raw = tomllib.loads(text).get("phases", [])
        return len(raw) == 1 and _phase_from_dict(raw[0], 0, file="<edit>") == phase
    except (tomllib.TOMLDecodeError, UserError):
        return False


def render_phase(piece: str | None, phase: PhaseSpec) -> str:
    """The text of ``phase``: its old text with only the changed keys rewritten, or, when
    that cannot express it, written anew under the same leading comments."""
    if piece is not None:
        try:
            doc = tomlkit.parse(piece)
            _update(doc["phases"][0], phase)
            text = tomlkit.dumps(doc)
            if _reads_as(text, phase):
                return text
        except Exception:        # tomlkit refusing a layout: write the phase anew
            pass
    lead = _leading_comments(piece) if piece else ""
    doc = tomlkit.document()
    tables = tomlkit.aot()
    tables.append(_phase_table(phase.to_dict()))
    doc.append("phases", tables)
    return lead + tomlkit.dumps(doc).lstrip("\n")


def _phase_table(entry: dict[str, Any]):
    table = tomlkit.table()
    for key, value in entry.items():
        if key == "branches":       # [[phases.branches]] with their own [[…phases]]
            branches = tomlkit.aot()
            for b in value:
                bt = tomlkit.table()
                for k, v in b.items():
                    if k == "phases":
                        sub = tomlkit.aot()
                        for p in v:
                            sub.append(_phase_table(p))
                        bt.append(k, sub)
                    else:
                        bt.append(k, item(v, key=k))
                branches.append(bt)
            table.append(key, branches)
        else:
            table.append(key, item(value, key=key))
    return table


def _update(table, phase: PhaseSpec) -> None:
    """Rewrite only the keys of the phase's table whose value changed (comments stay)."""
    wanted = phase.to_dict()
    for key in [k for k in table if k not in wanted]:
        del table[key]
    for key, value in wanted.items():
        current = table.get(key)
        plain = current.unwrap() if hasattr(current, "unwrap") else current
        if key in table and plain == value:
            continue
        if key == "branches":
            table[key] = _phase_table({"branches": value})["branches"]
        else:
            table[key] = item(value, key=key)


def item(value: Any, *, key: str = ""):
    """A value as people write it: short lists and tables on one line (``{ a = 1 }``);
    a longer list, or a list of tables, one item per line; a longer table of plain
    values as its own ``[phases.key]`` table."""
    if value is None:
        raise SpecError("None is not a TOML value")
    one_line = len(key) + len(toml_value(value)) + 3 <= LINE
    if isinstance(value, dict) and not one_line and not any(
            isinstance(v, dict) for v in value.values()):
        table = tomlkit.table()
        for k, v in value.items():
            table.append(k, tomlkit.value(toml_value(v)))
        return table
    if isinstance(value, (list, tuple)) and value and (
            not one_line or any(isinstance(v, dict) for v in value)):
        return tomlkit.value(toml_value(list(value), multiline=True))   # 2-space indent
    return tomlkit.value(toml_value(value))


class PipelineEditor:
    """A pipeline file being edited: source, enable, move, add, remove, set options, save.

    A path that does not exist yet is a new pipeline (written by the first save)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.new = not self.path.exists()
        if self.new:
            if self.path.suffix.lower() != ".toml":
                raise UserError(f"{self.path}: a new pipeline file must end in .toml")
            self.spec = PipelineSpec(name=self.path.stem, source=SourceSpec(path=""), phases=[],
                                     base_dir=self.path.resolve().parent, file=str(self.path))
            self._read_text("")
            self.dirty = True
        else:
            self.spec = load_spec(self.path)
            try:
                self._read_text(self.path.read_text(encoding="utf-8"))
            except Exception as exc:     # tomlkit stricter than tomllib: one line, no crash
                raise UserError(f"{self.path}: cannot be edited here ({exc}); "
                                "the file itself is valid") from None
            self.dirty = False

    def _read_text(self, text: str) -> None:
        split = split_phases(text)
        self._pieces: list[str | None]       # each phase's text as written; None: render it
        if split is None or len(split[1]) != len(self.phases):
            # Not one [[phases]] table per phase: keep the rest, write the phases anew.
            doc = tomlkit.parse(text)
            doc.pop("phases", None)
            self._preamble, self._pieces = tomlkit.dumps(doc), [None] * len(self.phases)
        else:
            self._preamble, self._pieces = split[0], list(split[1])
        if self.new:
            self._set_preamble()

    @property
    def phases(self) -> list[PhaseSpec]:
        return self.spec.phases

    def _changed(self) -> None:
        self.dirty = True

    # -- the source -----------------------------------------------------------------
    def set_source(self, path: str, *, delimiter: str | None = None, quote: str | None = None,
                   encoding: str | None = None, header: bool = True) -> None:
        """Set the CSV file and how it is read (None: sniffed when the job starts)."""
        source = SourceSpec(path=path, delimiter=delimiter or None, quote=quote or None,
                            encoding=encoding or None, header=header)
        for key in ("delimiter", "quote"):
            value = getattr(source, key)
            if value is not None and len(value) != 1:
                raise UserError(f"source.{key}: must be a single character, got {value!r}")
        if source != self.spec.source:
            self.spec.source = source
            self._set_preamble()
            self._changed()

    def _set_preamble(self) -> None:
        """Write name and [source] into the preamble, keeping its comments and other keys."""
        doc = tomlkit.parse(self._preamble or "")
        if "name" not in doc:
            doc["name"] = self.spec.name
        wanted = self.spec.to_dict()["source"]
        table = doc.get("source")
        if table is None:
            table = tomlkit.table()
            doc["source"] = table
        for key in [k for k in table if k not in wanted]:
            del table[key]
        for key, value in wanted.items():
            if table.get(key) != value:
                table[key] = value
        self._preamble = tomlkit.dumps(doc)

    def source_path(self) -> Path | None:
        return self.spec.resolve(self.spec.source.path) if self.spec.source.path else None

    def sniff(self):
        """What the engine sees in the source file (its Dialect); UserError if it cannot."""
        from ..engine import extract
        if not self.spec.source.path:
            raise UserError("no source file yet")
        s = self.spec.source      # a file, a glob, a directory or a list: its first file
        return extract.sniff_source(s.where(), self.spec.base_dir, delimiter=s.delimiter,
                                    quote=s.quote, encoding=s.encoding, header=s.header)[0]

    # -- phases -----------------------------------------------------------------------
    def toggle(self, index: int) -> None:
        phase = self.phases[index]
        self.replace(index, replace(phase, enabled=not phase.enabled))

    def move(self, index: int, delta: int) -> int:
        """Move a phase up (-1) or down (+1), with its text; returns its new index."""
        target = index + delta
        if not 0 <= index < len(self.phases) or not 0 <= target < len(self.phases):
            return index
        self.phases[index], self.phases[target] = self.phases[target], self.phases[index]
        self._pieces[index], self._pieces[target] = self._pieces[target], self._pieces[index]
        self._changed()
        return target

    def insert_at(self, index: int, phase_type: str) -> int:
        """Where a new phase added after ``index`` goes: after it, but before the load or
        branch that ends the line (rows after those go nowhere); a load or branch itself
        goes at the end, where it can end the line."""
        at = min(max(index + 1, 0), len(self.phases))
        if phase_type in TERMINAL:
            return len(self.phases)
        end = len(self.phases)
        while end > 0 and self.phases[end - 1].type in TERMINAL:
            end -= 1
        return min(at, end)

    def add(self, index: int, phase_type: str) -> int:
        """Insert a new phase of ``phase_type`` (see ``insert_at``); returns its index."""
        at = self.insert_at(index, phase_type)
        branches: list[BranchSpec] | None = [] if phase_type == BRANCH else None
        self.phases.insert(at, PhaseSpec(type=phase_type, branches=branches))
        self._pieces.insert(at, None)
        self._changed()
        return at

    def remove(self, index: int) -> None:
        del self.phases[index]
        del self._pieces[index]
        self._changed()

    def replace(self, index: int, phase: PhaseSpec) -> None:
        """Put an edited phase in place; its text is updated key by key. The PhaseSpec
        object stays the same one (the console keys its rows by it)."""
        current = self.phases[index]
        for f in fields(PhaseSpec):
            setattr(current, f.name, getattr(phase, f.name))
        self._pieces[index] = render_phase(self._pieces[index], current)
        self._changed()

    def set_options(self, index: int, options: dict[str, Any], *, when: Any = _KEEP,
                    checkpoint: Any = _KEEP) -> None:
        """Set a phase's options (and its when/checkpoint: unchanged unless given), checked
        as the file is (SpecError naming the phase and key)."""
        old = self.phases[index]
        when = old.when if when is _KEEP else when
        checkpoint = old.checkpoint if checkpoint is _KEEP else checkpoint
        raw = {"type": old.type, **({} if old.enabled else {"enabled": False})}
        if when is not None:
            raw["when"] = when
        if checkpoint:
            raw["checkpoint"] = True
        raw.update(options)
        phase = _phase_from_dict(raw, index, file=str(self.path))
        self.replace(index, phase)

    # -- saving -------------------------------------------------------------------------
    def text(self) -> str:
        """The file as it will be written."""
        parts = [self._preamble.rstrip("\n") + "\n"] if self._preamble.strip() else []
        for i, phase in enumerate(self.phases):
            piece = self._pieces[i]
            if piece is None:
                piece = self._pieces[i] = render_phase(None, phase)
            parts.append(piece.rstrip("\n") + "\n")
        return "\n".join(parts)

    def save(self) -> None:
        """Write the edits into the file, keeping what was not edited as written. If the
        result would not load back as this pipeline, the whole spec is written instead."""
        text = self.text()
        try:
            same = spec_from_text(text, self.path) == self.spec
        except UserError:
            same = False
        if not same:
            text = self.spec.to_toml()
        self.path.write_text(text, encoding="utf-8")
        self.new = False
        self._read_text(text)
        self.dirty = False

    def check(self) -> tuple[bool, str]:
        """Plan the pipeline as edited (nothing is written): (ok, summary or the problem)."""
        from ..engine.plan import make_plan
        if not self.spec.source.path:
            return False, "no source yet: s sets the CSV file to read"
        if not self.phases:
            return False, "no phases yet: a adds one (a pipeline ends with a load)"
        try:
            plan = make_plan(self.spec)
        except UserError as exc:
            return False, str(exc)
        except Exception as exc:      # a plugin that breaks while planning
            return False, f"{type(exc).__name__}: {exc}"
        d = plan.describe()
        cols = len(d["phases"][-1]["columns"]) if d["phases"] else 0
        dest = d.get("destination")
        if not dest:
            return True, f"OK: {len(d['phases'])} phases, {cols} columns"
        from ..api import named
        where, table = named(dest, dest.get("table"))     # postgres://host/db schema.table
        shown = where if dest.get("table") and table is None else Path(where).name
        table = f" table {table}" if table else ""
        return True, (f"OK: {len(d['phases'])} phases, {cols} columns -> {dest['kind']} "
                      f"{shown}{table} ({dest['mode']})")


# -- option values as text in the edit form ------------------------------------------
def toml_value(value: Any, *, multiline: bool = False) -> str:
    """A value in TOML syntax: inline tables, arrays (one item per line when multiline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)   # JSON string escapes are valid TOML
    if isinstance(value, dict):
        items = ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        parts = [toml_value(v) for v in value]
        if multiline and parts:
            return "[\n" + "".join(f"  {p},\n" for p in parts) + "]"
        return "[" + ", ".join(parts) + "]"
    if isinstance(value, (datetime.date, datetime.time)):   # TOML dates are bare
        return value.isoformat()
    return json.dumps(str(value))


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def option_text(kind: str, value: Any) -> str:
    """What the form shows for an option's value (empty: not set). A table is shown as
    ``key = value`` lines, as it is written in a pipeline file."""
    if value is None:
        return ""
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "table" and isinstance(value, dict):
        return "\n".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items())
    return toml_value(value, multiline=kind in MULTILINE_KINDS)


_AT = re.compile(r"\(at line (\d+), column (\d+)\)")


def _loads(prefix: str, text: str, suffix: str = "") -> Any:
    """``v`` of the document ``prefix + text + suffix``; the error's position is the one
    in ``text`` (what the operator typed), not in the wrapper."""
    try:
        doc = tomllib.loads(prefix + text + suffix)
    except tomllib.TOMLDecodeError as exc:
        def shift(m: re.Match) -> str:
            line, col = int(m.group(1)), int(m.group(2))
            if line == 1:
                col = max(1, col - len(prefix))
            return f"(at line {line}, column {col})"
        message = _AT.sub(shift, str(exc))
        if message.startswith("Invalid value"):
            message += '; text values need quotes, e.g. total = "quantity * unit_price"'
        raise ValueError(message) from None
    return doc["v"] if prefix else doc


def _first(attempts) -> Any:
    """The first reading that works; else the error of the first (the likeliest form)."""
    first_error = None
    for attempt in attempts:
        try:
            return attempt()
        except ValueError as exc:
            first_error = first_error or exc
    raise ValueError(f"not a TOML value: {first_error}")


def parse_option(kind: str, text: str) -> Any:
    """The value typed in the form; None when empty (option not set). ValueError if bad.

    Accepts what people write: a list without its brackets (``"", "NULL"``, or bare words
    ``a, b``), a table as ``key = value`` lines or without its braces, a list of tables
    without its brackets."""
    body = text.strip()
    if not body:
        return None
    if kind == "string":
        if body[0] in "\"'" and body[-1] == body[0] and len(body) > 1:
            try:                     # a quoted string: its value
                return _loads("v = ", body)
            except ValueError:
                pass
        return text.strip("\r\n")
    if kind == "bool":
        low = body.lower()
        if low in ("true", "yes", "y", "on", "1"):
            return True
        if low in ("false", "no", "n", "off", "0"):
            return False
        raise ValueError(f"not true or false: {body!r}")
    if kind == "string[]":
        return _first([lambda: _list(_loads("v = ", body)), lambda: _loads("v = [", body, "\n]"),
                       lambda: _bare_words(body)])
    if kind == "table":
        return _first([lambda: _table(body)])
    if kind == "table[]":
        whole = [lambda: _list(_loads("v = ", body)), lambda: _loads("v = [", body, "\n]")]
        by_line = [lambda: _tables_by_line(body)]      # column = "a", required = true
        return _first(whole + by_line if body[0] in "[{" else by_line + whole)
    return _first([lambda: _loads("v = ", body), lambda: _table(body)])


def _list(value: Any) -> list:
    if not isinstance(value, list):
        raise ValueError("(a list)")
    return value


def _table(body: str) -> dict:
    """``{ a = 1 }``, ``a = 1, b = 2`` or ``key = value`` lines."""
    if body.startswith("{"):
        value = _loads("v = ", body)
        if not isinstance(value, dict):
            raise ValueError("(a table: key = value)")
        return value
    try:
        return _loads("", body)
    except ValueError as exc:
        if "\n" in body:
            raise
        try:                          # one line, keys separated by commas
            return _loads("v = { ", body, " }")
        except ValueError:
            raise exc from None


def _tables_by_line(body: str) -> list[dict]:
    """One table body per line (``column = "a", required = true``): a list of tables."""
    out = []
    for n, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            try:
                out.append(_loads("v = { ", line.strip(), " }"))
            except ValueError as exc:
                raise ValueError(str(exc).replace("(at line 1,", f"(at line {n},")) from None
    return out


def _bare_words(body: str) -> list[str]:
    """``customer_email, email`` (no quotes): the words."""
    if any(q in body for q in "\"'[]{}="):
        raise ValueError("(a list of strings: \"a\", \"b\")")
    return [w.strip() for w in re.split(r"[,\n]", body) if w.strip()]


def parse_when(text: str) -> Any:
    """A ``when`` condition as typed: a table (``env = "X"``, ``{ min_rows = 10 }``) or a
    predicate reference (``pkg.module:function``, quoted or not). None: always."""
    body = text.strip()
    if not body:
        return None
    if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", body):
        return body
    return _first([lambda: _table(body), lambda: _loads("v = ", body)])


def when_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return toml_value(value)
