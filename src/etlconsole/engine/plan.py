"""Plan a job before anything runs: sniff the source, decide the ``when`` conditions, build
the phases, and push the schema through them, so every mistake in the pipeline (unknown
column, bad rule, wrong type, bad filter) is found — with file, phase and key — before the
destination is touched.

A skipped phase (``enabled = false`` or a ``when`` that does not hold) is left out of the
schema flow: the phases after it are planned against the schema without it. A ``branch``
phase ends the main line; each branch is planned against the schema at the branch point.

One plan shape (ADR 0022): a plan always has ``targets``, where its rows go. A plain
pipeline is one target with no name, no filter and no phases of its own (its load ends the
main line); a branch phase makes one target per branch. What really differs between the
two is said as data on the target (``refusals_are_job_rejects``), not by asking which
shape the plan has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa

from ..errors import SpecError, UserError
from ..spec import BRANCH, PhaseSpec, PipelineSpec
from . import conditions, extract, manyfiles
from . import destinations
from .expr import ExpressionError, compile_expression
from .phases import build, origin_of
from .phases.base import ROW, Phase, PhaseResult
from .phases.load import Load
from .sources import SourceFile


@dataclass
class PlannedPhase:
    label: str                  # "phase 2 (validate)"
    type: str
    phase: Phase
    output: pa.Schema
    index: int = 0              # position in the pipeline file, 1-based
    checkpoint: bool = False    # its output is materialized in the job's workspace
    source: str = "built-in"    # built-in | plugin (dist) | module path
    ref: str = ""


def _loaded(schema: pa.Schema) -> pa.Schema:
    """The columns a destination receives: the lineage and record number stay behind."""
    return pa.schema([f for f in schema if not f.name.startswith("_etl_")])


@dataclass
class PlannedTarget:
    """Where rows go: a filter, the target's own phases, and a load into one destination.

    A plain pipeline has one: no name, no filter, no phases of its own (its load is the
    main line's last phase). A branch phase has one per branch, each after the branch
    point: its filter, its phases (its load the last), its destination."""

    name: str | None            # the branch's name; None for the plain pipeline's target
    label: str                  # "phase 5 (branch) > cancelled", or the plain load's label
    load_label: str             # its load phase's label: its rejects and its writes carry it
    filter: Any                 # a compiled engine.expr.Expression, or None: every row
    filter_text: str | None
    phases: list[PlannedPhase]  # the target's own phases (a branch's, its load included)
    load: Load
    destination_path: Path
    output_schema: pa.Schema    # what the destination receives
    # The one real difference between the two kinds. True when the load ends the main line:
    # a row the destination refuses is a reject of the job (in rows_rejected, not in
    # rows_loaded, and on the load's line of the phase table). False for a branch: the
    # job's rows_loaded counts the rows that reached the branches, and what a branch's
    # destination refuses is the branch's own (its line, its stats).
    refusals_are_job_rejects: bool

    def destination(self) -> dict:
        named = {"branch": self.name} if self.name is not None else {}
        return named | {"kind": self.load.destination,
                        "path": destinations.get(self.load.destination).where(self.destination_path),
                        "table": self.load.table, "mode": self.load.mode}


@dataclass
class Plan:
    spec: PipelineSpec
    source: Path
    dialect: extract.Dialect
    phases: list[PlannedPhase]          # the main line (up to the branch phase, if any)
    skipped: list[str] = field(default_factory=list)
    conditions: list[dict] = field(default_factory=list)   # every `when`, decided
    targets: list[PlannedTarget] = field(default_factory=list)   # one at least (make_plan)
    branch_schema: pa.Schema | None = None                  # schema at the branch point
    estimated_rows: int | None = None
    # The source's files in order, each with its dialect (engine.manyfiles); empty when
    # the plan reads no source (a rerun from a checkpoint, a replay).
    files: list[SourceFile] = field(default_factory=list)
    dialects: list[extract.Dialect] = field(default_factory=list)

    @property
    def output_schema(self) -> pa.Schema:
        schema = self.phases[-1].output if self.phases else self.branch_schema
        assert schema is not None, "a plan without main-line phases branches at once"
        return _loaded(schema)

    @property
    def load_label(self) -> str:
        return self.phases[-1].label

    # Views for the CLI, replay and the store, which tell a branch's figures apart.
    @property
    def branches(self) -> list[PlannedTarget]:
        """The targets of a branch phase (none for a plain pipeline)."""
        return [t for t in self.targets if t.name is not None]

    @property
    def load(self) -> Load | None:
        """The load of a plain pipeline's target (None when the pipeline branches)."""
        return next((t.load for t in self.targets if t.name is None), None)

    @property
    def destination_path(self) -> Path | None:
        return next((t.destination_path for t in self.targets if t.name is None), None)

    def destinations(self) -> list[dict]:
        return [t.destination() for t in self.targets]

    @staticmethod
    def _phase_json(p: PlannedPhase, decided: dict[str, dict]) -> dict:
        out: dict[str, Any] = {"label": p.label, "type": p.type, "source": p.source, "ref": p.ref,
               "columns": [f"{f.name}: {f.type}" for f in p.output if f.name != ROW]}
        if p.label in decided:
            out["when"] = decided[p.label]["when"]
            out["condition"] = decided[p.label]
        return out

    def describe(self) -> dict:
        decided = {c["phase"]: c for c in self.conditions}
        info: dict[str, Any] = {
            "pipeline": self.spec.name,
            "source": str(self.source),
            **({"files": [f.to_json() for f in self.files]} if len(self.files) > 1 else {}),
            "dialect": self.dialect.to_json(),
            "phases": [self._phase_json(p, decided) for p in self.phases],
            "skipped": self.skipped,
            "conditions": self.conditions,
            "estimated_rows": self.estimated_rows,
            "destinations": self.destinations(),
            "destination": next((t.destination() for t in self.targets if t.name is None), None),
            "branches": [{"name": b.name, "label": b.label, "filter": b.filter_text,
                          "phases": [self._phase_json(p, decided) for p in b.phases],
                          "destination": b.destination()} for b in self.branches],
        }
        return info


def decisions_from_events(events: list[dict]) -> dict[str, dict]:
    """The `when` decisions a job recorded at its start (event ``plan.conditions``)."""
    for e in events:
        if e["event"] == "plan.conditions":
            return {d["phase"]: d for d in e["details"].get("decisions", [])}
    return {}


class _Planner:
    def __init__(self, spec: PipelineSpec, source_path: Path, dialect: extract.Dialect,
                 env: Mapping[str, str], decided: Mapping[str, dict] | None):
        self.spec, self.file = spec, spec.file
        self.source, self.dialect = source_path, dialect
        self.env, self.decided = env, dict(decided or {})
        self.skipped: list[str] = []
        self.conditions: list[dict] = []
        self._estimate: tuple[int, bool] | None = None
        self.files: list[SourceFile] = []

    def estimate(self) -> tuple[int, bool]:
        if self._estimate is None:
            d = self.dialect
            if d.empty:
                self._estimate = (0, True)
            elif len(self.files) > 1 or any(f.compression for f in self.files):
                self._estimate = manyfiles.estimate_rows(self.files, d)
            else:
                self._estimate = conditions.estimate_rows(
                    self.source, encoding=d.encoding, delimiter=d.delimiter, quote=d.quote,
                    header=d.header, skip_lines=d.skip_lines)
        return self._estimate

    def decide(self, pspec: PhaseSpec, label: str, schema: pa.Schema) -> bool:
        """Does the phase run? Records the decision (and the skip, with why)."""
        if not pspec.enabled:
            self.skipped.append(f"{label}: enabled = false")
            return False
        if pspec.when is None:
            return True
        previous = self.decided.get(label)
        if previous is not None and previous.get("when") == pspec.when:
            # resume/rerun: the decision of the job's start, not a new one (env may differ)
            decision = {**previous, "reused": True}
        else:
            ctx = conditions.ConditionContext(
                columns=[n for n in schema.names if not n.startswith("_etl_")],
                source_columns=list(self.dialect.names), source=self.source, env=self.env,
                pipeline=self.spec.name, phase=label, estimator=self.estimate)
            holds, checks = conditions.evaluate(pspec.when, ctx,
                                                where={"file": self.file, "phase": label})
            decision = {"phase": label, "when": pspec.when, "holds": holds, "checks": checks}
        self.conditions.append(decision)
        if not decision["holds"]:
            why = "; ".join(c["why"] for c in decision["checks"] if not c["holds"])
            self.skipped.append(f"{label}: when {conditions.explain(pspec.when)}: {why}")
        return decision["holds"]

    def phase(self, pspec: PhaseSpec, label: str, index: int, schema: pa.Schema
              ) -> PlannedPhase:
        where = {"file": self.file, "phase": label}
        phase = build(pspec.type, pspec.options, where=where)
        try:
            phase.setup(schema)
            out = phase.process(pa.RecordBatch.from_pylist([], schema=schema))
        except SpecError as exc:
            raise exc.located(**where) from None
        except Exception as exc:   # a plugin that cannot handle its input schema
            raise SpecError(f"{type(exc).__name__}: {exc}", **where) from None
        if isinstance(out, PhaseResult):
            out = out.batch
        if not isinstance(out, pa.RecordBatch):
            raise SpecError(f"process() must return a pyarrow.RecordBatch or a PhaseResult, "
                            f"got {type(out).__name__}", **where)
        if ROW not in out.schema.names:
            raise SpecError(f"the phase dropped the {ROW} column every phase must keep", **where)
        source, ref = origin_of(pspec.type)
        return PlannedPhase(label, pspec.type, phase, out.schema, index, pspec.checkpoint,
                            source, ref)

    def line(self, phases: list[tuple[int, PhaseSpec, str]], schema: pa.Schema, *,
             context: str) -> tuple[list[PlannedPhase], pa.Schema, PhaseSpec]:
        """Plan a sequence of phases; returns the planned ones, the schema at their end and
        the final load/branch spec. ``context``: where the sequence is, for errors."""
        enabled = [(i, p, label) for i, p, label in phases if p.enabled]
        for _, pspec, label in phases:
            if not pspec.enabled:
                self.decide(pspec, label, schema)       # records the skip
        ends = ("load", BRANCH) if context == "main" else ("load",)
        if not enabled or enabled[-1][1].type not in ends:
            what = ("a load phase (type = \"load\") or a branch phase" if context == "main"
                    else "a load phase (type = \"load\")")
            raise SpecError(f"the last enabled phase must be {what}", file=self.file,
                            phase=None if context == "main" else context, key="phases")
        planned = []
        for n, (i, pspec, label) in enumerate(enabled):
            last = n == len(enabled) - 1
            where = {"file": self.file, "phase": label}
            if pspec.type == BRANCH:
                if not last:
                    raise SpecError("only the last phase may be a branch phase", **where)
                continue
            if pspec.type == "load" and not last:
                raise SpecError("only the last phase may be a load (use a branch phase to load "
                                "into several destinations)", **where)
            # Loads and branches are never conditional (spec), so the end stays the end.
            if not self.decide(pspec, label, schema):
                continue
            p = self.phase(pspec, label, i + 1, schema)
            if pspec.type == "load" and not isinstance(p.phase, Load):
                raise SpecError("'load' must be the built-in load phase", **where)
            schema = p.output
            planned.append(p)
        return planned, schema, enabled[-1][1]


def _end_load(planned: list[PlannedPhase]) -> Load:
    """The load phase that ends a planned line (``_Planner.line`` checked it is one)."""
    load = planned[-1].phase
    assert isinstance(load, Load), "a line ends with the built-in load phase"
    return load


def _check_destination(file: str, label: str, load: Load, path: Path, source: Path,
                       schema: pa.Schema) -> None:
    if path == source:
        raise SpecError(f"destination {path} is the source file", file=file, phase=label,
                        key="path")
    loaded = [f.name for f in schema if not f.name.startswith("_etl_")]
    if not loaded:
        raise UserError(f"{file}: no columns left to load after {label}")
    try:
        destinations.get(load.destination).check_columns(loaded, table=load.table, source=source)
    except SpecError as exc:
        raise exc.located(file=file) from None


def make_plan(spec: PipelineSpec, *, source: str | Path | Sequence[str] | None = None,
              dest: str | Path | None = None, after_phase: int = 0,
              input_schema: pa.Schema | None = None, dialect: extract.Dialect | None = None,
              env: Mapping[str, str] | None = None,
              decisions: Mapping[str, dict] | None = None) -> Plan:
    """Plan the phases of `spec`; with `after_phase` (1-based) and `input_schema`, only the
    phases after it, fed from that phase's checkpoint instead of the source.

    `decisions` (phase label -> recorded decision) makes `when` reuse what a job decided
    at its start (resume, rerun) instead of deciding again; `env` defaults to os.environ.
    """
    file = spec.file
    files: list[SourceFile] = []
    dialects: list[extract.Dialect] = []
    if dialect is None:    # a glob, a directory or a list: every file sniffed and checked
        source_path, files, dialects = manyfiles.plan_source(spec, source)
        dialect = dialects[0]
    else:                  # fed from a checkpoint or from rejects: the source is not read
        named = source if isinstance(source, (str, Path)) or not source else source[0]
        source_path = Path(str(named)).resolve() if named else spec.resolve(spec.source.path)
    schema = input_schema or pa.schema([(n, pa.string()) for n in dialect.names] + [(ROW, pa.int64())])
    planner = _Planner(spec, source_path, dialect, os.environ if env is None else env, decisions)
    planner.files = files
    for i, p in enumerate(spec.phases):
        if i < after_phase and not p.enabled:
            planner.skipped.append(f"{p.label(i)}: enabled = false")
    main = [(i, p, p.label(i)) for i, p in enumerate(spec.phases) if i >= after_phase]
    planned, schema, last = planner.line(main, schema, context="main")
    plan = Plan(spec, source_path, dialect, planned, planner.skipped, planner.conditions,
                files=files, dialects=dialects)
    if last.type == "load":
        load = _end_load(planned)
        dest_path = destinations.get(load.destination).locate(load, dest, spec.resolve)
        _check_destination(file, planned[-1].label, load, dest_path, source_path, schema)
        label = planned[-1].label
        plan.targets = [PlannedTarget(None, label, label, None, None, [], load, dest_path,
                                      _loaded(schema), refusals_are_job_rejects=True)]
    else:
        plan.branch_schema = schema
        plan.targets = _plan_branches(planner, spec, last, schema, source_path, dest)
    if planner._estimate is not None:
        plan.estimated_rows = planner._estimate[0]
    return plan


def _plan_branches(planner: _Planner, spec: PipelineSpec, bspec: PhaseSpec, schema: pa.Schema,
                   source_path: Path, dest) -> list[PlannedTarget]:
    file = spec.file
    index = spec.phases.index(bspec)
    parent = bspec.label(index)
    branches = bspec.branches or []          # a branch phase has them (spec)
    if dest is not None and len(branches) > 1:
        raise UserError(f"{file}: --dest names one destination, but {parent} loads into "
                        f"{len(branches)}; set each branch's load path in the file")
    empty = pa.RecordBatch.from_pylist([], schema=schema)
    out: list[PlannedTarget] = []
    seen: dict[tuple, str] = {}
    for b in branches:
        label = b.label(parent)
        compiled = None
        if b.filter is not None:
            where = {"file": file, "phase": label, "key": "filter"}
            try:
                compiled = compile_expression(b.filter)
                compiled.check([n for n in schema.names if not n.startswith("_etl_")])
                result = compiled.evaluate(empty)
            except ExpressionError as exc:
                raise SpecError(str(exc), **where) from None
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise SpecError(f"cannot evaluate filter {b.filter!r}: {exc}", **where) from None
            if not pa.types.is_boolean(result.type):
                raise SpecError(f"filter {b.filter!r} must be a condition (true or false), "
                                f"it gives {result.type}", **where)
        phases = [(i, p, f"{label} > {p.label(i)}") for i, p in enumerate(b.phases)]
        planned, bschema, _ = planner.line(phases, schema, context=label)
        load = _end_load(planned)
        dest_path = destinations.get(load.destination).locate(load, dest, spec.resolve)
        _check_destination(file, planned[-1].label, load, dest_path, source_path, bschema)
        key = (str(dest_path), load.table if destinations.get(load.destination).has_tables else None)
        if key in seen:
            raise SpecError(f"branch {b.name!r} loads into the same destination as branch "
                            f"{seen[key]!r} ({dest_path}"
                            f"{', table ' + key[1] if key[1] else ''}); each branch needs "
                            "its own", file=file, phase=planned[-1].label, key="path")
        seen[key] = b.name
        out.append(PlannedTarget(b.name, label, planned[-1].label, compiled, b.filter, planned,
                                 load, dest_path, _loaded(bschema),
                                 refusals_are_job_rejects=False))
    return out
