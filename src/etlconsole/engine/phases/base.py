"""The phase contract.

A phase is a class built with its options as keyword arguments (the pipeline file's keys
other than ``type``/``enabled``/``when``/``checkpoint``). ``process`` takes a RecordBatch
and returns either a RecordBatch or a ``PhaseResult`` that separates good rows from
rejected ones with reasons. ``setup(schema)`` is called once with the input schema before
any data (raise ``SpecError`` there for a bad option, e.g. a column that does not exist);
``teardown()`` once at the end. The other optional hooks (``attach``, ``parts``,
``on_error``) are declared, with what the runner does with them, on ``Phase``: the runner
calls every hook of every phase, and a hook left as the base class has it does nothing.

Every batch carries the hidden column ``_etl_row`` (1-based source record number) so a
rejected row can always be traced back to the file; phases must keep it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Callable, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from ..rowjson import values_json

ROW = "_etl_row"


@dataclass(frozen=True)
class Option:
    """One option of a phase, declared so the CLI and the console can describe it."""

    kind: str                 # bool | int | number | string | string[] | table | table[] | any
    help: str
    required: bool = False
    default: Any = None
    choices: Sequence[str] | None = None     # a tuple, or a sequence looked up when used

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
        converted at once took ~60 MB for the ~20 MB kept. The values' JSON is made by
        Arrow (``rowjson``) where it can be, else row by row here."""
        out = []
        has_row = ROW in self.rows.schema.names
        for start in range(0, self.rows.num_rows, _SLICE):
            data = self.rows.slice(start, _SLICE)
            end = start + data.num_rows
            rows = data.column(ROW).to_pylist() if has_row else [None] * data.num_rows
            values = data.drop_columns([ROW]) if has_row else data
            texts = values_json(values) or [_ENCODE(v) for v in values.to_pylist()]
            for row, text, rule, column, message in zip(rows, texts, self.rule[start:end],
                                                        self.column[start:end],
                                                        self.message[start:end], strict=False):
                out.append({"row": row, "phase": phase, "phase_label": label, "rule": rule,
                            "column": column, "message": message, "values": text})
        return out


@dataclass
class PhaseResult:
    """What a phase returns when some rows are rejected (or only warned about)."""

    batch: pa.RecordBatch
    rejects: Rejects | None = None
    warnings: int = 0
    notes: list[str] = field(default_factory=list)


# The two halves of a phase that ``parts`` returns: check(batch) -> x; finish(x) -> result.
Parts = tuple[Callable[[pa.RecordBatch], Any], Callable[[Any], "pa.RecordBatch | PhaseResult"]]


class Phase:
    """Base class of built-in phases; plugins may subclass it or just follow the shape
    (the engine wraps those in ``PluginPhase``, which gives them these defaults).

    Attributes:
        name, description: shown by ``etlconsole phases``.
        options: the declared options, checked before the job starts.
        on_error: what the runner does when ``process`` raises: ``"fail"`` stops the job
            (resumably); anything else gives the phase halves of the batch until the rows
            it raises on are found, and rejects those (rule ``exception``).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    on_error: str = "reject"

    def setup(self, schema: pa.Schema) -> None:  # noqa: B027 - optional hook
        """Called once with the input schema, before any data (also while planning).

        Raises:
            SpecError: an option does not fit the schema (e.g. an unknown column).
        """

    def attach(self, job: Any) -> None:  # noqa: B027 - optional hook
        """Called once when the job starts (or resumes), before the first batch, with the
        job's context (``job.JobContext``: job id, workspace folder, settings, the
        records already done on a resume). A phase keeping state on disk (validate's
        unique index) opens it here, in the job's workspace."""

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch | PhaseResult:
        """One batch in; the batch (keeping ``_etl_row``) or a ``PhaseResult`` out."""
        raise NotImplementedError

    def parts(self) -> Parts | None:
        """``process`` in two halves the runner runs in two threads, so consecutive
        batches overlap: ``check(batch)`` then ``finish(what check returned)``. None (the
        default): one step. The halves must share nothing but what ``check`` returns."""
        return None

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Called once after the last batch, whatever the job's end."""


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
