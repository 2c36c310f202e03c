"""validate: rules over whole columns; failing rows are rejected with the rule and reason.

Each rule becomes one or more boolean masks computed with pyarrow.compute; a row is
blamed on the first rule it breaks, in the order the rules are written. Only rejected
rows turn into Python objects (for their messages).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from ...errors import JobFailed, SpecError
from .. import types
from ..unique import UniqueIndex
from .base import ROW, Option, Phase, PhaseResult, data_columns, split_with_mask

_RULE_KEYS = {"column", "required", "type", "formats", "pattern", "min", "max", "allowed",
              "unique", "max_length"}


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Rule:
    column: str
    required: bool = False
    type: str | None = None
    formats: list[str] | None = None
    pattern: str | None = None
    min: Any = None
    max: Any = None
    allowed: list[Any] | None = None
    unique: bool = False
    max_length: int | None = None

    @classmethod
    def from_dict(cls, raw: Any, key: str) -> "Rule":
        _check_rule_keys(raw, key)
        rule = cls(**raw)
        rule._check_values(key)
        rule._parse_bounds(key)
        return rule

    def _check_values(self, key: str) -> None:
        """Each option's value, except the bounds (``_parse_bounds``)."""
        if self.type is not None and self.type not in types.TYPES:
            raise SpecError(f"unknown type {self.type!r} (expected one of {', '.join(types.TYPES)})",
                            key=f"{key}.type")
        if self.formats is not None and (self.type not in ("date", "timestamp") or not isinstance(
                self.formats, list)):
            raise SpecError("formats is a list of strptime formats for type date or timestamp",
                            key=f"{key}.formats")
        for k in ("required", "unique"):
            if not isinstance(getattr(self, k), bool):
                raise SpecError("must be true or false", key=f"{key}.{k}")
        if self.pattern is not None:
            try:
                pc.match_substring_regex(pa.array([""]), self.pattern)
            except pa.ArrowInvalid as exc:
                raise SpecError(f"invalid regular expression (RE2 syntax): {exc}",
                                key=f"{key}.pattern") from None
        if self.allowed is not None and not isinstance(self.allowed, list):
            raise SpecError("must be a list of values", key=f"{key}.allowed")
        if self.max_length is not None and (not isinstance(self.max_length, int) or self.max_length < 0):
            raise SpecError("must be a non-negative whole number", key=f"{key}.max_length")

    def _parse_bounds(self, key: str) -> None:
        """``min`` and ``max`` become Arrow scalars of the rule's type (a number if none)."""
        bound_type = self.type or "float64"
        for k in ("min", "max"):
            bound = getattr(self, k)
            if bound is None:
                continue
            parsed, bad = types.parse(pa.array([str(bound)]), bound_type, self.formats)
            if bad[0].as_py() or bound_type in ("string", "bool"):
                raise SpecError(f"{bound!r} is not a {bound_type} bound", key=f"{key}.{k}")
            setattr(self, k, parsed[0])


def _check_rule_keys(raw: Any, key: str) -> None:
    """A rule is a table of known keys, naming its column."""
    if not isinstance(raw, dict):
        raise SpecError("each rule must be a table like { column = \"id\", required = true }", key=key)
    for k in raw:
        if k not in _RULE_KEYS:
            raise SpecError(f"unknown rule key (expected one of {', '.join(sorted(_RULE_KEYS))})",
                            key=f"{key}.{k}")
    if not isinstance(raw.get("column"), str):
        raise SpecError("missing 'column' (the column this rule checks)", key=f"{key}.column")


def _bound_messages(bound: Any, word: str) -> Callable[[list[Any]], list[str]]:
    """Messages for values past a bound: ``word`` is "below the minimum" or "above the maximum"."""
    shown = bound.as_py()
    return lambda vs: [f"{v} is {word} {shown}" for v in vs]


