"""CSV destination: a dataset folder, one ``part-<job>-<batch>.csv`` per committed batch,
each with a header line (see ``folder`` for the layout, the commit protocol and the modes).

A folder rather than one growing file: a file appended to in place cannot be rolled back
or resumed exactly after a kill -9 without a second ledger that commits with it; a part
file per batch commits with one rename. Read it back with
``duckdb "SELECT * FROM 'out/*.csv'"`` or ``pyarrow.dataset.dataset('out', format='csv')``.

Values as text: integers and floats as written by Arrow, booleans ``true``/``false``,
dates ``2025-03-01``, timestamps ISO 8601 ``2025-03-01T12:00:00`` (fractions only when
there are any), nulls as empty fields.
"""

from __future__ import annotations

import csv as _csv
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from .folder import FolderDestination

__all__ = ["CsvDestination", "as_text"]


def as_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Dates and timestamps as ISO 8601 text (Arrow's CSV writer puts a space, not a T)."""
    for i, field in enumerate(batch.schema):
        col = batch.column(i)
        if pa.types.is_timestamp(field.type):
            try:
                whole = pc.cast(col, pa.timestamp("s", field.type.tz))   # exact only
                text = pc.strftime(whole, format="%Y-%m-%dT%H:%M:%S")
            except pa.ArrowInvalid:
                text = pc.strftime(col, format="%Y-%m-%dT%H:%M:%S")
            batch = batch.set_column(i, field.name, text)
        elif pa.types.is_date(field.type):
            batch = batch.set_column(i, field.name, pc.strftime(col, format="%Y-%m-%d"))
    return batch


class CsvDestination(FolderDestination):
    kind = "csv"
    title = "CSV"
    ext = "csv"

    def _write_file(self, path: Path, batch: pa.RecordBatch, schema: pa.Schema) -> None:
        pcsv.write_csv(as_text(batch), str(path))

    def _read_columns(self, path: Path) -> list[tuple[str, str]]:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(_csv.reader(f), [])
        return [(n, "") for n in header]

    def _columns(self, schema: pa.Schema) -> list[tuple[str, str]]:
        return [(f.name, "") for f in schema]
