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

import tomlkit

from .conditions import check_when
from .errors import SpecError

FORMAT = 1
_TOP_KEYS = {"name", "format", "source", "phases", "description", "max_reject_rate", "executor"}
EXECUTORS = ("local", "dask")     # where a job runs: threads of one process, or a Dask cluster
_SOURCE_KEYS = {"path", "delimiter", "quote", "encoding", "header"}
# Keys every phase understands; the rest are the phase's own options.
COMMON_PHASE_KEYS = {"type", "enabled", "when", "checkpoint"}
BRANCH = "branch"                      # the phase type that splits the stream
_BRANCH_KEYS = {"name", "filter", "phases"}


@dataclass
class SourceSpec:
    # One CSV file, a glob ("drops/2026-12-*/orders_*.csv*") or a directory (see
    # engine.sources.resolve); relative to the pipeline file's folder.
    path: str
    delimiter: str | None = None
    quote: str | None = None
    encoding: str | None = None
    header: bool = True
    # ``path = [...]`` in the file: the list, and ``path`` its first entry (what the
    # console's source form shows); the file is written back with the list.
    paths: list[str] | None = None

    def where(self) -> str | list[str]:
        """What ``path`` names, as the pipeline file says it: a string or a list."""
        return list(self.paths) if self.paths is not None else self.path


@dataclass
class PhaseSpec:
    type: str
    options: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    checkpoint: bool = False     # materialize this phase's output (for `rerun --from`)
    when: Any = None             # condition decided at job start (engine.conditions)
    branches: list["BranchSpec"] | None = None   # only for type = "branch"

    def label(self, index: int) -> str:
        return f"phase {index + 1} ({self.type})"

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": self.type}
        if not self.enabled:
            entry["enabled"] = False
        if self.when is not None:
            entry["when"] = self.when
        if self.checkpoint:
            entry["checkpoint"] = True
        entry.update(self.options)
        if self.branches is not None:
            entry["branches"] = [b.to_dict() for b in self.branches]
        return entry


@dataclass
class BranchSpec:
    """One branch of a ``branch`` phase: every batch reaches it; ``filter`` (the safe
    expression syntax of ``derive``) keeps the rows it holds for; its phases end in a load."""

    name: str
    phases: list[PhaseSpec]
    filter: str | None = None

    def label(self, parent: str) -> str:
        return f"{parent} > {self.name}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.filter is not None:
            out["filter"] = self.filter
        out["phases"] = [p.to_dict() for p in self.phases]
        return out


@dataclass
class PipelineSpec:
    name: str
    source: SourceSpec
    phases: list[PhaseSpec]
    # Where the spec came from does not make it a different pipeline: a builder's spec
    # equals the TOML file it saves.
    base_dir: Path = field(default_factory=Path.cwd, compare=False)
    file: str = field(default="<pipeline>", compare=False)
    description: str | None = None
    max_reject_rate: float | None = None   # fail the job when more of the rows read are rejected
    executor: str = "local"                # local | dask (ADR 0026); --executor overrides

    @property
    def branched(self) -> bool:
        return any(p.type == BRANCH and p.enabled for p in self.phases)

    def resolve(self, path: str | Path) -> Path:
        """A path from the pipeline file, relative to the file's folder."""
        return (self.base_dir / Path(path).expanduser()).resolve()

    def to_dict(self) -> dict[str, Any]:
        source: dict[str, Any] = {"path": self.source.where()}
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
        if self.executor != "local":
            doc["executor"] = self.executor
        doc["source"] = source
        doc["phases"] = [phase.to_dict() for phase in self.phases]
        return doc

    def to_toml(self) -> str:
        """The pipeline file as a person would write it: one ``[[phases]]`` table per
        phase, options as inline values, lists of tables (``rules``) one per line."""
        return tomlkit.dumps(_document(self.to_dict())).replace("\n\n\n", "\n\n")

    def save(self, path: str | Path) -> None:
        """Write the spec as a pipeline file that loads back equal (``load_spec``)."""
        try:
            text = self.to_toml()
        except TypeError as exc:     # e.g. None as an option value: TOML has no null
            raise SpecError(f"cannot be written as TOML: {exc}", file=str(path)) from None
        Path(path).write_text(text, encoding="utf-8")