class Validate(Phase):
    name = "validate"
    description = "Check rules per column; failing rows are rejected with the reason."
    options = {
        "rules": Option("table[]", "rules: { column, required, type, formats, pattern, min, max, "
                        "allowed, unique, max_length }", required=True),
        "on_error": Option("string", "what a failing row does", default="reject",
                           choices=("reject", "fail", "warn")),
    }

    def __init__(self, rules: list[dict[str, Any]], on_error: str = "reject"):
        self.rules = [Rule.from_dict(r, f"rules[{i}]") for i, r in enumerate(rules)]
        self.on_error = on_error
        self._unique: UniqueIndex | None = None

    def attach(self, job) -> None:
        """Give the unique rule a job-wide, resumable index in the job's workspace."""
        if any(r.unique for r in self.rules):
            path = job.workspace / "unique.db"
            if job.resume_after and not path.exists():
                raise JobFailed(f"{path}: the unique-key index of this job is gone (cleaned up?); "
                                "it cannot be resumed exactly — roll it back and run it again")
            try:
                self._unique = UniqueIndex(path)
                self._unique.forget_after(job.resume_after)   # keys of uncommitted records
            except sqlite3.DatabaseError as exc:
                raise JobFailed(f"{path}: the unique-key index is damaged ({exc}); roll the job "
                                "back and run it again") from None

    def setup(self, schema: pa.Schema) -> None:
        known = data_columns(schema)
        for i, rule in enumerate(self.rules):
            if rule.column not in known:
                raise SpecError(f"column {rule.column!r} not in input (available: {', '.join(known)})",
                                key=f"rules[{i}].column")

    def _masks(self, batch: pa.RecordBatch, parsed: list) -> list[tuple]:
        # (mask, rule, column, messages) per check; ("unique", rule index, typed) for unique
        failures: list[tuple[Any, ...]] = []
        for i, rule in enumerate(self.rules):
            col = batch.column(rule.column)
            name = rule.column
            is_text = pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
            if rule.required:
                missing = pc.is_null(col)
                if is_text:
                    missing = pc.or_kleene(missing, pc.equal(pc.binary_length(col), 0))   # no decoding
                failures.append((missing, "required", name, "value is required"))
            typed = col
            if rule.type:
                typed, bad = types.parse(col, rule.type, rule.formats)
                parsed.append((name, rule.type, rule.formats, typed))
                failures.append((bad, "type", name, lambda vs, t=rule.type: [
                    f"{_short(v)!r} is not a valid {t}" for v in vs]))
            if rule.pattern is not None:
                text = col if is_text else pc.cast(col, pa.string())
                failures.append((pc.invert(pc.match_substring_regex(text, rule.pattern)), "pattern",
                                 name, lambda vs, p=rule.pattern: [
                                     f"{_short(v)!r} does not match {p}" for v in vs]))
            if rule.min is not None or rule.max is not None:
                if not rule.type:   # a bound implies a number
                    typed, nan = types.parse(col, "float64")
                    failures.append((nan, "min" if rule.min is not None else "max", name,
                                     lambda vs: [f"{_short(v)!r} is not a number" for v in vs]))
                if rule.min is not None:
                    failures.append((pc.less(typed, rule.min.cast(typed.type)), "min", name,
                                     _bound_messages(rule.min, "below the minimum")))
                if rule.max is not None:
                    failures.append((pc.greater(typed, rule.max.cast(typed.type)), "max", name,
                                     _bound_messages(rule.max, "above the maximum")))
            if rule.allowed is not None:
                allowed = pa.array([str(a) for a in rule.allowed]) if is_text else pa.array(rule.allowed)
                outside = pc.and_(pc.is_valid(col), pc.invert(pc.is_in(col, allowed)))
                failures.append((outside, "allowed", name,
                                 lambda vs, a=rule.allowed: [
                                     f"{_short(v)!r} is not one of {', '.join(map(str, a))}" for v in vs]))
            if rule.max_length is not None:
                text = col if is_text else pc.cast(col, pa.string())
                failures.append((pc.greater(pc.utf8_length(text), rule.max_length), "max_length", name,
                                 lambda vs, n=rule.max_length: [
                                     f"{_short(v)!r} is longer than {n} characters" for v in vs]))
            if rule.unique:
                failures.append(("unique", i, typed))
        return failures

    def process(self, batch: pa.RecordBatch) -> PhaseResult:
        return self.finish(self.check(batch))

    def parts(self):
        """``process`` in two halves for two threads (the runner's line): the rules' masks,
        then the unique rule and the split. They share nothing but what ``check`` returns."""
        return self.check, self.finish

    def check(self, batch: pa.RecordBatch) -> tuple:
        parsed: list = []
        return batch, self._masks(batch, parsed), parsed

    def finish(self, checked: tuple) -> PhaseResult:
        batch, failures, parsed = checked
        # The unique rule must only see keys of rows that pass every other rule, so a
        # row rejected for another reason does not block a later, valid row.
        plain = [f for f in failures if f[0] != "unique"]
        uniques = [f for f in failures if f[0] == "unique"]
        if uniques:
            # One OR over the other rules' masks (no rejects built twice).
            ok_rows = pa.repeat(pa.scalar(True), batch.num_rows)
            for mask, *_ in plain:
                ok_rows = pc.and_(ok_rows, pc.invert(pc.fill_null(mask, False)))
            for _, i, typed in uniques:
                rule = self.rules[i]
                keys = pc.if_else(ok_rows, typed, pa.scalar(None, typed.type))
                index = self._unique or self._memory_index()
                # Keys are tagged with their records, so resume can forget uncommitted ones.
                dup = index.duplicates(f"{i}:{rule.column}", keys, batch.column(ROW))
                plain.append((dup, "unique", rule.column, lambda vs: [
                    f"duplicate value {_short(v)!r} (already seen in this job)" for v in vs]))
        result, keep = split_with_mask(batch, plain)
        if self.on_error == "reject":   # only then did every surviving value parse
            _remember_parsed(parsed, result.batch, keep)
        if result.rejects is None:
            return result
        if self.on_error == "warn":
            return PhaseResult(batch, None, warnings=len(result.rejects),
                               notes=result.rejects.message[:5])
        if self.on_error == "fail":
            r = result.rejects
            rows = r.rows.column(ROW).to_pylist()
            i = rows.index(min(rows))          # the earliest bad row in the file
            raise JobFailed(f"validate: row {rows[i]}, column {r.column[i]!r}, rule {r.rule[i]}: "
                            f"{r.message[i]} (on_error = \"fail\")")
        return result

    def _memory_index(self) -> UniqueIndex:
        self._unique = UniqueIndex()
        return self._unique

    def teardown(self) -> None:
        if self._unique:
            self._unique.close()


def _remember_parsed(parsed: list, out: pa.RecordBatch, keep: pa.Array | None) -> None:
    """Tell the type parser what the surviving rows parse to, so a later cast is free."""
    for name, type_, formats, typed in parsed:
        if keep is not None:
            typed = typed.filter(keep)
        types.remember(out.column(name), type_, formats, typed)
