"""Rejected rows' values as JSON objects, one per row, made by Arrow's string kernels.

A rejected row is stored with its values as one JSON text (``pipeline_rejects.values``).
Encoding each row in Python (``to_pylist`` and ``json``) cost ~5 µs a row, on the
cutter's thread: a tenth of a second per 20,000 rejects, a large share of that thread's
work on the sample file. Here each column is quoted and escaped once for the whole batch,
and the columns are joined into ``{"name": value, ...}`` texts.

The text is exactly ``json.JSONEncoder(ensure_ascii=False)``'s: the same key order, the
same ``", "`` and ``": "`` separators, the same escapes (taken from ``json.encoder``).
Columns whose Python text Arrow does not reproduce character for character (floats,
dates, nested types, ...) are left to the caller (``None``).
"""

from __future__ import annotations

import json
import re
from json.encoder import ESCAPE_DCT

import pyarrow as pa
import pyarrow.compute as pc

from .types import text_bytes

_ENCODE = json.JSONEncoder(ensure_ascii=False).encode
# The control characters json escapes (\n as "\n", \x01 as "\u0001", ...): replaced only in
# a column that holds one, which real files rarely do outside a quoted newline.
_CONTROLS = [(c, e) for c, e in ESCAPE_DCT.items() if c < " "]
_ANY_CONTROL = re.compile(rb"[\x00-\x1f]")


def values_json(batch: pa.RecordBatch) -> list[str] | None:
    """Each row of ``batch`` as the JSON object ``_ENCODE`` would write for its dict, or
    None when a column has a type this does not render exactly."""
    args: list[pa.Array | str] = []
    for i, (name, col) in enumerate(zip(batch.schema.names, batch.columns, strict=True)):
        text = _json_values(col)
        if text is None:
            return None
        args += [("{" if i == 0 else ", ") + _ENCODE(name) + ": ", text]
    if not args:
        return ["{}"] * batch.num_rows
    args.append("}")
    return pc.binary_join_element_wise(*args, "").to_pylist()


def _json_values(col: pa.Array) -> pa.Array | None:
    """The column's values as JSON texts ("null" for a null), or None if unsupported."""
    kind = col.type
    if pa.types.is_large_string(kind):
        try:                                        # a slice of rows: far below 2 GiB
            col, kind = col.cast(pa.string()), pa.string()
        except pa.ArrowInvalid:
            return None
    if pa.types.is_string(kind):
        # Which escapes the column needs, asked of its bytes in one C pass each: most
        # columns need none, and each replace is a pass over every value.
        data = text_bytes(col)
        text = col
        if b"\\" in data:
            text = pc.replace_substring(text, "\\", "\\\\")
        if b'"' in data:
            text = pc.replace_substring(text, '"', '\\"')
        if _ANY_CONTROL.search(data):
            for char, escaped in _CONTROLS:
                text = pc.replace_substring(text, char, escaped)
        text = pc.binary_join_element_wise('"', text, '"', "")
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        text = pc.cast(col, pa.string())          # 12, -3, true, false: as json writes them
    elif pa.types.is_null(kind):
        return pa.repeat(pa.scalar("null"), len(col))
    else:
        return None
    return pc.fill_null(text, "null")
