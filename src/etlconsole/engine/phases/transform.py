"""transform: cast columns to types, derive new columns from safe expressions, rename.

A value that cannot be cast rejects its row (rule ``cast``) instead of failing the batch.
"""

from __future__ import annotations

import pyarrow as pa

from ...errors import SpecError
from .. import types
from ..expr import ExpressionError, compile_expression
from .base import Option, Phase, PhaseResult, data_columns, split_rejects


class Transform(Phase):
    name = "transform"
    description = "Cast columns to types, derive columns from expressions, rename columns."
    options = {
        "cast": Option("table", "column = type (int64, float64, bool, date, timestamp, string)", default={}),
        "formats": Option("table", "column = [strptime formats] for date/timestamp casts", default={}),
        "derive": Option("table", "new column = expression, e.g. total = \"quantity * unit_price\"",
                         default={}),
        "rename": Option("table", "old name = new name", default={}),
    }

    def __init__(self, cast=None, formats=None, derive=None, rename=None):
        self.cast = dict(cast or {})
        self.formats = dict(formats or {})
        self.rename = dict(rename or {})
        for col, type_ in self.cast.items():
            if type_ not in types.TYPES:
                raise SpecError(f"unknown type {type_!r} (expected one of {', '.join(types.TYPES)})",
                                key=f"cast.{col}")
        for key, names in (("rename", self.rename.values()), ("derive", (derive or {}).keys())):
            for name in names:
                if not isinstance(name, str) or not name or name.startswith("_etl_"):
                    raise SpecError(f"{name!r}: column names must be non-empty and must not start "
                                    "with _etl_ (reserved for etlconsole)", key=key)
        self.derive = {}
        for col, text in (derive or {}).items():
            if not isinstance(text, str):
                raise SpecError("must be an expression string", key=f"derive.{col}")
            try:
                self.derive[col] = compile_expression(text)
            except ExpressionError as exc:
                raise SpecError(str(exc), key=f"derive.{col}") from None

    def setup(self, schema: pa.Schema) -> None:
        known = data_columns(schema)
        for key, cols in (("cast", self.cast), ("formats", self.formats), ("rename", self.rename)):
            for col in cols:
                if col not in known and not (key == "rename" and col in self.derive):
                    raise SpecError(f"column {col!r} not in input (available: {', '.join(known)})",
                                    key=f"{key}.{col}")
        available = set(known)
        for col, expr in self.derive.items():
            try:
                expr.check(available)
            except ExpressionError as exc:
                raise SpecError(str(exc), key=f"derive.{col}") from None
            available.add(col)
        targets = [self.rename.get(c, c) for c in available]
        clash = {t for t in targets if targets.count(t) > 1}
        if clash:
            raise SpecError(f"rename makes column name {sorted(clash)[0]!r} appear twice", key="rename")
        # Expressions are type-checked against the typed schema by running them on no rows.
        try:
            self.process(pa.RecordBatch.from_pylist([], schema=schema))
        except ExpressionError as exc:
            raise SpecError(str(exc), key="derive") from None

    def process(self, batch: pa.RecordBatch) -> PhaseResult:
        failures = []
        columns = dict(zip(batch.schema.names, batch.columns, strict=False))
        for col, type_ in self.cast.items():
            typed, bad = types.parse(columns[col], type_, self.formats.get(col))
            failures.append((bad, "cast", col,
                             lambda vs, t=type_: [f"{v!r} cannot be cast to {t}" for v in vs]))
            columns[col] = typed
        typed_batch = pa.RecordBatch.from_pydict(columns)
        result = split_rejects(typed_batch, failures)
        good = result.batch
        if result.rejects is not None:
            # Report the original text of a rejected row, not its half-cast values.
            raw = split_rejects(batch, failures).rejects
            result.rejects = raw
        for col, expr in self.derive.items():
            good = _set_column(good, col, expr.evaluate(good))
        if self.rename:
            good = good.rename_columns([self.rename.get(n, n) for n in good.schema.names])
        result.batch = good
        return result


def _set_column(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    if name in batch.schema.names:
        return batch.set_column(batch.schema.get_field_index(name), name, values)
    return batch.append_column(name, values)
