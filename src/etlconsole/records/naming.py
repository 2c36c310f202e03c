"""How a recorded destination is named for people.

A destination of a job record (``{"kind", "path", ...}``) and one of its tables are shown as
(location, table left to name after it). Each destination class knows its own name
(PostgreSQL: ``postgres://host/db schema.table`` whole), but the records may not import the
engine (the layers' contracts), so the library facade installs the engine's namer
(``etlconsole.api``); a record read without it names a destination by its stored path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Namer = Callable[[Mapping[str, Any], "str | None"], "tuple[str, str | None]"]


def _by_path(record: Mapping[str, Any], table: str | None) -> tuple[str, str | None]:
    return str(record.get("path", "")), table


_namer: Namer = _by_path


def set_destination_namer(namer: Namer) -> None:
    global _namer
    _namer = namer


def named(record: Mapping[str, Any], table: str | None) -> tuple[str, str | None]:
    return _namer(record, table)
