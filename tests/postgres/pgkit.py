"""Scenarios against the suite's PostgreSQL server, through the real CLI in subprocesses
(the fault suite's Lab, with a postgres load instead of a SQLite file)."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from faults.faultkit import TABLE, Lab, pipeline_text

from .pg import PASSWORD, PgServer


def pg_pipeline_text(source: Path, url: str, *, mode: str = "append", table: str = TABLE,
                     on_error: str = "reject", extra: str = "") -> str:
    text = pipeline_text(Path(source), mode=mode, table=table, on_error=on_error)
    old = 'destination = "sqlite"\npath = "warehouse.db"'
    assert text.count(old) == 1, "sample pipeline's load changed"
    return text.replace(old, f'destination = "postgres"\nurl = {json.dumps(url)}{extra}')


class PgLab(Lab):
    """A Lab whose load goes to a database of the suite's server; PGPASSWORD is given to
    every command (libpq's usual place), never written in a pipeline."""

    def __init__(self, folder: Path, source: Path, pg: PgServer, db: str, **kw):
        self.pg, self.db = pg, db
        super().__init__(folder, source, **kw)
        self.env = {"PGPASSWORD": PASSWORD}

    def write_pipeline(self, name: str, source: Path, **kw) -> Path:
        extra = kw.pop("extra", "")
        path = self.folder / name
        path.write_text(pg_pipeline_text(Path(source), self.pg.url(self.db), extra=extra, **kw),
                        encoding="utf-8")
        return path

    def q(self, sql: str) -> list[tuple]:
        return self.pg.execute(sql, db=self.db)


def _norm(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.replace(tzinfo=None).isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bool):
        return int(v)
    return v


def pg_digest(pg: PgServer, db: str, table: str = TABLE, where: str = "") -> tuple[int, str]:
    """(rows, sha256) over the data columns (lineage excluded), rows sorted."""
    cols = [c for (c,) in pg.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = "
        f"'public.{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", db=db)
        if not c.startswith("_etl_")]
    rows = pg.execute(f"SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM {table} {where}", db=db)
    return _digest_rows(rows)


def sqlite_digest(db: Path, table: str = TABLE) -> tuple[int, str]:
    import sqlite3
    conn = sqlite3.connect(str(db))
    try:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if not r[1].startswith("_etl_")]
        names = ", ".join(chr(34) + c + chr(34) for c in cols)
        rows = conn.execute(f"SELECT {names} FROM {table}").fetchall()
    finally:
        conn.close()
    return _digest_rows(rows)


def _digest_rows(rows: list[tuple]) -> tuple[int, str]:
    lines = sorted(json.dumps([_norm(v) for v in r], default=str) for r in rows)
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


def user_tables(pg: PgServer, db: str) -> list[str]:
    return [n for (n,) in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                      "ORDER BY tablename", db=db)]