def _document(doc: dict[str, Any]) -> tomlkit.TOMLDocument:
    out = tomlkit.document()
    for key, value in doc.items():
        if key == "phases":
            out.add(tomlkit.nl())
            out.append("phases", _phase_tables(value))
        elif isinstance(value, dict):
            out.add(tomlkit.nl())
            out.append(key, _table(value))
        else:
            out.append(key, _inline(value))
    return out


def _phase_tables(phases: list[dict[str, Any]]):
    tables = tomlkit.aot()
    for phase in phases:
        table = tomlkit.table()
        for key, value in phase.items():
            if key == "branches":    # nested [[phases.branches]] with their own phases
                branches = tomlkit.aot()
                for b in value:
                    bt = tomlkit.table()
                    for k, v in b.items():
                        bt.append(k, _phase_tables(v) if k == "phases" else _inline(v))
                    branches.append(bt)
                table.append(key, branches)
            else:
                table.append(key, _inline(value))
        tables.append(table)
    return tables


def _table(value: dict[str, Any]):
    table = tomlkit.table()
    for k, v in value.items():
        table.append(k, _inline(v))
    return table


def _inline(value: Any):
    """Dicts as inline tables, lists on one line — but a list of tables one per line."""
    if isinstance(value, dict):
        table = tomlkit.inline_table()
        for k, v in value.items():
            table.append(k, _inline(v))
        return table
    if isinstance(value, list):
        array = tomlkit.array()
        for v in value:
            array.append(_inline(v))
        if any(isinstance(v, dict) for v in value):
            array.multiline(True)
        return array
    if value is None:
        raise TypeError("None is not a TOML value")
    return tomlkit.item(value)


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
    _source_path(src["path"], file)
    for key in ("delimiter", "quote"):
        if key in src and (not isinstance(src[key], str) or len(src[key]) != 1):
            raise SpecError("must be a single character", file=file, key=f"source.{key}")
    if "encoding" in src:
        _expect(src["encoding"], str, "must be a string", file=file, key="source.encoding")
    if "header" in src:
        _expect(src["header"], bool, "must be true or false", file=file, key="source.header")
    paths = list(src["path"]) if isinstance(src["path"], list) else None
    source = SourceSpec(**{**src, "path": paths[0] if paths else src["path"]}, paths=paths)

    raw_phases = doc.get("phases", [])
    _expect(raw_phases, list, "must be an array of tables: [[phases]]", file=file, key="phases")
    phases = [_phase_from_dict(raw, i, file=file) for i, raw in enumerate(raw_phases)]
    rate = doc.get("max_reject_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                             or not 0 <= rate <= 1):
        raise SpecError(f"must be a fraction from 0 to 1 (0.05 = 5%), got {rate!r}",
                        file=file, key="max_reject_rate")
    executor = doc.get("executor", "local")
    if executor not in EXECUTORS:
        raise SpecError(f"must be one of {', '.join(EXECUTORS)}, got {executor!r}",
                        file=file, key="executor")
    return PipelineSpec(name=name, source=source, phases=phases,
                        base_dir=base_dir or Path.cwd(), file=file,
                        description=doc.get("description"),
                        max_reject_rate=None if rate is None else float(rate), executor=executor)


def _source_path(path: Any, file: str) -> None:
    """A path (file, glob or directory) or a non-empty list of them."""
    if isinstance(path, list):
        if not path:
            raise SpecError("must name at least one file (an empty list)", file=file,
                            key="source.path")
        for i, item in enumerate(path):
            if not isinstance(item, str) or not item.strip():
                raise SpecError(f"entry {i + 1} must be a path (a non-empty string)",
                                file=file, key="source.path")
        return
    _expect(path, str, "must be a string (a file, a glob or a directory) or a list of them",
            file=file, key="source.path")


def _phase_from_dict(raw: Any, i: int, *, file: str, parent: str | None = None) -> PhaseSpec:
    where = f"phase {i + 1}" if parent is None else f"{parent} > phase {i + 1}"
    _expect(raw, dict, "must be a table", file=file, phase=where)
    if "type" not in raw:
        raise SpecError("missing 'type'", file=file, phase=where, key="type")
    ptype = _expect(raw["type"], str, "must be a string", file=file, phase=where, key="type")
    where = f"{where} ({ptype})"
    enabled = _expect(raw.get("enabled", True), bool, "must be true or false",
                      file=file, phase=where, key="enabled")
    when = raw.get("when")
    if when is not None:
        check_when(when, file=file, phase=where)
        if ptype in ("load", BRANCH):
            raise SpecError(f"a {ptype} phase cannot be conditional (its rows would go "
                            "nowhere); put the condition on the phases before it",
                            file=file, phase=where, key="when")
    checkpoint = _expect(raw.get("checkpoint", False), bool, "must be true or false",
                         file=file, phase=where, key="checkpoint")
    options = {k: v for k, v in raw.items() if k not in COMMON_PHASE_KEYS}
    branches = None
    if ptype == BRANCH:
        if parent is not None:
            raise SpecError("branches cannot be nested", file=file, phase=where, key="type")
        if checkpoint:
            raise SpecError("a branch phase cannot be checkpointed; checkpoint a phase before it",
                            file=file, phase=where, key="checkpoint")
        branches = _branches(options.pop("branches", None), file=file, phase=where)
        if options:
            raise SpecError("unknown option (a branch phase has only [[phases.branches]])",
                            file=file, phase=where, key=next(iter(options)))
    elif parent is not None and checkpoint:
        raise SpecError("phases inside a branch cannot be checkpointed", file=file,
                        phase=where, key="checkpoint")
    return PhaseSpec(type=ptype, options=options, enabled=enabled, checkpoint=checkpoint,
                     when=when, branches=branches)


def _branches(raw: Any, *, file: str, phase: str) -> list[BranchSpec]:
    if raw is None:
        raise SpecError("a branch phase needs [[phases.branches]] tables, each with a name "
                        "and its own phases ending in a load", file=file, phase=phase,
                        key="branches")
    _expect(raw, list, "must be an array of tables: [[phases.branches]]", file=file,
            phase=phase, key="branches")
    if not raw:
        raise SpecError("needs at least one branch", file=file, phase=phase, key="branches")
    out: list[BranchSpec] = []
    seen: set[str] = set()
    for j, b in enumerate(raw):
        key = f"branches[{j}]"
        _expect(b, dict, "must be a table", file=file, phase=phase, key=key)
        for k in b:
            if k not in _BRANCH_KEYS:
                raise SpecError(f"unknown key (expected one of {', '.join(sorted(_BRANCH_KEYS))})",
                                file=file, phase=phase, key=f"{key}.{k}")
        if "name" not in b:
            raise SpecError("missing 'name'", file=file, phase=phase, key=f"{key}.name")
        name = _expect(b["name"], str, "must be a string", file=file, phase=phase,
                       key=f"{key}.name")
        if not name.strip():
            raise SpecError("is empty", file=file, phase=phase, key=f"{key}.name")
        if name in seen:
            raise SpecError(f"branch name {name!r} is used twice; names must be unique",
                            file=file, phase=phase, key=f"{key}.name")
        seen.add(name)
        flt = b.get("filter")
        if flt is not None:
            _expect(flt, str, "must be a string expression, e.g. \"status == 'cancelled'\"",
                    file=file, phase=phase, key=f"{key}.filter")
        sub = b.get("phases")
        if sub is None:
            raise SpecError("missing its phases (ending in a load)", file=file, phase=phase,
                            key=f"{key}.phases")
        _expect(sub, list, "must be an array of tables: [[phases.branches.phases]]", file=file,
                phase=phase, key=f"{key}.phases")
        label = f"{phase} > {name}"
        out.append(BranchSpec(name=name, filter=flt,
                              phases=[_phase_from_dict(p, i, file=file, parent=label)
                                      for i, p in enumerate(sub)]))
    return out


def load_spec(path: str | Path) -> PipelineSpec:
    """Read a pipeline file; every mistake is a SpecError naming the file."""
    path = Path(path)
    shown = str(path)
    if not path.exists():
        raise SpecError("pipeline file not found", file=shown)
    if path.is_dir():
        raise SpecError("is a directory, expected a pipeline file (.toml)", file=shown)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError("not a UTF-8 text file", file=shown) from None
    return spec_from_text(text, path)


def spec_from_text(text: str, path: str | Path) -> PipelineSpec:
    """A pipeline file's text (e.g. as a job recorded it), read as if it were at ``path``."""
    path = Path(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"TOML syntax error: {exc}", file=str(path)) from None
    return spec_from_dict(doc, file=str(path), base_dir=path.resolve().parent)
