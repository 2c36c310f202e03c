"""The shape of a ``when`` condition, checked when a pipeline is loaded.

This is the part of the condition language that ``spec`` (and the console's option form)
need: which keys exist and what their values look like. Nothing is evaluated here; the
engine decides conditions at job start (:mod:`etlconsole.engine.conditions`, which
re-exports :func:`check_when`). Kept outside the engine so that ``spec`` imports nothing
from it (the import-linter contracts of issue 13).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .errors import SpecError

KEYS = ("column_exists", "env", "min_rows", "max_rows", "predicate", "not", "any")
REF = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Fail = Callable[[str, str], SpecError]


def _names(value: Any, key: str, pattern: re.Pattern[str] | None, fail: Fail) -> None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise fail(key, "must be a name or a non-empty list of names")
    if pattern is not None:
        bad = [x for x in items if not pattern.match(x)]
        if bad:
            raise fail(key, f"{bad[0]!r} is not a valid environment variable name")


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and REF.match(value) is not None


def _check_predicate_ref(value: str, key: str, fail: Fail) -> None:
    if not _is_ref(value):
        raise fail(key, f"a predicate must be 'package.module:function', got {value!r} "
                        "(or use a table such as { env = \"VAR\" })")


def _check_key(k: str, v: Any, where: str, fail: Fail, recurse: Callable[[Any, str], None]) -> None:
    """One key of a condition table."""
    if k not in KEYS:
        raise fail(where, f"unknown condition (expected one of {', '.join(KEYS)})")
    if k == "column_exists":
        _names(v, where, None, fail)
    elif k == "env":
        _names(v, where, _ENV, fail)
    elif k in ("min_rows", "max_rows"):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise fail(where, f"must be a whole number >= 0, got {v!r}")
    elif k == "predicate":
        if not _is_ref(v):
            raise fail(where, f"must be 'package.module:function', got {v!r}")
    elif k == "not":
        recurse(v, where)
    elif k == "any":
        if not isinstance(v, list) or not v:
            raise fail(where, "must be a non-empty list of conditions")
        for i, item in enumerate(v):
            recurse(item, f"{where}[{i}]")


def check_when(value: Any, *, file: str | None = None, phase: str | None = None,
               key: str = "when") -> None:
    """Raise SpecError (naming file, phase and the key, e.g. ``when.min_rows``) for a
    condition that is not well formed. Nothing is evaluated here."""

    def fail(k: str, message: str) -> SpecError:
        return SpecError(message, file=file, phase=phase, key=k)

    def recurse(inner: Any, where: str) -> None:
        check_when(inner, file=file, phase=phase, key=where)

    if isinstance(value, str):
        _check_predicate_ref(value, key, fail)
        return
    if not isinstance(value, dict):
        raise fail(key, "must be a table such as { column_exists = \"email\" } or a predicate "
                        f"'package.module:function', got {value!r}")
    if not value:
        raise fail(key, f"is empty; use one or more of {', '.join(KEYS)}")
    for k, v in value.items():
        _check_key(k, v, f"{key}.{k}", fail, recurse)
    lo, hi = value.get("min_rows"), value.get("max_rows")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        raise fail(f"{key}.min_rows", f"min_rows {lo} is above max_rows {hi}: never holds")
