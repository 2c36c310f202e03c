"""Destinations: where loaded batches land, each batch with its ledger entry.

``open_destination`` makes the destination a load phase names; ``committed``,
``rollback``, ``etl_tables`` and ``drop_table`` read and undo a job's effect on a
destination of any kind (the job record keeps each destination's kind, path and table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

KINDS = ("sqlite", "parquet", "csv")


@dataclass
class WriteResult:
    """What writing one batch took: attempts (1 + retries) and the rows the destination
    refused, as (row index in the batch, the destination's message)."""

    attempts: int
    refused: list[tuple[int, str]]


def module(kind: str | None) -> ModuleType:
    """The module of a destination kind (jobs made before kinds existed are sqlite)."""
    kind = kind or "sqlite"
    if kind == "sqlite":
        from . import sqlite
        return sqlite
    if kind == "parquet":
        from . import parquet
        return parquet
    if kind == "csv":
        from . import csv
        return csv
    raise ValueError(f"unknown destination kind {kind!r} (known: {', '.join(KINDS)})")


def open_destination(load, path: Path, job_id: str, settings):
    """The destination object of a load phase (same interface for every kind)."""
    kind = load.destination
    if kind == "sqlite":
        from .sqlite import SqliteDestination
        return SqliteDestination(path, load.table, job_id, mode=load.mode,
                                 timeout_ms=settings.transaction_timeout_ms,
                                 retry_attempts=settings.batch_retry_attempts,
                                 retry_delay_ms=settings.batch_retry_delay_ms,
                                 isolate=load.on_error != "fail")
    if kind == "parquet":
        from .parquet import ParquetDestination
        return ParquetDestination(path, job_id, mode=load.mode)
    if kind == "csv":
        from .csv import CsvDestination
        return CsvDestination(path, job_id, mode=load.mode)
    raise ValueError(f"unknown destination kind {kind!r}")


def committed(path: Path, job_id: str, kind: str | None = "sqlite") -> list[dict]:
    return module(kind).committed(Path(path), job_id)


def rollback(path: Path, job_id: str, kind: str | None = "sqlite", **kw) -> dict:
    return module(kind).rollback(Path(path), job_id, **kw)
