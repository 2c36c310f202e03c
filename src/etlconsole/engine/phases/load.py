"""load: where the rows go. The phase itself passes batches through; the runner hands
them to the destination it names, one transaction per batch."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ...errors import SpecError
from .. import destinations
from .base import Option, Phase

MODES = ("append", "atomic", "replace")


class Load(Phase):
    name = "load"
    description = "Write rows to a destination, one transaction per batch."
    options = {
        # The choices are the registry's (plugins add kinds: etlconsole.destinations).
        "destination": Option("string", "destination kind", default="sqlite",
                              choices=destinations.KINDS),
        "path": Option("string", "destination, relative to the pipeline file: a SQLite file, "
                       "or the dataset folder of a parquet or csv destination (required for "
                       "them)"),
        "table": Option("string", "target table (sqlite, postgres)"),
        "mode": Option("string", "append: batches visible as they commit; atomic: published in "
                       "one transaction at the end; replace: atomic, then swaps the whole table",
                       default="append", choices=MODES),
        "on_failure": Option("string", "what cleanup does with the rows of a failed job past "
                             "retention: keep them, or roll them back", default="keep",
                             choices=("keep", "rollback")),
        "on_error": Option("string", "a row the database refuses (a constraint): reject it and "
                           "load the rest of its batch, or fail the job (resumably)",
                           default="reject", choices=("reject", "fail")),
        # PostgreSQL's own options last: the form of a SQLite or folder load keeps the
        # order operators know (destination, path, table, mode, ...).
        "url": Option("string", "postgres: libpq URL without a password, "
                      "postgresql://user@host:port/db (--dest overrides it)"),
        "service": Option("string", "postgres: a service of pg_service.conf instead of url"),
        "schema": Option("string", "postgres: the target schema (default public)"),
        "password_env": Option("string", "postgres: the environment variable holding the "
                               "password (else PGPASSWORD, ~/.pgpass or the service file)"),
    }

    def __init__(self, path: str | None = None, table: str | None = None,
                 destination: str = "sqlite", mode: str = "append", on_failure: str = "keep",
                 on_error: str = "reject", url: str | None = None, service: str | None = None,
                 schema: str | None = None, password_env: str | None = None):
        self.on_failure, self.on_error = on_failure, on_error
        self.url, self.service, self.schema, self.password_env = url, service, schema, password_env
        kind = destinations.get(destination)      # SpecError naming the kinds there are
        if kind.locator == "url":
            if path is not None:
                raise SpecError(f"a {destination} destination takes url (or service), not path",
                                key="path")
            if not url and not service:
                raise SpecError("missing required option (url or service)", key="url")
            if url and service:
                raise SpecError("give url or service, not both", key="service")
            path = ""
            kind.locate(self, None, lambda p: Path(p))   # a password in the URL: refused now
        else:
            for key, value in (("url", url), ("service", service), ("schema", schema),
                               ("password_env", password_env)):
                if value is not None:
                    raise SpecError(f"a {destination} destination has no {key}", key=key)
            if path is None:
                raise SpecError("missing required option (destination path)", key="path")
        if not kind.has_tables:
            if table is not None:
                raise SpecError(f"a {destination} destination has no table: path is the "
                                "dataset folder (one part file per batch)", key="table")
            if not path.strip():
                raise SpecError("path is empty", key="path")
            self.destination, self.path, self.table, self.mode = destination, path, None, mode
            return
        if table is None:
            raise SpecError("missing required option (target table)", key="table")
        if not table.strip():
            raise SpecError("table name is empty", key="table")
        if table.startswith("_etl_"):
            raise SpecError("table names starting with _etl_ are reserved for etlconsole", key="table")
        self.destination, self.path, self.table, self.mode = destination, path, table, mode

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch
