"""Plan a job before anything runs: sniff the source, build the phases, and push the
schema through them, so every mistake in the pipeline (unknown column, bad rule, wrong
type) is found — with file, phase and key — before the destination is touched."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from ..errors import SpecError, UserError
from ..spec import PipelineSpec
from . import extract
from .phases import build
from .phases.base import ROW, Phase, PhaseResult
from .destinations.sqlite import LINEAGE, SQLITE_MAX_COLUMNS
from .phases.load import Load


@dataclass
class PlannedPhase:
    label: str                  # "phase 2 (validate)"
    type: str
    phase: Phase
    output: pa.Schema
    index: int = 0              # position in the pipeline file, 1-based
    checkpoint: bool = False    # its output is materialized in the job's workspace


@dataclass
class Plan:
    spec: PipelineSpec
    source: Path
    dialect: extract.Dialect
    phases: list[PlannedPhase]
    load: Load
    destination_path: Path
    skipped: list[str] = field(default_factory=list)

    @property
    def output_schema(self) -> pa.Schema:
        schema = self.phases[-1].output
        return pa.schema([f for f in schema if not f.name.startswith("_etl_")])

    @property
    def load_label(self) -> str:
        return self.phases[-1].label

    def describe(self) -> dict:
        return {
            "pipeline": self.spec.name,
            "source": str(self.source),
            "dialect": self.dialect.to_json(),
            "phases": [{"label": p.label, "type": p.type,
                        "columns": [f"{f.name}: {f.type}" for f in p.output if f.name != ROW]}
                       for p in self.phases],
            "skipped": self.skipped,
            "destination": {"kind": self.load.destination, "path": str(self.destination_path),
                            "table": self.load.table, "mode": self.load.mode},
        }


def make_plan(spec: PipelineSpec, *, source: str | Path | None = None,
              dest: str | Path | None = None, after_phase: int = 0,
              input_schema: pa.Schema | None = None, dialect: extract.Dialect | None = None) -> Plan:
    """Plan the phases of `spec`; with `after_phase` (1-based) and `input_schema`, only the
    phases after it, fed from that phase's checkpoint instead of the source."""
    file = spec.file
    source_path = Path(source).resolve() if source else spec.resolve(spec.source.path)
    s = spec.source
    if dialect is None:
        dialect = extract.sniff(source_path, delimiter=s.delimiter, quote=s.quote,
                                encoding=s.encoding, header=s.header)
    schema = input_schema or pa.schema([(n, pa.string()) for n in dialect.names] + [(ROW, pa.int64())])
    planned, skipped = [], []
    enabled = [(i, p) for i, p in enumerate(spec.phases) if p.enabled and i >= after_phase]
    skipped = [f"{p.label(i)}: enabled = false" for i, p in enumerate(spec.phases) if not p.enabled]
    if not enabled or enabled[-1][1].type != "load":
        raise SpecError("the last enabled phase must be a load phase (type = \"load\")",
                        file=file, key="phases")
    for i, pspec in enabled:
        where = {"file": file, "phase": pspec.label(i)}
        phase = build(pspec.type, pspec.options, where=where)
        if isinstance(phase, Load) and i != enabled[-1][0]:
            raise SpecError("only the last phase may be a load (branches come later)", **where)
        try:
            if callable(getattr(phase, "setup", None)):   # optional hook
                phase.setup(schema)
            out = phase.process(pa.RecordBatch.from_pylist([], schema=schema))
        except SpecError as exc:
            raise exc.located(**where) from None
        except Exception as exc:   # a plugin that cannot handle its input schema
            raise SpecError(f"{type(exc).__name__}: {exc}", **where) from None
        if isinstance(out, PhaseResult):
            out = out.batch
        if ROW not in out.schema.names:
            raise SpecError(f"the phase dropped the {ROW} column every phase must keep", **where)
        schema = out.schema
        planned.append(PlannedPhase(pspec.label(i), pspec.type, phase, schema, i + 1,
                                    pspec.checkpoint))
    load = planned[-1].phase
    dest_path = Path(dest).resolve() if dest else spec.resolve(load.path)
    if dest_path == source_path:
        raise SpecError(f"destination {dest_path} is the source file", file=file,
                        phase=planned[-1].label, key="path")
    loaded = [f.name for f in schema if not f.name.startswith("_etl_")]
    if not loaded:
        raise UserError(f"{file}: no columns left to load after {planned[-1].label}")
    room = SQLITE_MAX_COLUMNS - len(LINEAGE)
    if len(loaded) > room:
        raise UserError(f"{source_path}: {len(loaded)} columns to load into table "
                        f"{load.table!r}, but SQLite allows at most {room} (plus etlconsole's "
                        f"{len(LINEAGE)}); choose fewer with a map phase")
    folded = [n.casefold() for n in loaded]
    clash = next((n for n in loaded if folded.count(n.casefold()) > 1), None)
    if clash:
        raise SpecError(f"column {clash!r} would be loaded twice (SQLite ignores the case of "
                        "column names); rename one of them", file=file, key="phases")
    return Plan(spec, source_path, dialect, planned, load, dest_path, skipped)
