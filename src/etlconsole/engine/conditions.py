"""Conditional phases: ``when`` on a phase, checked when the pipeline is loaded (shape) and
decided once at job start, during planning (value).

Forms (see the README, "Conditional phases"):

- a table, every key of which must hold::

      when = { column_exists = "email" }          # or a list: all must exist
      when = { env = "MASK_EMAILS" }              # set and non-empty (or a list: all)
      when = { min_rows = 1000, max_rows = 5000000 }   # estimated from the file
      when = { predicate = "my_pkg.checks:is_eu_file" }
      when = { not = { env = "SKIP_CLEAN" } }     # the inner table does not hold
      when = { any = [ { env = "A" }, { column_exists = "b" } ] }   # at least one holds

- a string ``"package.module:function"``: a plugin predicate, called with a
  :class:`ConditionContext` and returning a bool.

``column_exists`` looks at the columns flowing *into* the phase (the source's columns as
changed by the phases before it that run). Row counts are an estimate: see
:func:`estimate_rows`.

The shape check (:func:`check_when`) lives in :mod:`etlconsole.conditions`, so that ``spec``
imports nothing from the engine; it is re-exported here.
"""

from __future__ import annotations

import codecs
import csv
import importlib
import io
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

from ..conditions import KEYS, check_when
from ..errors import SpecError

__all__ = ["KEYS", "ConditionContext", "check_when", "estimate_rows", "evaluate", "explain"]

ESTIMATE_SAMPLE_BYTES = 1 << 20


# -- row estimate -----------------------------------------------------------------------
def estimate_rows(path: Path, *, encoding: str = "utf-8", delimiter: str = ",", quote: str = '"',
                  header: bool = True, skip_lines: int = 0,
                  sample_bytes: int = ESTIMATE_SAMPLE_BYTES) -> tuple[int, bool]:
    """Records in the file (header excluded) and whether the count is exact.

    Reads at most ``sample_bytes`` of the head. If the whole file fits, its records are
    counted (exact). Otherwise the complete records of the sample give an average record
    length in bytes, and the estimate is (file size - header bytes) / that average.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(sample_bytes)
    whole = len(head) >= size
    bom = b""
    for mark in (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        if head.startswith(mark):
            bom = mark
            break
    text = head.decode(encoding, errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    if not whole:                      # a cut last line is not a record
        cut = text.rfind("\n")
        text = text[: cut + 1] if cut >= 0 else ""
    lines = text.splitlines(keepends=True)
    skipped = "".join(lines[:skip_lines])
    body = text[len(skipped):]
    probe = io.StringIO(body, newline="")
    reader = csv.reader(probe, delimiter=delimiter, quotechar=quote)
    header_chars = 0
    if header:
        try:
            next(reader)
        except (StopIteration, csv.Error):
            return 0, whole
        header_chars = probe.tell()       # where the header record ends
    try:
        records = sum(1 for r in reader if r)
    except csv.Error:
        records = max(0, body.count("\n") - (1 if header else 0))
    if whole:
        return records, True
    head_bytes = len(bom) + len((skipped + body[:header_chars]).encode(encoding, errors="replace"))
    data_bytes = len(text.encode(encoding, errors="replace")) + len(bom) - head_bytes
    if records == 0 or data_bytes <= 0:
        return 0, False
    return round((size - head_bytes) / (data_bytes / records)), False


# -- evaluation (at job start) ---------------------------------------------------------
@dataclass
class ConditionContext:
    """What a ``when`` predicate sees. ``estimated_rows`` is computed on first use."""

    columns: list[str]                     # columns flowing into the phase
    source_columns: list[str]              # the source file's columns
    source: Path
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    pipeline: str = ""
    phase: str = ""
    estimator: Callable[[], tuple[int, bool]] | None = field(default=None, repr=False)

    @cached_property
    def _estimate(self) -> tuple[int, bool]:
        return self.estimator() if self.estimator else (0, False)

    @property
    def estimated_rows(self) -> int:
        return self._estimate[0]

    @property
    def rows_exact(self) -> bool:
        return self._estimate[1]


def _load_predicate(ref: str, where: dict) -> Callable:
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise SpecError(f"cannot load predicate {ref!r}: {type(exc).__name__}: {exc}",
                        **where) from None
    if not callable(obj):
        raise SpecError(f"predicate {ref!r} is not a function", **where)
    return obj


def _call_predicate(ref: str, ctx: ConditionContext, where: dict) -> bool:
    fn = _load_predicate(ref, where)
    try:
        result = fn(ctx)
    except Exception as exc:
        raise SpecError(f"predicate {ref!r} raised {type(exc).__name__}: {exc}", **where) from None
    if not isinstance(result, bool):
        raise SpecError(f"predicate {ref!r} must return True or False, got {result!r}", **where)
    return result


def evaluate(when: Any, ctx: ConditionContext, *, where: dict | None = None,
             key: str = "when") -> tuple[bool, list[dict]]:
    """(holds, checks): every check is {key, value, holds, why}. A table holds when all its
    keys hold (every key is evaluated, so the explanation is complete)."""
    where = dict(where or {})
    if isinstance(when, str):
        held = _call_predicate(when, ctx, {**where, "key": key})
        return held, [{"key": key, "value": when, "holds": held,
                       "why": f"predicate {when} returned {held}"}]
    checks: list[dict] = []
    for k, v in when.items():
        sub = f"{key}.{k}"
        if k == "column_exists":
            names = [v] if isinstance(v, str) else v
            missing = [n for n in names if n not in ctx.columns]
            checks.append({"key": sub, "value": v, "holds": not missing,
                           "why": (f"column {', '.join(map(repr, missing))} is missing" if missing
                                   else f"column {', '.join(map(repr, names))} exists")})
        elif k == "env":
            names = [v] if isinstance(v, str) else v
            unset = [n for n in names if not ctx.env.get(n)]
            checks.append({"key": sub, "value": v, "holds": not unset,
                           "why": (f"{', '.join(unset)} is not set (or empty)" if unset
                                   else f"{', '.join(names)} is set")})
        elif k in ("min_rows", "max_rows"):
            n = ctx.estimated_rows
            approx = "" if ctx.rows_exact else "~"
            held = n >= v if k == "min_rows" else n <= v
            op = (">=" if held else "<") if k == "min_rows" else ("<=" if held else ">")
            checks.append({"key": sub, "value": v, "holds": held,
                           "why": f"{approx}{n:,} rows {op} {v:,}"})
        elif k == "predicate":
            held = _call_predicate(v, ctx, {**where, "key": sub})
            checks.append({"key": sub, "value": v, "holds": held,
                           "why": f"predicate {v} returned {held}"})
        elif k == "not":
            inner, inner_checks = evaluate(v, ctx, where=where, key=sub)
            checks.append({"key": sub, "value": v, "holds": not inner,
                           "why": "not (" + "; ".join(c["why"] for c in inner_checks) + ")"})
        elif k == "any":
            results = [evaluate(item, ctx, where=where, key=f"{sub}[{i}]")
                       for i, item in enumerate(v)]
            held = any(r[0] for r in results)
            checks.append({"key": sub, "value": v, "holds": held,
                           "why": "any of (" + " | ".join(
                               "; ".join(c["why"] for c in r[1]) for r in results) + ")"})
    return all(c["holds"] for c in checks), checks


def explain(when: Any) -> str:
    """A condition as one short line of text, e.g. ``env = 'X', min_rows = 10``."""
    if isinstance(when, str):
        return when
    return ", ".join(f"{k} = {v!r}" for k, v in when.items())
