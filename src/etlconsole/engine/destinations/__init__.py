"""Destinations: the contract (``base``) and the registry of its implementations.

Kinds are registered under the entry-point group ``etlconsole.destinations`` — the
built-in ``sqlite``, ``parquet``, ``csv`` and ``postgres`` the same way as a plugin's — or with
``register(kind, cls)``, the hook the entry-point loader itself uses. A new destination is
one module with a ``Destination`` subclass plus one entry point::

    [project.entry-points."etlconsole.destinations"]
    arrow = "my_pkg.arrow_dest:ArrowDestination"

Everything else in the engine gets a destination's class from ``get(kind)`` and talks to
it through ``base.Destination``; no module outside this package imports a concrete one.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from ...errors import SpecError
from .base import (Destination, DestinationBusy, DestinationError, DestinationFailed,
                   DestinationUnusable, LedgerEntry, Leftover, RefusedRow, RollbackReport,
                   RowRefused, TerminalDestinationError, TransientDestinationError,
                   WriteResult, probe_writable)

GROUP = "etlconsole.destinations"
# Used when running from a source tree without installed metadata; also the names no
# plugin can take over (as for phases: a package cannot silently replace 'sqlite').
_BUILTIN = {
    "sqlite": "etlconsole.engine.destinations.sqlite:SqliteDestination",
    "parquet": "etlconsole.engine.destinations.parquet:ParquetDestination",
    "csv": "etlconsole.engine.destinations.csv:CsvDestination",
    "postgres": "etlconsole.engine.destinations.postgres:PostgresDestination",
}
BUILTIN = tuple(_BUILTIN)

__all__ = ["Destination", "DestinationBusy", "DestinationError", "DestinationFailed",
           "DestinationUnusable", "LedgerEntry", "Leftover", "RefusedRow", "RollbackReport",
           "RowRefused", "TerminalDestinationError", "TransientDestinationError",
           "WriteResult", "probe_writable", "GROUP", "BUILTIN", "KINDS", "register", "available", "get",
           "named", "open_destination", "committed", "rollback"]

_registered: dict[str, type[Destination]] = {}      # kind -> class, once loaded
_refs: dict[str, str] | None = None                  # kind -> "module:Class", once scanned


def register(kind: str, cls: type[Destination]) -> None:
    """Make ``cls`` the destination of ``kind`` in this process.

    The entry-point loader calls this for every registered kind; tests and embedding
    applications may call it directly. A built-in kind cannot be taken by another class.

    Raises:
        TypeError: ``cls`` is not a ``Destination`` subclass.
        ValueError: ``kind`` is built in and ``cls`` is not its class.
    """
    if not (isinstance(cls, type) and issubclass(cls, Destination)):
        raise TypeError(f"destination {kind!r}: {cls!r} is not a Destination subclass")
    if kind in _BUILTIN and f"{cls.__module__}:{cls.__qualname__}" != _BUILTIN[kind]:
        raise ValueError(f"destination {kind!r} is built in and cannot be replaced")
    _registered[kind] = cls


def _scan() -> dict[str, str]:
    global _refs
    if _refs is None:
        from importlib.metadata import entry_points   # 30 ms of imports: only when asked

        found = dict(_BUILTIN)
        for ep in entry_points(group=GROUP):
            found.setdefault(ep.name, ep.value)        # built-in names always win
        _refs = found
    return _refs


def available() -> list[str]:
    """Every kind a pipeline can name: the built-in ones first, then registered ones and
    those of entry points, by name."""
    return list(_BUILTIN) + sorted((set(_scan()) | set(_registered)) - set(_BUILTIN))


class _Kinds(Sequence[str]):
    """``available()`` as a sequence looked up when used, not when imported: the load
    phase's ``destination`` option offers it as its choices (the console renders them),
    and entry points are only scanned when someone asks."""

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i):
        return available()[i]

    def __len__(self) -> int:
        return len(available())

    def __bool__(self) -> bool:     # never empty (the built-in kinds): no scan to say so
        return True

    def __contains__(self, kind: object) -> bool:
        return kind in _BUILTIN or kind in _registered or kind in _scan()


KINDS: Sequence[str] = _Kinds()


def get(kind: str | None) -> type[Destination]:
    """The class of a destination kind (jobs recorded before kinds existed are sqlite).

    Raises:
        SpecError: unknown kind, or a plugin that cannot be loaded (one line, exit 2).
    """
    kind = kind or "sqlite"
    if kind in _registered:
        return _registered[kind]
    ref = _BUILTIN.get(kind) or _scan().get(kind)
    if ref is None:
        raise SpecError(f"must be one of {', '.join(available())}, got {kind!r}",
                        key="destination")
    module, _, attr = ref.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except Exception as exc:  # a broken plugin is an error naming it, never a traceback
        raise SpecError(f"cannot load destination {kind!r} ({ref}): {type(exc).__name__}: {exc}",
                        key="destination") from None
    try:
        register(kind, cls)
    except (TypeError, ValueError) as exc:
        raise SpecError(str(exc), key="destination") from None
    return cls


def named(record: Mapping[str, Any], table: str | None) -> tuple[str, str | None]:
    """How jobs, rollback previews and ``show`` name a destination of a job record
    (``{"kind", "path", ...}``) and one of its tables: (location, table left to name after
    it). A record of an unknown kind (a plugin since removed) is named by its path."""
    try:
        cls = get(record.get("kind"))
    except SpecError:
        return str(record.get("path", "")), table
    try:
        return cls.named(record.get("path", ""), table)
    except Exception:          # a record this version cannot parse: its path, as stored
        return str(record.get("path", "")), table


def open_destination(load: Any, path: Path, job_id: str, settings: Any) -> Destination:
    """The destination object of a load phase, for one job."""
    return get(load.destination).for_load(load, Path(path), job_id, settings)


def committed(path: Path, job_id: str, kind: str | None = "sqlite") -> list[LedgerEntry]:
    """The job's ledger entries in the destination (what it really holds), by batch."""
    return get(kind).read_ledger(Path(path), job_id)


def rollback(path: Path, job_id: str, kind: str | None = "sqlite", **kw: Any) -> RollbackReport:
    """Undo the job's effect on the destination (see ``Destination.rollback``)."""
    return get(kind).rollback(Path(path), job_id, **kw)
