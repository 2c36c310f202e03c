"""Pipeline spec: TOML file <-> dataclasses.

The spec is only structure: which source, which phases in which order with which options.
Whether a phase type exists and accepts its options is checked by the phase registry
(``engine.plan``), so plugins and built-ins are validated the same way.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from .errors import SpecError

FORMAT = 1
_TOP_KEYS = {"name", "format", "source", "phases", "description", "max_reject_rate"}
_SOURCE_KEYS = {"path", "delimiter", "quote", "encoding", "header"}
# Keys every phase understands; the rest are the phase's own options.
COMMON_PHASE_KEYS = {"type", "enabled", "when", "checkpoint"}


@dataclass
class SourceSpec:
    path: str
    delimiter: str | None = None
    quote: str | None = None
    encoding: str | None = None
    header: bool = True


@dataclass
class PhaseSpec:
    type: str
    options: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    checkpoint: bool = False     # materialize this phase's output (for `rerun --from`)

    def label(self, index: int) -> str:
        return f"phase {index + 1} ({self.type})"


@dataclass
class PipelineSpec:
    name: str
    source: SourceSpec
    phases: list[PhaseSpec]
    base_dir: Path = field(default_factory=Path.cwd)
    file: str = "<pipeline>"
    description: str | None = None
    max_reject_rate: float | None = None   # fail the job when more of the rows read are rejected

    def resolve(self, path: str | Path) -> Path:
        """A path from the pipeline file, relative to the file's folder."""
        return (self.base_dir / Path(path).expanduser()).resolve()

    def to_dict(self) -> dict[str, Any]:
        source = {"path": self.source.path}
        for key in ("delimiter", "quote", "encoding"):
            if getattr(self.source, key) is not None:
                source[key] = getattr(self.source, key)
        if not self.source.header:
            source["header"] = False
        doc: dict[str, Any] = {"name": self.name}
        if self.description:
            doc["description"] = self.description
        if self.max_reject_rate is not None:
            doc["max_reject_rate"] = self.max_reject_rate
        doc["source"] = source
        phases = []
        for phase in self.phases:
            entry: dict[str, Any] = {"type": phase.type}
            if not phase.enabled:
                entry["enabled"] = False
            if phase.checkpoint:
                entry["checkpoint"] = True
            entry.update(phase.options)
            phases.append(entry)
        doc["phases"] = phases
        return doc

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_toml(), encoding="utf-8")


def _expect(value, kind, message, **where):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SpecError(message, **where)
    return value


def spec_from_dict(doc: dict[str, Any], *, file: str = "<pipeline>",
                   base_dir: Path | None = None) -> PipelineSpec:
    """Build a spec from parsed TOML, rejecting unknown keys with their location."""
    for key in doc:
        if key not in _TOP_KEYS:
            raise SpecError(f"unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})",
                            file=file, key=key)
    if doc.get("format", FORMAT) != FORMAT:
        raise SpecError(f"format {doc['format']!r} is not supported (this version reads format {FORMAT})",
                        file=file, key="format")
    name = _expect(doc.get("name", Path(file).stem), str, "must be a string", file=file, key="name")
    src = doc.get("source")
    if src is None:
        raise SpecError("missing [source] table with the CSV path", file=file, key="source")
    _expect(src, dict, "must be a table: [source]", file=file, key="source")
    for key in src:
        if key not in _SOURCE_KEYS:
            raise SpecError(f"unknown key (expected one of {', '.join(sorted(_SOURCE_KEYS))})",
                            file=file, key=f"source.{key}")
    if "path" not in src:
        raise SpecError("missing the CSV path", file=file, key="source.path")
    _expect(src["path"], str, "must be a string", file=file, key="source.path")
    for key in ("delimiter", "quote"):
        if key in src and (not isinstance(src[key], str) or len(src[key]) != 1):
            raise SpecError("must be a single character", file=file, key=f"source.{key}")
    if "encoding" in src:
        _expect(src["encoding"], str, "must be a string", file=file, key="source.encoding")
    if "header" in src:
        _expect(src["header"], bool, "must be true or false", file=file, key="source.header")
    source = SourceSpec(**src)

    raw_phases = doc.get("phases", [])
    _expect(raw_phases, list, "must be an array of tables: [[phases]]", file=file, key="phases")
    phases = []
    for i, raw in enumerate(raw_phases):
        where = f"phase {i + 1}"
        _expect(raw, dict, "must be a table", file=file, phase=where)
        if "type" not in raw:
            raise SpecError("missing 'type'", file=file, phase=where, key="type")
        ptype = _expect(raw["type"], str, "must be a string", file=file, phase=where, key="type")
        where = f"phase {i + 1} ({ptype})"
        enabled = _expect(raw.get("enabled", True), bool, "must be true or false",
                          file=file, phase=where, key="enabled")
        if "when" in raw:
            raise SpecError("'when' is not supported by this version yet",
                            file=file, phase=where, key="when")
        checkpoint = _expect(raw.get("checkpoint", False), bool, "must be true or false",
                             file=file, phase=where, key="checkpoint")
        options = {k: v for k, v in raw.items() if k not in COMMON_PHASE_KEYS}
        phases.append(PhaseSpec(type=ptype, options=options, enabled=enabled, checkpoint=checkpoint))
    rate = doc.get("max_reject_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                             or not 0 <= rate <= 1):
        raise SpecError(f"must be a fraction from 0 to 1 (0.05 = 5%), got {rate!r}",
                        file=file, key="max_reject_rate")
    return PipelineSpec(name=name, source=source, phases=phases,
                        base_dir=base_dir or Path.cwd(), file=file,
                        description=doc.get("description"),
                        max_reject_rate=None if rate is None else float(rate))


def load_spec(path: str | Path) -> PipelineSpec:
    """Read a pipeline file; every mistake is a SpecError naming the file."""
    path = Path(path)
    shown = str(path)
    if not path.exists():
        raise SpecError("pipeline file not found", file=shown)
    if path.is_dir():
        raise SpecError("is a directory, expected a pipeline file (.toml)", file=shown)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SpecError("not a UTF-8 text file", file=shown) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"TOML syntax error: {exc}", file=shown) from None
    return spec_from_dict(doc, file=shown, base_dir=path.resolve().parent)
