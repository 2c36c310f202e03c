"""load: where the rows go. The phase itself passes batches through; the runner hands
them to the destination it names, one transaction per batch."""

from __future__ import annotations

import pyarrow as pa

from ...errors import SpecError
from .. import destinations
from .base import Option, Phase

MODES = ("append", "atomic", "replace")


class Load(Phase):
    name = "load"
    description = "Write rows to a destination, one transaction per batch."
    options = {
        # The choices are the registry's (plugins add kinds: etlconsole.destinations).
        "destination": Option("string", "destination kind", default="sqlite",
                              choices=destinations.KINDS),
        "path": Option("string", "destination, relative to the pipeline file: a SQLite file, "
                       "or the dataset folder of a parquet or csv destination", required=True),
        "table": Option("string", "target table (sqlite only)"),
        "mode": Option("string", "append: batches visible as they commit; atomic: published in "
                       "one transaction at the end; replace: atomic, then swaps the whole table",
                       default="append", choices=MODES),
        "on_failure": Option("string", "what cleanup does with the rows of a failed job past "
                             "retention: keep them, or roll them back", default="keep",
                             choices=("keep", "rollback")),
        "on_error": Option("string", "a row the database refuses (a constraint): reject it and "
                           "load the rest of its batch, or fail the job (resumably)",
                           default="reject", choices=("reject", "fail")),
    }

    def __init__(self, path: str, table: str | None = None, destination: str = "sqlite",
                 mode: str = "append", on_failure: str = "keep",
                 on_error: str = "reject"):
        self.on_failure, self.on_error = on_failure, on_error
        kind = destinations.get(destination)      # SpecError naming the kinds there are
        if not kind.has_tables:
            if table is not None:
                raise SpecError(f"a {destination} destination has no table: path is the "
                                "dataset folder (one part file per batch)", key="table")
            if not path.strip():
                raise SpecError("path is empty", key="path")
            self.destination, self.path, self.table, self.mode = destination, path, None, mode
            return
        if table is None:
            raise SpecError("missing required option (target table)", key="table")
        if not table.strip():
            raise SpecError("table name is empty", key="table")
        if table.startswith("_etl_"):
            raise SpecError("table names starting with _etl_ are reserved for etlconsole", key="table")
        self.destination, self.path, self.table, self.mode = destination, path, table, mode

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch
