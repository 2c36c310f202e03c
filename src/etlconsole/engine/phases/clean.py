"""clean: trim, null markers, case folding — cosmetic fixes, never rejects."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ...errors import SpecError
from ..types import text_bytes
from .base import Option, Phase, data_columns

# What utf8_trim_whitespace strips among ASCII bytes: the usual six and, like Python's
# str.strip, the four separators 0x1C-0x1F (which ascii_trim_whitespace keeps).
_ASCII_SPACE = b"\t\n\x0b\x0c\r "
_SEPARATORS = b"\x1c\x1d\x1e\x1f"


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


class Clean(Phase):
    name = "clean"
    description = "Trim whitespace, turn null markers into nulls, fold case."
    options = {
        "trim": Option("bool", "strip leading/trailing whitespace of every text column", default=False),
        "null_values": Option("string[]", "values (after trim) that mean 'no value'", default=[]),
        "lowercase": Option("string[]", "columns to lowercase", default=[]),
        "uppercase": Option("string[]", "columns to uppercase", default=[]),
    }

    def __init__(self, trim: bool = False, null_values: list[str] | None = None,
                 lowercase: list[str] | None = None, uppercase: list[str] | None = None):
        self.trim = trim
        self.null_values = pa.array(null_values or [], pa.string())
        self.lowercase = set(lowercase or [])
        self.uppercase = set(uppercase or [])

    def setup(self, schema: pa.Schema) -> None:
        known = data_columns(schema)
        for key in ("lowercase", "uppercase"):
            for col in sorted(getattr(self, key)):
                if col not in known:
                    raise SpecError(f"column {col!r} not in input (available: {', '.join(known)})",
                                    key=key)
        both = self.lowercase & self.uppercase
        if both:
            raise SpecError(f"column {sorted(both)[0]!r} is both lowercased and uppercased",
                            key="uppercase")

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        arrays = []
        for name, col in zip(batch.schema.names, batch.columns, strict=False):
            if _is_text(col.type) and not name.startswith("_etl_"):
                # Most columns are plain ASCII: then the cheaper ASCII kernels give the
                # same result, and a column without a space byte needs no trim at all.
                folded = name in self.lowercase or name in self.uppercase
                data = text_bytes(col) if self.trim or folded else b""
                ascii_only = data.isascii()
                if self.trim:
                    col = _trim(col, data, ascii_only)
                if len(self.null_values):
                    hit = pc.is_in(col, self.null_values)
                    if pc.any(hit).as_py():          # most columns have none: no copy then
                        col = pc.if_else(hit, pa.scalar(None, col.type), col)
                if name in self.lowercase:
                    col = pc.ascii_lower(col) if ascii_only else pc.utf8_lower(col)
                elif name in self.uppercase:
                    col = pc.ascii_upper(col) if ascii_only else pc.utf8_upper(col)
            arrays.append(col)
        return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


def _trim(col: pa.Array, data: bytes, ascii_only: bool) -> pa.Array:
    if not ascii_only or any(b in data for b in _SEPARATORS):
        return pc.utf8_trim_whitespace(col)
    if any(b in data for b in _ASCII_SPACE):
        return pc.ascii_trim_whitespace(col)
    return col
