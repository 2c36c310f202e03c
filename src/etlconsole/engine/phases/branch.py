"""branch: one stream feeding several destinations (planned in ``engine.plan``).

Every batch reaches every branch; a branch's ``filter`` keeps the rows it holds for, and
its own phases end in a load with its own destination and ledger."""

from __future__ import annotations

import pyarrow as pa

from .base import Option, Phase


class Branch(Phase):
    name = "branch"
    description = "Send every batch to several branches, each with a filter, phases and a load."
    options = {
        "branches": Option("table[]", "[[phases.branches]]: name, filter (an expression like "
                           "derive's, e.g. status == 'cancelled'), phases (ending in a load)",
                           required=True),
    }

    def __init__(self, branches: list | None = None):
        self.branches = branches or []

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch
