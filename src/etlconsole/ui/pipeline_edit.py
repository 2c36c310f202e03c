"""The builder's editing of a pipeline file, in one place.

It edits ``PipelineSpec``/``PhaseSpec`` (what the builder API builds) and saves into the
operator's own file with tomlkit, so comments, key order and layout of the phases the
operator did not touch survive a save. No Textual here.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

from ..errors import UserError
from ..spec import PhaseSpec, PipelineSpec, load_spec, spec_from_text

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# Option kinds edited as TOML values; "string" is edited as raw text.
TOML_KINDS = {"int", "number", "string[]", "table", "table[]", "any"}
MULTILINE_KINDS = {"table[]", "any"}


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


class PipelineEditor:
    """A pipeline file being edited: select, enable, move, add, remove, set options, save."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.spec: PipelineSpec = load_spec(self.path)
        self.dirty = False
        # The file as the operator wrote it, and each phase's own table in it.
        self._doc = tomlkit.parse(self.path.read_text(encoding="utf-8"))
        self._tables = {id(p): t for p, t in zip(self.phases, self._doc.get("phases", []))}

    @property
    def phases(self) -> list[PhaseSpec]:
        return self.spec.phases

    def _changed(self) -> None:
        self.dirty = True

    def toggle(self, index: int) -> None:
        phase = self.phases[index]
        phase.enabled = not phase.enabled
        self._changed()

    def move(self, index: int, delta: int) -> int:
        """Move a phase up (-1) or down (+1); returns its new index."""
        target = index + delta
        if not 0 <= index < len(self.phases) or not 0 <= target < len(self.phases):
            return index
        self.phases[index], self.phases[target] = self.phases[target], self.phases[index]
        self._changed()
        return target

    def add(self, index: int, phase_type: str) -> int:
        """Insert a new phase of ``phase_type`` after ``index``; returns its index."""
        at = min(max(index + 1, 0), len(self.phases))
        self.phases.insert(at, PhaseSpec(type=phase_type))
        self._changed()
        return at

    def remove(self, index: int) -> None:
        del self.phases[index]
        self._changed()

    def set_options(self, index: int, options: dict[str, Any]) -> None:
        self.phases[index].options = dict(options)
        self._changed()

    def save(self) -> None:
        """Write the edits into the file, keeping what was not edited as written. If the
        result would not load back as this pipeline, the whole spec is written instead."""
        phases = tomlkit.aot()
        for phase in self.phases:
            table = self._tables.get(id(phase))
            phases.append(_update(table, phase) if table is not None else tomlkit.item(phase.to_dict()))
        self._doc["phases"] = phases
        text = re.sub(r"\n{3,}", "\n\n", tomlkit.dumps(self._doc))   # moved tables bring blank lines
        try:
            same = spec_from_text(text, self.path) == self.spec
        except UserError:
            same = False
        if not same:
            text = self.spec.to_toml()
        self.path.write_text(text, encoding="utf-8")
        self._doc = tomlkit.parse(text)
        self._tables = {id(p): t for p, t in zip(self.phases, self._doc.get("phases", []))}
        self.dirty = False

    def check(self) -> tuple[bool, str]:
        """Plan the pipeline as edited (nothing is written): (ok, summary or the problem)."""
        from ..engine.plan import make_plan
        try:
            plan = make_plan(self.spec)
        except UserError as exc:
            return False, str(exc)
        except Exception as exc:      # a plugin that breaks while planning
            return False, f"{type(exc).__name__}: {exc}"
        d = plan.describe()
        cols = len(d["phases"][-1]["columns"])
        return True, (f"OK: {len(d['phases'])} phases, {cols} columns -> {d['destination']['kind']} "
                      f"{Path(d['destination']['path']).name} table {d['destination']['table']} "
                      f"({d['destination']['mode']})")


def _update(table, phase: PhaseSpec):
    """The phase's table with only the keys that changed rewritten (comments stay)."""
    wanted = phase.to_dict()
    for key in [k for k in table if k not in wanted]:
        del table[key]
    for key, value in wanted.items():
        current = table.get(key)
        if key not in table or getattr(current, "unwrap", lambda: current)() != value:
            table[key] = value
    return table


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
    return json.dumps(str(value))


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def option_text(kind: str, value: Any) -> str:
    """What the form shows for an option's value (empty: not set)."""
    if value is None:
        return ""
    if kind == "string" and isinstance(value, str):
        return value
    return toml_value(value, multiline=kind in MULTILINE_KINDS)


def parse_option(kind: str, text: str) -> Any:
    """The value typed in the form; None when empty (option not set). ValueError if bad."""
    if not text.strip():
        return None
    if kind == "string":
        return text
    try:
        return tomllib.loads("v = " + text.strip())["v"]
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not a TOML value ({exc})") from None
