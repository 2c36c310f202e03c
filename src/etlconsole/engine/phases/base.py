"""The phase contract.

A phase is a class built with its options as keyword arguments (the pipeline file's keys
other than ``type``/``enabled``/``when``/``checkpoint``). ``process`` takes a RecordBatch
and returns either a RecordBatch or a ``PhaseResult`` that separates good rows from
rejected ones with reasons. ``setup(schema)`` is called once with the input schema before
any data (raise ``SpecError`` there for a bad option, e.g. a column that does not exist);
``teardown()`` once at the end.

Every batch carries the hidden column ``_etl_row`` (1-based source record number) so a
rejected row can always be traced back to the file; phases must keep it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

ROW = "_etl_row"


@dataclass(frozen=True)
class Option:
    """One option of a phase, declared so the CLI and the console can describe it."""

    kind: str                 # bool | int | number | string | string[] | table | table[] | any
    help: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "help": self.help, "required": self.required}
        if self.default is not None:
            out["default"] = self.default
        if self.choices:
            out["choices"] = list(self.choices)
        return out


# One encoder for every rejected row (json.dumps with options builds a new one per call).
_ENCODE = json.JSONEncoder(default=str, ensure_ascii=False).encode
_SLICE = 2048          # rows converted to Python at a time (Rejects.records)


@dataclass
class Rejects:
    """Rejected rows of one batch and, per row, the rule, column and message."""

    rows: pa.RecordBatch
    rule: list[str]
    column: list[str | None]
    message: list[str]

    def __len__(self) -> int:
        return self.rows.num_rows

    def records(self, phase: str, label: str | None = None) -> list[dict[str, Any]]:
        """Plain dicts for the state store; only rejected rows become Python objects.

        Converted a slice at a time: a row as a dict of Python values takes several times
        its record (whose values are one JSON string), and a chunk of 30,000 rejected rows
        converted at once took ~60 MB for the ~20 MB kept."""
        out = []
        for start in range(0, self.rows.num_rows, _SLICE):
            data = self.rows.slice(start, _SLICE).to_pylist()
            end = start + len(data)
            for values, rule, column, message in zip(data, self.rule[start:end],
                                                     self.column[start:end],
                                                     self.message[start:end]):
                row = values.pop(ROW, None)
                out.append({"row": row, "phase": phase, "phase_label": label, "rule": rule,
                            "column": column, "message": message, "values": _ENCODE(values)})
        return out


@dataclass
class PhaseResult:
    """What a phase returns when some rows are rejected (or only warned about)."""

    batch: pa.RecordBatch
    rejects: Rejects | None = None
    warnings: int = 0
    notes: list[str] = field(default_factory=list)


class Phase:
    """Base class of built-in phases; plugins may subclass it or just follow the shape."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}

    def setup(self, schema: pa.Schema) -> None:  # noqa: B027 - optional hook
        """Called once with the input schema; raise SpecError for bad options."""

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch | PhaseResult:
        raise NotImplementedError

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Called once after the last batch."""


def data_columns(schema: pa.Schema) -> list[str]:
    """Column names a user can refer to (the engine's own _etl_ columns hidden)."""
    return [n for n in schema.names if not n.startswith("_etl_")]


def split_rejects(batch: pa.RecordBatch, failures: list[tuple[pa.Array, str, str | None, Any]]
                  ) -> PhaseResult:
    return split_with_mask(batch, failures)[0]


def split_with_mask(batch: pa.RecordBatch, failures: list[tuple[pa.Array, str, str | None, Any]]
                    ) -> tuple[PhaseResult, pa.Array | None]:
    """Split a batch by failure masks, tried in order; a row is blamed on its first failure.

    ``failures`` holds (mask, rule, column, message) where message is a string or a
    callable taking the failing values (a list) and returning one message per value.
    """
    if batch.num_rows == 0 or not failures:
        return PhaseResult(batch), None
    taken = pa.repeat(pa.scalar(False), batch.num_rows)
    picked: list[tuple[pa.Array, str, str | None, Any]] = []
    for mask, rule, column, message in failures:
        mask = pc.fill_null(mask, False)
        fresh = pc.and_(mask, pc.invert(taken))
        if pc.any(fresh).as_py():
            picked.append((pc.indices_nonzero(fresh), rule, column, message))
            taken = pc.or_(taken, fresh)
    if not picked:
        return PhaseResult(batch), None
    indices, rules, columns, messages = [], [], [], []
    for idx, rule, column, message in picked:
        n = len(idx)
        indices.append(idx)
        rules += [rule] * n
        columns += [column] * n
        if callable(message):
            values = batch.column(column).take(idx).to_pylist() if column else [None] * n
            messages += list(message(values))
        else:
            messages += [message] * n
    order = pa.chunked_array(indices).combine_chunks()
    rejected = batch.take(order)
    keep = pc.invert(taken)
    return PhaseResult(batch.filter(keep), Rejects(rejected, rules, columns, messages)), keep
