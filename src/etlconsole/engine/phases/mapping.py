"""map: choose and rename the columns that reach the destination; the rest are dropped."""

from __future__ import annotations

import pyarrow as pa

from ...errors import SpecError
from .base import Option, Phase, data_columns


class Map(Phase):
    name = "map"
    description = "Source column = target column; unmapped columns are dropped."
    options = {"columns": Option("table", "source column = target column", required=True)}

    def __init__(self, columns: dict[str, str]):
        for source, target in columns.items():
            if not isinstance(target, str) or not target:
                raise SpecError("target column name must be a non-empty string", key=f"columns.{source}")
            if target.startswith("_etl_"):
                raise SpecError("names starting with _etl_ are reserved for etlconsole",
                                key=f"columns.{source}")
        targets = list(columns.values())
        dup = next((t for t in targets if targets.count(t) > 1), None)
        if dup:
            raise SpecError(f"target column {dup!r} is mapped twice", key="columns")
        if not columns:
            raise SpecError("map needs at least one column", key="columns")
        self.columns = dict(columns)

    def setup(self, schema: pa.Schema) -> None:
        known = data_columns(schema)
        for source in self.columns:
            if source not in known:
                raise SpecError(f"column {source!r} not in input (available: {', '.join(known)})",
                                key=f"columns.{source}")

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        names = list(self.columns) + [n for n in batch.schema.names if n.startswith("_etl_")]
        picked = batch.select(names)
        return picked.rename_columns([self.columns.get(n, n) for n in names])
