"""Where a job's batches go: one target per destination.

Every plan has targets (ADR 0022): a plain pipeline one, with no filter and no phases of
its own; a branched one a target per branch: a filter that keeps the rows the branch holds
for, the branch's own phases, and its load.
Every batch reaches every target, and each target's destination keeps its own ledger, so
"what is done" is known per destination: after a kill, a batch one destination committed
and another did not is written again only where it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .destinations import Destination, open_destination
from .phases.load import Load
from .plan import Plan, PlannedPhase


@dataclass
class TargetStats:
    rows_in: int = 0            # rows that reached the target
    filtered: int = 0           # not for this branch (its filter was false)
    rejected: int = 0           # by the branch's own phases
    refused: int = 0            # by the destination (a constraint)
    loaded: int = 0


@dataclass
class Target:
    name: str | None            # the branch, or None for a plain pipeline
    label: str                  # the load phase's label: rejects of this target carry it
    phases: list[PlannedPhase]  # the branch's phases (empty for a plain pipeline)
    filter: Any                 # a compiled expression (engine.expr) or None
    schema: pa.Schema           # what the destination receives
    load: Load
    path: Path
    destination: Destination
    # True when the load ends the main line: what the destination refuses is a reject of
    # the job and not loaded; False for a branch (see plan.PlannedTarget)
    refusals_are_job_rejects: bool
    stats: TargetStats = field(default_factory=TargetStats)
    held: dict[int, dict] = field(default_factory=dict)    # ledger entries by batch number

    def describe(self) -> dict:
        out = self.destination.describe() | {"on_failure": self.load.on_failure}
        return out | ({"branch": self.name} if self.name else {})

    def read_ledger(self) -> list[dict]:
        """The destination's ledger of this job, as the state store reconciles it."""
        entries = [e.to_dict() for e in self.destination.ledger()]
        self.held = {e["batch"]: e for e in entries}
        return entries

    def keep(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The rows this branch holds for (a null condition counts as false)."""
        if self.filter is None or batch.num_rows == 0:
            return batch
        mask = pc.fill_null(self.filter.evaluate(batch), False)
        return batch.filter(mask)


def targets_for(plan: Plan, job_id: str, settings) -> list[Target]:
    return [Target(t.name, t.load_label, t.phases, t.filter, t.output_schema, t.load,
                   t.destination_path, open_destination(t.load, t.destination_path, job_id, settings),
                   t.refusals_are_job_rejects)
            for t in plan.targets]
