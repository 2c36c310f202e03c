"""Phase registry: built-in phases and plugins share the entry-point group
``etlconsole.phases``; a ``package.module:Class`` reference works too."""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from ...errors import SpecError
from .base import Option, Phase, PhaseResult, Rejects

GROUP = "etlconsole.phases"
# Used when running from a source tree without installed metadata.
_BUILTIN = {
    "clean": "etlconsole.engine.phases.clean:Clean",
    "validate": "etlconsole.engine.phases.validate:Validate",
    "transform": "etlconsole.engine.phases.transform:Transform",
    "map": "etlconsole.engine.phases.mapping:Map",
    "load": "etlconsole.engine.phases.load:Load",
}

__all__ = ["Option", "Phase", "PhaseResult", "Rejects", "available", "resolve", "build"]


def _import(ref: str):
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@lru_cache(maxsize=1)
def available() -> dict[str, tuple[str, str]]:
    """name -> (reference, origin) for every registered phase."""
    found = {name: (ref, "built-in") for name, ref in _BUILTIN.items()}
    for ep in entry_points(group=GROUP):
        origin = "built-in" if ep.value.startswith("etlconsole.") else (
            f"plugin ({ep.dist.name})" if ep.dist else "plugin")
        found[ep.name] = (ep.value, origin)
    return found


def resolve(type_name: str, *, where: dict[str, str] | None = None) -> type:
    where = where or {}
    if ":" in type_name:
        ref = type_name
    elif type_name in available():
        ref = available()[type_name][0]
    else:
        names = ", ".join(sorted(available()))
        raise SpecError(f"unknown phase type {type_name!r} (available: {names}; "
                        "or 'package.module:Class')", key="type", **where)
    try:
        cls = _import(ref)
    except Exception as exc:  # a broken plugin must not crash the CLI
        raise SpecError(f"cannot load phase {ref!r}: {type(exc).__name__}: {exc}",
                        key="type", **where) from None
    if not callable(getattr(cls, "process", None)):
        raise SpecError(f"{ref!r} is not a phase (it has no process method)", key="type", **where)
    return cls


_KINDS = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "string[]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "table": lambda v: isinstance(v, dict),
    "table[]": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
    "any": lambda v: True,
}


def check_options(cls: type, options: dict[str, Any], where: dict[str, str]) -> None:
    declared: dict[str, Option] | None = getattr(cls, "options", None)
    if not declared:
        return
    for key, value in options.items():
        if key not in declared:
            raise SpecError(f"unknown option (expected one of {', '.join(declared)})",
                            key=key, **where)
        opt = declared[key]
        if not _KINDS[opt.kind](value):
            raise SpecError(f"must be {opt.kind}, got {value!r}", key=key, **where)
        if opt.choices and value not in opt.choices:
            raise SpecError(f"must be one of {', '.join(opt.choices)}, got {value!r}",
                            key=key, **where)
    for key, opt in declared.items():
        if opt.required and key not in options:
            raise SpecError(f"missing required option ({opt.help})", key=key, **where)


def build(type_name: str, options: dict[str, Any], *, where: dict[str, str]) -> Phase:
    """Instantiate a phase, turning any complaint about its options into a SpecError."""
    cls = resolve(type_name, where=where)
    check_options(cls, options, where)
    try:
        return cls(**options)
    except SpecError as exc:
        raise exc.located(**where) from None
    except (TypeError, ValueError) as exc:
        raise SpecError(str(exc), **where) from None
