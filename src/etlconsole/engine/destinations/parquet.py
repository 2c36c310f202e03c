"""Parquet destination: a dataset folder, one ``part-<job>-<batch>.parquet`` per committed
batch (see ``folder`` for the layout, the commit protocol and the modes).

Types stay Arrow's: int64, float64, bool, dates as date32, timestamps as timestamp[us] —
what pyarrow.dataset / DuckDB / Spark read back as the same types. No lineage columns are
added: the part file's name carries the job and the batch.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .folder import FolderDestination

__all__ = ["ParquetDestination"]


class ParquetDestination(FolderDestination):
    kind = "parquet"
    title = "Parquet"
    ext = "parquet"

    def _write_file(self, path: Path, batch: pa.RecordBatch, schema: pa.Schema) -> None:
        table = pa.Table.from_batches([batch], schema=batch.schema)
        pq.write_table(table, str(path), compression="snappy")

    def _read_columns(self, path: Path) -> list[tuple[str, str]]:
        return [(f.name, str(f.type)) for f in pq.read_schema(str(path))]

    def _columns(self, schema: pa.Schema) -> list[tuple[str, str]]:
        return [(f.name, str(f.type)) for f in schema]
