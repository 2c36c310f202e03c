"""Phase registry: built-in phases and plugins share the entry-point group
``etlconsole.phases``; a ``package.module:Class`` reference works too."""

from __future__ import annotations

import importlib
import re
from functools import lru_cache
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
    "branch": "etlconsole.engine.phases.branch:Branch",
}

__all__ = ["Option", "Phase", "PhaseResult", "Rejects", "available", "resolve", "build",
           "origin_of"]
_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _import(ref: str):
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise LookupError(f"module {exc.name!r} not found (is the plugin installed in "
                              "this environment?)") from None
        raise                       # the plugin itself imports something missing
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LookupError(f"module {module!r} has no {part!r}") from None
    return obj


@lru_cache(maxsize=1)
def available() -> dict[str, tuple[str, str]]:
    """name -> (reference, origin) for every registered phase. Built-in names cannot be
    taken over by a plugin (a plugin registering 'load' is listed under its dist name)."""
    from importlib.metadata import entry_points   # 30 ms of imports: only when asked

    found = {name: (ref, "built-in") for name, ref in _BUILTIN.items()}
    for ep in entry_points(group=GROUP):
        dist = getattr(ep.dist, "name", None) if getattr(ep, "dist", None) else None
        if ep.value.startswith("etlconsole."):
            found.setdefault(ep.name, (ep.value, "built-in"))
            continue
        origin = f"plugin ({dist})" if dist else "plugin"
        name = ep.name if ep.name not in _BUILTIN else f"{dist or 'plugin'}.{ep.name}"
        found[name] = (ep.value, origin)
    return found


def origin_of(type_name: str) -> tuple[str, str]:
    """(source, reference) of a phase type: 'built-in', 'plugin (dist)' or 'module path'."""
    if ":" in type_name:
        return "module path", type_name
    if type_name in _BUILTIN:            # no plugin can take a built-in name: no scan
        return "built-in", _BUILTIN[type_name]
    ref, origin = available().get(type_name, (type_name, "unknown"))
    return origin, ref


def resolve(type_name: str, *, where: dict[str, str] | None = None) -> type:
    """The class of a phase type; every failure is one SpecError naming the plugin."""
    where = where or {}
    if ":" in type_name:
        ref, what = type_name, f"phase {type_name!r}"
    elif type_name in _BUILTIN:          # no plugin can take a built-in name
        ref, what = _BUILTIN[type_name], f"phase {type_name!r}"
    elif type_name in available():
        ref, origin = available()[type_name]
        what = f"phase {type_name!r}" + (f" from {origin} ({ref})" if origin != "built-in" else "")
    else:
        names = ", ".join(sorted(available()))
        raise SpecError(f"unknown phase type {type_name!r} (available: {names}; "
                        "or 'package.module:Class')", key="type", **where)
    if not _REF.match(ref):
        raise SpecError(f"cannot load {what}: the reference must be 'package.module:Class'",
                        key="type", **where)
    try:
        cls = _import(ref)
    except LookupError as exc:
        raise SpecError(f"cannot load {what}: {exc}", key="type", **where) from None
    except BaseException as exc:  # a broken plugin must not crash the CLI
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise SpecError(f"cannot load {what}: importing it raised {type(exc).__name__}: {exc}",
                        key="type", **where) from None
    if not isinstance(cls, type) or not callable(getattr(cls, "process", None)):
        raise SpecError(f"cannot load {what}: it is not a phase (a class with a "
                        "process(batch) method)", key="type", **where)
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
    """Instantiate a phase, turning any complaint about its options into a SpecError.

    A phase that is not built in comes back wrapped (``PluginPhase``): its setup and
    teardown hooks become optional and an exception in ``process`` rejects the rows that
    cause it instead of failing the job."""
    cls = resolve(type_name, where=where)
    check_options(cls, options, where)
    try:
        phase = cls(**options)
    except SpecError as exc:
        raise exc.located(**where) from None
    except Exception as exc:   # TypeError for an unknown keyword, anything from a plugin
        raise SpecError(f"{type(exc).__name__}: {exc}" if not isinstance(exc, (TypeError, ValueError))
                        else str(exc), **where) from None
    if origin_of(type_name)[0] == "built-in":
        return phase
    from .plugin import PluginPhase
    return PluginPhase(phase, type_name)
