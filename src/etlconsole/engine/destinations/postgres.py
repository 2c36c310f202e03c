"""PostgreSQL destination: binary COPY through ADBC, one transaction per batch with its ledger row.

The location is a libpq URL without a password (``postgresql://user@host:port/db``) or a
service (``postgresql://?service=NAME``); etlconsole keeps the target schema (and the name
of the variable holding the password, if any) as query parameters of its own::

    postgresql://etl@db.example:5432/warehouse?schema=sales&password_env=WAREHOUSE_PW

That string is what the job record keeps as the destination's ``path`` and what the
recovery half gets back (the contract passes a ``Path``, which folds ``//`` into ``/``:
``parse_location`` reads both forms). A password never enters it: one written in the URL
is refused; libpq finds it in ``PGPASSWORD``, ``~/.pgpass`` or a service file, or the
engine reads the variable ``password_env`` names when it connects.

Each batch is one transaction: ``adbc_ingest`` (binary COPY) of its rows with their
lineage (``_etl_job_id``, ``_etl_batch``), then its row in ``<schema>._etl_loads``. The
COPY is fed a stream of slices of the batch, so the server parses one while the client
encodes the next (ADR 0027).
Appending to an existing table casts each batch to the table's exact column types first
(ADBC does not coerce: an int64 into an ``integer`` column fails with "incorrect binary
data format"); ``check`` refuses a missing or uncastable column before anything is written.

A COPY that violates a constraint fails whole and aborts the transaction: the row is the
COPY line the error's context names (``COPY t, line 4``); the transaction is rolled back
(savepoints do not survive a failed COPY in ADBC), the row is refused with PostgreSQL's
message and a rule from the SQLSTATE, and the batch is written again without it. Errors
without a line are found by bisection.

Modes, rollback and cleanup are SQLite's (ADR 0014), in PostgreSQL's transactional DDL:
``atomic``/``replace`` stage into ``_etl_stage_<job>_<table>`` and publish in one
transaction; ``replace`` keeps ``_etl_replaced_<job>_<table>``; rollback finds rows by
lineage through ``_etl_lineage_<table>`` (never ctid or identity ranges) or drops a table
the job created that holds nothing else.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc

from ...errors import SpecError, UserError
from .base import (Destination, DestinationBusy, DestinationError, DestinationFailed,
                   DestinationUnusable, LedgerEntry, Leftover, RefusedRow, RollbackReport,
                   RowRefused, WriteResult)

LEDGER = "_etl_loads"
TABLES = "_etl_tables"
LINEAGE = [("_etl_job_id", "text"), ("_etl_batch", "bigint")]
INDEX_PREFIX = "_etl_lineage_"
STAGE_PREFIX = "_etl_stage_"
REPLACED_PREFIX = "_etl_replaced_"
MAX_IDENT = 63                  # NAMEDATALEN - 1: longer names are cut by the server
LOCK_KEY = 0x6574_6C63          # advisory lock serializing etlconsole's DDL in a database
PG_MAX_COLUMNS = 1600
# PIPELINE_TRANSACTION_TIMEOUT_MS bounds lock waits and a batch's statements; a publish, an
# index build or a rollback of millions of rows may take longer and keep lock_timeout only.
UNBOUNDED = "SET LOCAL statement_timeout = 0"
OWN_PARAMS = ("schema", "password_env")
SECRET_PARAMS = ("password", "passfile")   # passfile is allowed below; password never
_TRANSIENT_STATES = {"57P01", "57P02", "57P03", "40001", "40P01", "55P03", "53300", "53400"}
_TRANSIENT_TEXT = ("server closed the connection", "terminating connection", "connection reset",
                   "no connection to the server", "could not connect", "connection refused",
                   "connection to server", "broken pipe", "the database system is starting up",
                   "the database system is shutting down", "ssl syscall error", "eof detected")
_RULES = {"23505": "unique", "23502": "not_null", "23514": "check", "23503": "foreign_key",
          "23P01": "exclusion"}

# PostgreSQL type (format_type) -> the Arrow type ADBC writes it from.
_PG_TO_ARROW: dict[str, pa.DataType] = {
    "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(),
    "real": pa.float32(), "double precision": pa.float64(), "boolean": pa.bool_(),
    "text": pa.string(), "date": pa.date32(),
    "timestamp without time zone": pa.timestamp("us"),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
}
_INT_RANGE = {"smallint": (-2**15, 2**15 - 1), "integer": (-2**31, 2**31 - 1)}
# A batch goes to COPY as a stream of slices of about this many bytes of Arrow data. ADBC
# encodes a stream one slice at a time and hands each to the server before encoding the
# next, so the server parses slice k while the client encodes slice k+1; given one record
# batch, it encoded all of it before sending a byte, and client and server took turns
# (1M rows: 0.55 s encoding + 1.0 s parsing, serial). Small enough to overlap well, large
# enough that the per-slice cost (a flush, a syscall) stays negligible.
COPY_SLICE_BYTES = 1 << 19


# -- names ------------------------------------------------------------------------------
def quote(name: str) -> str:
    """A PostgreSQL identifier from any header text."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """A string literal (standard_conforming_strings is on since 9.1)."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A name PostgreSQL keeps whole: past 63 bytes, a prefix and a hash of the rest (the
    server would cut it silently, and two long names could meet)."""
    if len(name.encode()) <= MAX_IDENT:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    head = name.encode()[:MAX_IDENT - 11].decode(errors="ignore")
    return f"{head}_{digest}"


def stage_name(job_id: str, table: str) -> str:
    return ident(f"{STAGE_PREFIX}{job_id}_{table}")


def replaced_name(job_id: str, table: str) -> str:
    return ident(f"{REPLACED_PREFIX}{job_id}_{table}")


# -- the location ------------------------------------------------------------------------
class Location:
    """What a job's destination string says: the libpq URL (no password), schema, and the
    variable holding the password."""

    def __init__(self, url: str, schema: str = "public", password_env: str | None = None):
        self.url, self.schema, self.password_env = url, schema, password_env

    def __str__(self) -> str:
        parts = urlsplit(self.url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        query.append(("schema", self.schema))
        if self.password_env:
            query.append(("password_env", self.password_env))
        return _url(parts.netloc, parts.path, query)

    @property
    def display(self) -> str:
        """How messages name it: the URL and schema, never a password."""
        return f"{self.url} schema {self.schema}"

    def name(self, table: str | None = None) -> str:
        """How jobs, rollback previews and ``show`` name it: ``postgres://host/db
        schema.table`` (no user, port or password; a service: ``postgres://?service=NAME``)."""
        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        host = parts.hostname or query.get("host", "")
        db = parts.path.strip("/") or query.get("dbname", "")
        if not host and not db and query.get("service"):
            base = f"postgres://?service={query['service']}"
        else:
            base = f"postgres://{host}/{db}"
        return f"{base} {self.schema}.{table}" if table else f"{base} {self.schema}"

    def conninfo(self) -> str:
        """The URL for libpq, with the password of ``password_env`` if set (in memory only)."""
        if not self.password_env:
            return self.url
        password = os.environ.get(self.password_env)
        if password is None:
            raise DestinationUnusable(f"{self.display}: password_env names {self.password_env}, "
                                      "which is not set in the environment")
        parts = urlsplit(self.url)
        query = parse_qsl(parts.query, keep_blank_values=True) + [("password", password)]
        return _url(parts.netloc, parts.path, query)


def _url(netloc: str, path: str, query: list[tuple[str, str]]) -> str:
    """postgresql://netloc/path?query, with the slashes kept when netloc is empty."""
    return f"postgresql://{netloc}{path}" + (f"?{urlencode(query)}" if query else "")


_SCHEME = re.compile(r"^(postgres|postgresql):(/*)", re.IGNORECASE)


def masked(url: str) -> str:
    """``url`` with any password replaced by ***, for an error message."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))


def make_location(url: str | None = None, *, service: str | None = None, schema: str | None = None,
                  password_env: str | None = None) -> Location:
    """A location from a pipeline's options (or ``--dest``).

    Raises:
        UserError: a password in the URL (never stored), or not a postgresql:// URL.
    """
    if service and not url:
        url = f"postgresql://?{urlencode([('service', service)])}"
    if not url:
        raise SpecError("a postgres load needs url (postgresql://user@host:port/db) or service",
                        key="url")
    text = str(url)
    m = _SCHEME.match(text)
    if not m:
        raise UserError(f"{masked(text)}: not a PostgreSQL URL (postgresql://user@host:port/db)")
    rest = text[m.end():]
    # two slashes or more: as written; fewer: folded by a Path (our own strings only)
    parts = urlsplit("postgresql:" + (m.group(2) if len(m.group(2)) >= 2 else "//") + rest)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is not None or any(k == "password" for k, _ in query):
        raise UserError(f"{masked(text)}: a password in the URL is refused (it would be stored "
                        "with the job); give it in PGPASSWORD, ~/.pgpass, a service file, or "
                        "name a variable with password_env")
    own = {k: v for k, v in query if k in OWN_PARAMS}
    query = [(k, v) for k, v in query if k not in OWN_PARAMS]
    path = parts.path
    if not parts.netloc and path.strip("/"):
        # postgresql:///db: the database goes to the query, so the string survives a Path
        query.insert(0, ("dbname", path.strip("/")))
        path = ""
    if path in ("/",):
        path = ""
    if service and not any(k == "service" for k, _ in query):
        query.append(("service", service))
    clean = _url(parts.netloc, path, query)
    return Location(clean, schema or own.get("schema") or "public",
                    password_env or own.get("password_env") or None)


def parse_location(path: str | Path) -> Location:
    """The location back from a job record (``//`` possibly folded to ``/`` by ``Path``)."""
    return make_location(str(path))


# -- types -----------------------------------------------------------------------------
def pg_type(dtype: pa.DataType) -> str:
    """The column type a new table gets for an Arrow type."""
    if pa.types.is_int64(dtype) or pa.types.is_uint32(dtype):
        return "bigint"
    if pa.types.is_integer(dtype):
        return "integer" if dtype.bit_width == 32 and pa.types.is_signed_integer(dtype) else "bigint"
    if pa.types.is_float32(dtype):
        return "real"
    if pa.types.is_floating(dtype):
        return "double precision"
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_timestamp(dtype):
        return "timestamp with time zone" if dtype.tz else "timestamp without time zone"
    return "text"


def _base_type(pg: str) -> str:
    """'character varying(20)' -> 'text' for the cast (lengths are the server's check)."""
    if pg.startswith(("character varying", "character(", "varchar", "bpchar")) or pg == "character":
        return "text"
    return pg


def castable(source: pa.DataType, pg: str) -> bool:
    """Can a column of ``source`` be written into a column of type ``pg``?"""
    target = _base_type(pg)
    if target not in _PG_TO_ARROW:
        return False
    if target == "text":
        return True
    if target in ("smallint", "integer", "bigint"):
        return pa.types.is_integer(source)
    if target in ("real", "double precision"):
        return pa.types.is_integer(source) or pa.types.is_floating(source)
    if target == "boolean":
        return pa.types.is_boolean(source)
    if target == "date":
        return pa.types.is_date(source) or pa.types.is_timestamp(source)
    return pa.types.is_timestamp(source) or pa.types.is_date(source)


def cast_batch(batch: pa.RecordBatch, columns: dict[str, str]) -> tuple[pa.RecordBatch, dict[int, str]]:
    """The batch in the table's exact types; rows whose value does not fit (an integer out
    of an ``integer`` column's range) come back with PostgreSQL's words for it."""
    bad: dict[int, str] = {}
    arrays, fields = [], []
    for field, col in zip(batch.schema, batch.columns, strict=True):
        base = _base_type(columns.get(field.name) or "")
        target = _PG_TO_ARROW.get(base)
        if target is None or col.type == target:
            arrays.append(col)
            fields.append(pa.field(field.name, col.type))
            continue
        if base in _INT_RANGE and pa.types.is_integer(col.type):
            lo, hi = _INT_RANGE[base]
            out = pc.or_(pc.less(col, lo), pc.greater(col, hi))
            for i in pc.indices_nonzero(pc.fill_null(out, False)).to_pylist():
                bad.setdefault(i, f"value \"{col[i].as_py()}\" is out of range for type {base}")
            if bad:
                col = pc.if_else(pc.fill_null(out, False), pa.scalar(None, col.type), col)
        if pa.types.is_timestamp(target) and pa.types.is_timestamp(col.type):
            if target.tz and not col.type.tz:
                col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))   # naive read as UTC
            elif col.type.tz and not target.tz:
                col = col.cast(pa.timestamp(col.type.unit))             # the UTC wall time
        col = col.cast(target, safe=False) if not pa.types.is_timestamp(target) else col.cast(target)
        arrays.append(col)
        fields.append(pa.field(field.name, target))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields)), bad


def copy_stream(rows: pa.RecordBatch, slice_bytes: int | None = None) -> pa.Table:
    """``rows`` as a table of zero-copy slices of about ``slice_bytes`` (default
    COPY_SLICE_BYTES) each. One COPY still: its line numbers count across the slices."""
    per = max(1, rows.num_rows * (slice_bytes or COPY_SLICE_BYTES) // max(1, rows.nbytes))
    return pa.Table.from_batches([rows.slice(i, per) for i in range(0, rows.num_rows, per)],
                                 schema=rows.schema)


# -- errors ------------------------------------------------------------------------------
def _details(exc: Exception) -> dict[str, str]:
    out = {}
    for key, value in getattr(exc, "details", None) or []:
        k = key.decode() if isinstance(key, bytes) else str(key)
        out[k] = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return out


def sqlstate(exc: Exception) -> str | None:
    state = getattr(exc, "sqlstate", None) or _details(exc).get("PG_DIAG_SQLSTATE")
    return state or None


def is_transient(exc: Exception) -> bool:
    state = sqlstate(exc) or ""
    if state in _TRANSIENT_STATES or state.startswith("08"):
        return True
    text = str(exc).lower()
    return any(t in text for t in _TRANSIENT_TEXT)


def first_line(exc: Exception) -> str:
    """The server's message (without ADBC's prefixes and the SQLSTATE suffix)."""
    d = _details(exc)
    if "PG_DIAG_MESSAGE_PRIMARY" in d:
        return d["PG_DIAG_MESSAGE_PRIMARY"]
    text = str(exc)
    text = re.sub(r"^[A-Z_]+: \[libpq\] ", "", text)
    text = re.sub(r"^.*?(ERROR|FATAL):\s+", "", text, count=1, flags=re.S)
    return (text.splitlines() or [type(exc).__name__])[0].strip()


class RowFailure:
    """A COPY refused a row: its line (1-based, when the server said), rule, column, message."""

    def __init__(self, exc: Exception):
        d = _details(exc)
        state = sqlstate(exc) or ""
        self.rule = _RULES.get(state) or ("data" if state.startswith("22") else "constraint")
        context = d.get("PG_DIAG_CONTEXT", "")
        m = re.search(r"COPY [^,]+, line (\d+)(?:, column ([^:\n]+))?", context) or \
            re.search(r"COPY [^,]+, line (\d+)(?:, column ([^:\n]+))?", str(exc))
        self.line = int(m.group(1)) if m else None
        column = d.get("PG_DIAG_COLUMN_NAME") or (m.group(2) if m and m.group(2) else None)
        if column is None and state == "23505":
            k = re.match(r"Key \(([^)]+)\)=", d.get("PG_DIAG_MESSAGE_DETAIL", ""))
            column = k.group(1) if k and "," not in k.group(1) else None
        self.column = column
        message = first_line(exc)
        detail = d.get("PG_DIAG_MESSAGE_DETAIL")
        if detail and not detail.startswith("Failing row contains"):
            message = f"{message}: {detail}"
        self.message = f"{message} (SQLSTATE {state})" if state else message

    def refused(self, index: int) -> RefusedRow:
        return RefusedRow(index, self.rule, self.column, self.message)


def row_failure(exc: Exception) -> RowFailure | None:
    """A RowFailure when ``exc`` is about a row's values (SQLSTATE class 22 or 23)."""
    state = sqlstate(exc) or ""
    if state[:2] in ("22", "23"):
        return RowFailure(exc)
    return None


# -- connections ------------------------------------------------------------------------
def _connect(loc: Location, timeout_ms: int | None = None):
    import adbc_driver_postgresql.dbapi as adbc

    conn = adbc.connect(loc.conninfo(), autocommit=False)
    if timeout_ms:
        cur = conn.cursor()
        cur.execute(f"SET lock_timeout = {int(timeout_ms)}")
        cur.execute(f"SET statement_timeout = {int(max(timeout_ms, 1000))}")
        cur.close()
        conn.commit()
    return conn


def _rows(cur, sql: str) -> list[tuple]:
    cur.execute(sql)
    return cur.fetchall()


def _exists(cur, schema: str, name: str) -> bool:
    return bool(_rows(cur, f"SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                           f"ON n.oid = c.relnamespace WHERE n.nspname = {lit(schema)} "
                           f"AND c.relname = {lit(name)} AND c.relkind IN ('r', 'p')")[0][0])


def _columns(cur, schema: str, table: str) -> dict[str, str]:
    """name -> format_type of the table's columns, in order ({} when there is no table)."""
    rows = _rows(cur, "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
                      "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n "
                      f"ON n.oid = c.relnamespace WHERE n.nspname = {lit(schema)} AND c.relname = "
                      f"{lit(table)} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum")
    return {name: type_ for name, type_ in rows}


def _q(schema: str, name: str) -> str:
    return f"{quote(schema)}.{quote(name)}"


def _bookkeeping(schema: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {_q(schema, LEDGER)} (job_id text NOT NULL, table_name text "
        "NOT NULL, batch bigint NOT NULL, row_start bigint, row_end bigint, rows bigint NOT NULL, "
        "committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job_id, table_name, batch))",
        f"CREATE TABLE IF NOT EXISTS {_q(schema, TABLES)} (job_id text NOT NULL, table_name text "
        "NOT NULL, action text NOT NULL, backup_name text, at timestamptz NOT NULL DEFAULT now())",
    ]


def _create_table_sql(schema: str, name: str, arrow: pa.Schema) -> str:
    cols = [f"{quote(f.name)} {pg_type(f.type)}" for f in arrow]
    cols += [f"{quote(n)} {t}" for n, t in LINEAGE]
    return f"CREATE TABLE {_q(schema, name)} ({', '.join(cols)})"


def _lineage_index(cur, schema: str, table: str) -> str | None:
    """An index on exactly (_etl_job_id, _etl_batch) of the table, if any."""
    rows = _rows(cur, "SELECT i.relname, array_to_string(array_agg(a.attname ORDER BY k.ord), ',') "
                      "FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class t ON t.oid = x.indrelid "
                      "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
                      "JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
                      "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) "
                      "JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
                      f"WHERE n.nspname = {lit(schema)} AND t.relname = {lit(table)} GROUP BY i.relname")
    for name, cols in rows:
        if cols == ",".join(n for n, _ in LINEAGE):
            return name
    return None


def _ensure_lineage_index(cur, schema: str, table: str, job_id: str = "") -> None:
    if _lineage_index(cur, schema, table) is None:
        name = ident(INDEX_PREFIX + table)
        if _rows(cur, "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON "
                      f"n.oid = c.relnamespace WHERE n.nspname = {lit(schema)} "
                      f"AND c.relname = {lit(name)}")[0][0]:
            name = ident(f"{INDEX_PREFIX}{job_id}_{table}")   # a replaced table keeps the name
        # a build over the rows of the job(s) before: sorted in memory, not cut by the
        # batch's statement_timeout (the transaction ends after it)
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
        cur.execute(UNBOUNDED)
        cur.execute(f"CREATE INDEX {quote(name)} ON {_q(schema, table)} "
                    f"({', '.join(quote(n) for n, _ in LINEAGE)})")


def _lock(cur) -> None:
    """etlconsole's DDL in one database, one at a time (CREATE TABLE IF NOT EXISTS races)."""
    _rows(cur, f"SELECT 1 FROM (SELECT pg_advisory_xact_lock({LOCK_KEY})) AS l")


# -- the target's constraints on an atomic job's stage ---------------------------------
ROW = "_etl_row"        # a stage's column: the row's position in its batch (never published)


class Key:
    """A unique constraint (primary key or unique) of the target: its name, its columns
    (as stored, and as PostgreSQL quotes them in messages)."""

    def __init__(self, name: str, columns: list[str], shown: list[str]):
        self.name, self.columns, self.shown = name, columns, shown


def _constraints(cur, schema: str, table: str) -> list[tuple[str, str]]:
    """(name, definition) of the table's exclusion and foreign key constraints (a foreign
    key to the table itself excepted: its rows are the stage's own until the publish)."""
    return [(n, d) for n, d in _rows(
        cur, "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_catalog.pg_constraint c "
             f"WHERE c.conrelid = {lit(_q(schema, table))}::regclass AND (c.contype = 'x' OR "
             "(c.contype = 'f' AND c.confrelid <> c.conrelid)) ORDER BY c.conname")]


def _keys(cur, schema: str, table: str) -> list[Key]:
    """The table's unique indexes on plain columns: its primary key, unique constraints
    and unique indexes (an index on expressions or a partial one is left to the publish)."""
    sep = chr(31)           # a separator no column name holds
    rows = _rows(cur, "SELECT i.relname, string_agg(a.attname, chr(31) ORDER BY k.ord), "
                      "string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord) FROM "
                      "pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
                      "CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) "
                      "JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND "
                      f"a.attnum = k.attnum WHERE x.indrelid = {lit(_q(schema, table))}::regclass "
                      "AND x.indisunique AND x.indexprs IS NULL AND x.indpred IS NULL "
                      "AND 0 <> ALL (x.indkey) GROUP BY i.relname ORDER BY i.relname")
    return [Key(name, cols.split(sep), shown.split(", ")) for name, cols, shown in rows]


def _copy_name(job_id: str, name: str) -> str:
    """The stage's name for a copy of the target's index or constraint (index names are
    unique in a schema)."""
    return ident(f"_etl_{job_id}_{name}")


def _stage_names(cur, schema: str, table: str, job_id: str) -> dict[str, str]:
    """{the stage's name of a copy: the target's name}."""
    names = {_copy_name(job_id, k.name): k.name for k in _keys(cur, schema, table)}
    names.update({_copy_name(job_id, n): n for n, _ in _constraints(cur, schema, table)})
    return names


def _stage_like(cur, schema: str, stage: str, table: str, job_id: str) -> None:
    """The stage of an atomic job into an existing table: its exact column types, its
    defaults, NOT NULL and CHECK constraints (LIKE), and copies of its unique indexes
    (primary key, unique), exclusion and foreign key constraints, so a row that breaks one
    is refused at the COPY of its batch (phase load) instead of failing the publish."""
    t, st = _q(schema, table), _q(schema, stage)
    cur.execute(f"CREATE TABLE {st} (LIKE {t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                "INCLUDING IDENTITY INCLUDING GENERATED)")
    cur.execute(f"ALTER TABLE {st} ADD COLUMN {quote(ROW)} integer")
    for key in _keys(cur, schema, table):
        cur.execute(f"CREATE UNIQUE INDEX {quote(_copy_name(job_id, key.name))} ON {st} "
                    f"({', '.join(quote(c) for c in key.columns)})")
    for name, definition in _constraints(cur, schema, table):
        cur.execute(f"ALTER TABLE {st} ADD CONSTRAINT {quote(_copy_name(job_id, name))} {definition}")


def _in_target_words(message: str, stage: str, table: str, names: dict[str, str]) -> str:
    """PostgreSQL's message about the stage, in the target's names (the constraint the
    operator knows, the relation the rows were meant for)."""
    for copy, name in names.items():
        message = message.replace(f'constraint "{copy}"', f'constraint "{name}"')
    return message.replace(f'"{stage}"', f'"{table}"')


def _already_in_target(cur, schema: str, stage: str, table: str, batch: int,
                       keys: list[Key]) -> dict[int, RefusedRow]:
    """Rows of the batch (by position) whose key is already in the target, with the
    message PostgreSQL gives for that violation (23505). The stage's own copies of the
    constraints see only the job's rows; this sees the rows the publish will meet."""
    found: dict[int, RefusedRow] = {}
    s, t = _q(schema, stage), _q(schema, table)
    for key in keys:
        match = " AND ".join(f"t.{quote(c)} = s.{quote(c)}" for c in key.columns)
        values = ", ".join(f"s.{quote(c)}::text" for c in key.columns)
        for row, shown in _rows(cur, f"SELECT s.{quote(ROW)}, concat_ws(', ', {values}) FROM {s} s "
                                     f"WHERE s._etl_batch = {int(batch)} AND EXISTS (SELECT 1 "
                                     f"FROM {t} t WHERE {match})"):
            column = key.columns[0] if len(key.columns) == 1 else None
            found.setdefault(int(row), RefusedRow(
                int(row), "unique", column, f'duplicate key value violates unique constraint '
                f'"{key.name}": Key ({", ".join(key.shown)})=({shown}) already exists. '
                "(SQLSTATE 23505)"))
    return found


class PostgresDestination(Destination):
    kind = "postgres"
    title = "PostgreSQL"
    locator = "url"
    parallel_writers = True     # a batch is one transaction; the ledger is keyed by (job, batch)
    has_tables = True
    shared_ledger = True        # _etl_loads: a row per (job, table, batch)
    refuses_rows = True
    lineage_columns = tuple(n for n, _ in LINEAGE)
    max_columns = PG_MAX_COLUMNS
    folds_case = False
    atomic_publish = True

    def __init__(self, path: Path | str, job_id: str, *, table: str | None = None, **kw):
        if not table:
            raise ValueError("a PostgreSQL destination needs a table")
        self.loc = parse_location(path)
        super().__init__(Path(str(self.loc)), job_id, table=table, **kw)
        self.table: str = table
        self.schema = self.loc.schema
        self.write_table: str = table if self.mode == "append" else stage_name(job_id, table)
        self._conn: Any = None
        self._broken = False
        self._columns: dict[str, str] = {}
        self._last: tuple[int, list[RefusedRow]] | None = None
        # an atomic job into an existing table: the target's keys, checked per batch, and
        # the stage's names of its constraint copies (see _stage_like)
        self._keys: list[Key] = []
        self._renamed: dict[str, str] = {}

    # -- where -------------------------------------------------------------------------
    @classmethod
    def locate(cls, load: Any, dest: str | Path | None, resolve: Callable[[str], Path]) -> Path:
        if dest:
            base = make_location(str(dest))
            loc = Location(base.url, getattr(load, "schema", None) or base.schema,
                           getattr(load, "password_env", None) or base.password_env)
        else:
            loc = make_location(load.url, service=load.service, schema=load.schema,
                                password_env=load.password_env)
        return Path(str(loc))

    @classmethod
    def where(cls, path: Path) -> str:
        return str(parse_location(path))

    @classmethod
    def named(cls, path: Path | str, table: str | None) -> tuple[str, str | None]:
        return parse_location(path).name(table), None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.loc), "table": self.table, "mode": self.mode}

    def _where(self) -> str:
        return f"{self.loc.display} table {self.table!r}"

    # -- before anything is written ----------------------------------------------------
    def check(self, schema: pa.Schema) -> None:
        try:
            conn = _connect(self.loc, self.timeout_ms)
        except DestinationUnusable:
            raise
        except Exception as exc:
            reason = first_line(exc).removeprefix("Failed to connect: ")
            hint = (" (a password comes from PGPASSWORD, ~/.pgpass, a service file or "
                    "password_env)") if "password" in reason else ""
            raise DestinationUnusable(f"{self.loc.display}: cannot connect: {reason}{hint}; "
                                      "nothing was written") from None
        kept = False
        try:
            cur = conn.cursor()
            if not _rows(cur, "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = "
                         f"{lit(self.schema)}")[0][0]:
                raise DestinationUnusable(f"{self.loc.display}: schema {self.schema!r} does not "
                                          "exist; nothing was written")
            if self.mode != "replace":
                existing = _columns(cur, self.schema, self.table)
                if existing:
                    self._check_columns(schema, existing)
                    self._check_required(cur, schema)
            conn.rollback()
            # The job's open comes next: it takes this session instead of a new one (an
            # ADBC connect is 40-60 ms of the job's single-threaded start: a session of its
            # own to read pg_type, then the connection's). ``close`` ends it, also when no
            # open follows; a session lost meanwhile is a transient error the open retries.
            if self._conn is None:
                self._conn, self._broken, kept = conn, False, True
        finally:
            if not kept:
                conn.rollback()
                conn.close()

    def _check_columns(self, schema: pa.Schema, existing: dict[str, str]) -> None:
        for f in schema:
            if f.name not in existing:
                raise DestinationUnusable(
                    f"{self._where()}: the table has no column {f.name!r} (it has: "
                    f"{', '.join(n for n in existing if not n.startswith('_etl_'))}); map to "
                    "existing columns or load into a new table; nothing was written")
            if not castable(f.type, existing[f.name]):
                raise DestinationUnusable(
                    f"{self._where()}: column {f.name!r} is {existing[f.name]} in the table, "
                    f"and the job's {f.type} values cannot be written into it; cast it in a "
                    "transform phase or load into a new table; nothing was written")

    def _check_required(self, cur, schema: pa.Schema) -> None:
        """A NOT NULL column without a default that the job does not load would refuse
        every row: refused here instead."""
        rows = _rows(cur, "SELECT a.attname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c "
                          "ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = "
                          f"c.relnamespace WHERE n.nspname = {lit(self.schema)} AND c.relname = "
                          f"{lit(self.table)} AND a.attnum > 0 AND NOT a.attisdropped AND "
                          "a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND "
                          "a.attgenerated = '' ORDER BY a.attnum")
        missing = [n for (n,) in rows if n not in schema.names]
        if missing:
            raise DestinationUnusable(
                f"{self._where()}: column {missing[0]!r} is NOT NULL without a default and the "
                "job does not load it; map a column to it or give it a default; nothing was "
                "written")

    def open(self, schema: pa.Schema) -> None:
        self.retrying(self._create, schema)

    def _ensure(self) -> Any:
        if self._conn is None or self._broken:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:
                    pass
                self._conn = None
            self._conn = _connect(self.loc, self.timeout_ms)
            self._broken = False
        return self._conn

    def _create(self, schema: pa.Schema) -> None:
        conn = self._ensure()
        cur = conn.cursor()
        _lock(cur)
        for sql in _bookkeeping(self.schema):
            cur.execute(sql)
        if not _exists(cur, self.schema, self.write_table):
            target = _columns(cur, self.schema, self.table) if self.mode == "atomic" else {}
            if target:
                _stage_like(cur, self.schema, self.write_table, self.table, self.job_id)
            else:
                cur.execute(_create_table_sql(self.schema, self.write_table, schema))
            if self.mode == "append":
                cur.execute(f"INSERT INTO {_q(self.schema, TABLES)} (job_id, table_name, action) "
                            f"VALUES ({lit(self.job_id)}, {lit(self.table)}, 'created')")
        self._add_lineage(cur, self.write_table)
        if not self._own_table(cur):
            _ensure_lineage_index(cur, self.schema, self.write_table, self.job_id)
        self._columns = _columns(cur, self.schema, self.write_table)
        if ROW in self._columns:        # (again after a resume: the stage is there)
            self._keys = _keys(cur, self.schema, self.table)
            self._renamed = _stage_names(cur, self.schema, self.table, self.job_id)
        conn.commit()

    def _own_table(self, cur) -> bool:
        """Does the write table hold this job's rows only (a stage, or a table it created)?
        Then it needs no lineage index (ADR 0024): every row in it is the job's, so rollback
        drops it or deletes by a scan that reads what it deletes anyway. The index is built
        by the first other job that writes to the table (here, in its ``open``)."""
        if self.write_table != self.table:
            return True
        return bool(_rows(cur, f"SELECT count(*) FROM {_q(self.schema, TABLES)} WHERE job_id = "
                               f"{lit(self.job_id)} AND table_name = {lit(self.table)} AND "
                               "action = 'created'")[0][0])

    def _add_lineage(self, cur, table: str) -> None:
        existing = _columns(cur, self.schema, table)
        if all(n in existing for n, _ in LINEAGE):
            return
        for name, type_ in LINEAGE:
            if name not in existing:
                cur.execute(f"ALTER TABLE {_q(self.schema, table)} ADD COLUMN {quote(name)} {type_}")
        cur.execute(f"INSERT INTO {_q(self.schema, TABLES)} (job_id, table_name, action) "
                    f"VALUES ({lit(self.job_id)}, {lit(table)}, 'lineage_added')")

    # -- errors ---------------------------------------------------------------------------
    def classify(self, exc: Exception) -> DestinationError:
        if isinstance(exc, DestinationError):
            return exc
        message = f"{self._where()}: {first_line(exc)}"
        state = sqlstate(exc)
        if state:
            message += f" (SQLSTATE {state})"
        return DestinationBusy(message) if is_transient(exc) else DestinationFailed(message)

    def rolled_back(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except Exception:
            self._broken = True       # the session is gone: reconnect before the retry

    # -- per batch -------------------------------------------------------------------------
    def write(self, batch_number: int, batch: pa.RecordBatch, row_start: int, row_end: int, *,
              before_commit=None) -> WriteResult:
        attempts, refused = self.retrying(self._write_once, batch_number, batch, row_start,
                                          row_end, before_commit)
        return WriteResult(attempts, refused)

    def _with_lineage(self, batch: pa.RecordBatch, number: int) -> pa.RecordBatch:
        n = batch.num_rows
        batch = batch.append_column("_etl_job_id", pa.repeat(pa.scalar(self.job_id), n))
        batch = batch.append_column("_etl_batch", pa.repeat(pa.scalar(number, pa.int64()), n))
        if ROW in self._columns:
            batch = batch.append_column(ROW, pa.array(range(n), pa.int32()))
        return batch

    def _committed(self, cur, number: int) -> bool:
        return bool(_rows(cur, f"SELECT count(*) FROM {_q(self.schema, LEDGER)} WHERE job_id = "
                               f"{lit(self.job_id)} AND table_name = {lit(self.write_table)} "
                               f"AND batch = {int(number)}")[0][0])

    def _write_once(self, number, batch, row_start, row_end, before_commit):
        reconnected = self._conn is not None and self._broken
        conn = self._ensure()
        cur = conn.cursor()
        if reconnected and self._committed(cur, number):
            # the connection died after the server committed: the batch is there
            conn.rollback()
            return self._last[1] if self._last and self._last[0] == number else []
        data, cast_bad = cast_batch(batch, self._columns)
        refused = {i: RefusedRow(i, "data", None, m) for i, m in cast_bad.items()}
        if refused and not self.isolate:
            raise RowRefused(refused[min(refused)])
        try:
            refused = self._ingest(conn, cur, self._with_lineage(data, number), refused)
        except RowRefused as exc:          # on_error = "fail": said in the target's names
            raise RowRefused(self._in_target(exc.row)) from None
        if ROW in self._columns:
            refused = self._against_target(cur, number, refused)
        rows = batch.num_rows - len(refused)
        cur.execute(f"INSERT INTO {_q(self.schema, LEDGER)} (job_id, table_name, batch, row_start, "
                    f"row_end, rows) VALUES ({lit(self.job_id)}, {lit(self.write_table)}, "
                    f"{int(number)}, {int(row_start)}, {int(row_end)}, {int(rows)})")
        out = [refused[i] for i in sorted(refused)]
        if before_commit is not None:
            before_commit(out)
        self._last = (number, out)
        conn.commit()
        return out

    def _in_target(self, row: RefusedRow) -> RefusedRow:
        if not self._renamed and self.write_table == self.table:
            return row
        return RefusedRow(row.index, row.rule, row.column,
                          _in_target_words(row.message, self.write_table, self.table, self._renamed))

    def _against_target(self, cur, number: int, refused: dict[int, RefusedRow]) -> dict[int, RefusedRow]:
        """An atomic job into an existing table: rows whose key the target already holds
        are refused now (and leave the stage), and the stage's words for what it refused
        become the target's (its constraint and table names)."""
        out = {i: self._in_target(r) for i, r in refused.items()}
        dup = _already_in_target(cur, self.schema, self.write_table, self.table, number, self._keys)
        if dup and not self.isolate:
            raise RowRefused(dup[min(dup)])
        if dup:
            cur.execute(f"DELETE FROM {_q(self.schema, self.write_table)} WHERE _etl_batch = "
                        f"{int(number)} AND {quote(ROW)} IN ({', '.join(str(i) for i in dup)})")
            out.update(dup)
        return out

    def _copy(self, cur, rows: pa.RecordBatch) -> None:
        if rows.num_rows:
            cur.adbc_ingest(self.write_table, copy_stream(rows), mode="append",
                            db_schema_name=self.schema)

    def _ingest(self, conn, cur, batch: pa.RecordBatch,
                refused: dict[int, RefusedRow]) -> dict[int, RefusedRow]:
        """COPY the batch without the refused rows, finding the rows the server refuses.

        A failed COPY aborts the transaction (and ADBC cannot roll back to a savepoint
        after it), so the COPY that is kept is always the transaction's first statement.
        The first failure names its COPY line: that row is refused, and the rows after it
        are scanned in test transactions (rolled back), each COPY running from the row after
        the last refused one to the next: a batch with k refused rows costs about one extra
        pass plus k short COPYs, not k passes. Then the batch is copied for good; a row it
        still refuses (one that conflicts with an earlier row of the batch) starts again."""
        while True:
            # the positions kept: a range while nothing is refused (no list per row for the
            # batches that go through whole, nearly all of them)
            keep: Sequence[int] = range(batch.num_rows) if not refused else \
                [i for i in range(batch.num_rows) if i not in refused]
            rows = batch.take(pa.array(keep, pa.int64())) if refused else batch
            try:
                self._copy(cur, rows)
                return refused
            except Exception as exc:
                failure = row_failure(exc)
                if failure is None:
                    raise
                keep = list(keep)
                conn.rollback()
                line = failure.line if failure.line is not None and 1 <= failure.line <= len(keep) else None
                if not self.isolate:
                    raise RowRefused(failure.refused(keep[line - 1] if line else keep[0])) from None
                if line is not None:
                    refused[keep[line - 1]] = failure.refused(keep[line - 1])
                found = self._scan(conn, cur, batch, keep[line:] if line else keep)
                for index, f in found:
                    refused[index] = f.refused(index)
                if line is None and not found:
                    raise

    def _attempt(self, conn, cur, batch: pa.RecordBatch, pos: list[int]) -> RowFailure | None:
        """COPY these rows in a transaction that is rolled back; the failure, if any."""
        try:
            self._copy(cur, batch.take(pa.array(pos, pa.int64())))
            return None
        except Exception as exc:
            f = row_failure(exc)
            if f is None:
                raise
            return f
        finally:
            conn.rollback()

    def _scan(self, conn, cur, batch, positions: list[int]) -> list[tuple[int, RowFailure]]:
        found: list[tuple[int, RowFailure]] = []
        start = 0
        while start < len(positions):
            seg = positions[start:]
            f = self._attempt(conn, cur, batch, seg)
            if f is None:
                break
            if f.line is not None and 1 <= f.line <= len(seg):
                found.append((seg[f.line - 1], f))
                start += f.line
            else:
                found += self._bisect(conn, cur, batch, seg)
                break
        return found

    def _bisect(self, conn, cur, batch, positions: list[int]) -> list[tuple[int, RowFailure]]:
        """Rows refused without a line number: halves tried alone, each in a transaction
        rolled back after it."""
        f = self._attempt(conn, cur, batch, positions)
        if f is None:
            return []
        if len(positions) == 1:
            return [(positions[0], f)]
        mid = len(positions) // 2
        return self._bisect(conn, cur, batch, positions[:mid]) + \
            self._bisect(conn, cur, batch, positions[mid:])

    # -- the end of an atomic or replace job ----------------------------------------------
    def publish(self, schema: pa.Schema) -> None:
        if self.mode != "append":
            self.retrying(self._publish_once, schema)

    def _publish_once(self, schema: pa.Schema) -> None:
        conn = self._ensure()
        cur = conn.cursor()
        cur.execute(UNBOUNDED)
        _lock(cur)
        s = self.schema
        if not _exists(cur, s, self.write_table):
            conn.rollback()
            return                                      # published before a crash
        stage, target = _q(s, self.write_table), _q(s, self.table)
        tables = _q(s, TABLES)
        if self.mode == "replace" or not _exists(cur, s, self.table):
            backup = None
            if _exists(cur, s, self.table):
                backup = replaced_name(self.job_id, self.table)
                cur.execute(f"ALTER TABLE {target} RENAME TO {quote(backup)}")
            cur.execute(f"INSERT INTO {tables} (job_id, table_name, action, backup_name) VALUES "
                        f"({lit(self.job_id)}, {lit(self.table)}, "
                        f"{lit('replaced' if backup else 'created')}, "
                        f"{lit(backup) if backup else 'NULL'})")
            cur.execute(f"ALTER TABLE {stage} RENAME TO {quote(self.table)}")
            # the job's rows only: no lineage index until another job writes (_own_table)
        else:
            self._add_lineage(cur, self.table)
            _ensure_lineage_index(cur, s, self.table, self.job_id)
            names = ", ".join(quote(f.name) for f in schema) + ", " + ", ".join(
                quote(n) for n, _ in LINEAGE)
            cur.execute(f"INSERT INTO {target} ({names}) SELECT {names} FROM {stage}")
            cur.execute(f"DROP TABLE {stage}")
        cur.execute(f"UPDATE {_q(s, LEDGER)} SET table_name = {lit(self.table)} WHERE job_id = "
                    f"{lit(self.job_id)} AND table_name = {lit(self.write_table)}")
        conn.commit()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
            except Exception:
                pass
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    # -- the recovery half -----------------------------------------------------------------
    def ledger(self) -> list[LedgerEntry]:
        return self.read_ledger(self.path, self.job_id, tables=self.ledger_names())

    def ledger_of(self, first: int, last: int) -> list[LedgerEntry]:
        """One query for the part's batches (the ledger's key is job, table, batch: a seek
        per table), not the job's whole ledger per part."""
        return self.read_ledger(self.path, self.job_id, (first, last), tables=self.ledger_names())

    @classmethod
    def read_ledger(cls, path: Path, job_id: str, batches: tuple[int, int] | None = None, *,
                    tables: tuple[str, ...] | None = None) -> list[LedgerEntry]:
        loc = parse_location(path)
        try:
            conn = _connect(loc)
        except DestinationUnusable:
            raise
        except Exception as exc:
            error = DestinationBusy if is_transient(exc) else DestinationFailed
            raise error(f"{loc.display}: cannot read the ledger: {first_line(exc)}") from None
        try:
            cur = conn.cursor()
            if not _exists(cur, loc.schema, LEDGER):
                return []
            within = "" if batches is None else f" AND batch BETWEEN {int(batches[0])} AND {int(batches[1])}"
            if tables is not None:
                within = f" AND table_name IN ({', '.join(lit(t) for t in tables)}){within}"
            rows = _rows(cur, f"SELECT batch, row_start, row_end, rows, table_name FROM "
                              f"{_q(loc.schema, LEDGER)} WHERE job_id = {lit(job_id)}{within} "
                              "ORDER BY batch")
            return [LedgerEntry(*r) for r in rows]
        finally:
            conn.rollback()
            conn.close()

    @classmethod
    def rollback(cls, path: Path, job_id: str, *, after_batch: int | None = None,
                 dry_run: bool = False, timeout_ms: int = 30_000) -> RollbackReport:
        loc = parse_location(path)
        report = RollbackReport(str(loc), cls.kind)
        try:
            conn = _connect(loc, timeout_ms)
        except DestinationUnusable:
            raise
        except Exception as exc:
            error = DestinationBusy if is_transient(exc) else DestinationFailed
            raise error(f"{loc.display}: rollback of job {job_id} failed: {first_line(exc)}") from None
        try:
            cur = conn.cursor()
            cur.execute(UNBOUNDED)
            _lock(cur)
            _rollback(cur, loc.schema, job_id, after_batch, dry_run, report)
            if dry_run:
                conn.rollback()
            else:
                conn.commit()
        except Exception as exc:
            try:
                conn.rollback()
            except Exception:
                pass
            error = DestinationBusy if is_transient(exc) else DestinationFailed
            raise error(f"{loc.display}: rollback of job {job_id} failed: {first_line(exc)}") from exc
        finally:
            conn.close()
        return report

    @classmethod
    def leftovers(cls, path: Path) -> list[Leftover]:
        loc = parse_location(path)
        conn = _connect(loc)
        try:
            names = [n for (n,) in _rows(conn.cursor(), "SELECT c.relname FROM pg_catalog.pg_class c "
                                         "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                                         f"WHERE n.nspname = {lit(loc.schema)} AND c.relkind = 'r'")]
        finally:
            conn.rollback()
            conn.close()
        out = []
        for name in names:
            for prefix, what in ((STAGE_PREFIX, "stage"), (REPLACED_PREFIX, "replaced")):
                if name.startswith(prefix):
                    out.append(Leftover(name, name[len(prefix):].split("_", 1)[0], what))
        return out

    @classmethod
    def remove_leftover(cls, path: Path, leftover: Leftover, timeout_ms: int = 30_000) -> None:
        loc = parse_location(path)
        conn = _connect(loc, timeout_ms)
        try:
            conn.cursor().execute(f"DROP TABLE IF EXISTS {_q(loc.schema, leftover.name)}")
            conn.commit()
        finally:
            conn.close()


# -- rollback --------------------------------------------------------------------------
def _foreign_rows(cur, schema: str, table: str, job_id: str) -> bool:
    """A row of no job or another job in the table? Three probes of the lineage index; a
    table without one (it held one job's rows, ADR 0024) is read once, up to such a row."""
    t = _q(schema, table)
    j = lit(job_id)
    if _lineage_index(cur, schema, table) is None:
        return bool(_rows(cur, f"SELECT EXISTS (SELECT 1 FROM {t} WHERE _etl_job_id IS DISTINCT "
                               f"FROM {j})::int")[0][0])
    return bool(_rows(cur, f"SELECT (EXISTS (SELECT 1 FROM {t} WHERE _etl_job_id IS NULL) OR "
                           f"EXISTS (SELECT 1 FROM {t} WHERE _etl_job_id < {j}) OR "
                           f"EXISTS (SELECT 1 FROM {t} WHERE _etl_job_id > {j}))::int")[0][0])


def _whole(cur, schema: str, table: str, job_id: str) -> bool:
    if table.startswith(f"{STAGE_PREFIX}{job_id}_"):
        return True
    if not _exists(cur, schema, TABLES):
        return False
    made = _rows(cur, f"SELECT count(*) FROM {_q(schema, TABLES)} WHERE job_id = {lit(job_id)} AND "
                      f"table_name = {lit(table)} AND action IN ('created', 'replaced')")[0][0]
    if not made:
        return False
    others = _rows(cur, f"SELECT count(*) FROM (SELECT 1 FROM {_q(schema, LEDGER)} WHERE table_name = "
                        f"{lit(table)} AND job_id <> {lit(job_id)} LIMIT 1) AS o")[0][0]
    return not others and not _foreign_rows(cur, schema, table, job_id)


def _rollback(cur, schema: str, job_id: str, after_batch: int | None, dry_run: bool,
              report: RollbackReport) -> None:
    if not _exists(cur, schema, LEDGER):
        return
    limit = -1 if after_batch is None else int(after_batch)
    j = lit(job_id)
    per_table = _rows(cur, f"SELECT table_name, count(*), coalesce(sum(rows), 0) FROM "
                           f"{_q(schema, LEDGER)} WHERE job_id = {j} AND batch > {limit} "
                           "GROUP BY table_name ORDER BY table_name")
    report.batches = sum(n for _, n, _ in per_table)
    for table, _, rows in per_table:
        if not _exists(cur, schema, table):
            continue
        if after_batch is None and _whole(cur, schema, table, job_id):
            report.rows[table] = int(rows)
            report.dropped.append(table)
            if not dry_run:
                cur.execute(f"DROP TABLE {_q(schema, table)}")
            continue
        where = f"FROM {_q(schema, table)} WHERE _etl_job_id = {j} AND _etl_batch > {limit}"
        if dry_run:
            report.rows[table] = int(_rows(cur, f"SELECT count(*) {where}")[0][0])
        else:
            cur.execute(f"DELETE {where}")
            report.rows[table] = max(int(cur.rowcount or 0), 0)
    if not dry_run:
        cur.execute(f"DELETE FROM {_q(schema, LEDGER)} WHERE job_id = {j} AND batch > {limit}")
    if after_batch is None:
        _undo_tables(cur, schema, job_id, report, dry_run)


def _undo_tables(cur, schema: str, job_id: str, report: RollbackReport, dry_run: bool) -> None:
    prefix = f"{STAGE_PREFIX}{job_id}_"
    stages = [n for (n,) in _rows(cur, "SELECT c.relname FROM pg_catalog.pg_class c JOIN "
                                       "pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE "
                                       f"n.nspname = {lit(schema)} AND c.relkind = 'r' AND "
                                       f"left(c.relname, {len(prefix)}) = {lit(prefix)}")]
    for name in stages:
        if name not in report.dropped:
            report.dropped.append(name)
        if not dry_run:
            cur.execute(f"DROP TABLE IF EXISTS {_q(schema, name)}")
    if not _exists(cur, schema, TABLES):
        return
    for table, action, backup in _rows(cur, f"SELECT table_name, action, backup_name FROM "
                                            f"{_q(schema, TABLES)} WHERE job_id = {lit(job_id)}"):
        if action == "replaced" and backup and _exists(cur, schema, backup):
            report.restored.append(table)
            if table in report.dropped:
                report.dropped.remove(table)
            if not dry_run:
                cur.execute(f"DROP TABLE IF EXISTS {_q(schema, table)}")
                cur.execute(f"ALTER TABLE {_q(schema, backup)} RENAME TO {quote(table)}")
        elif action == "lineage_added" and _exists(cur, schema, table):
            _drop_lineage(cur, schema, table, job_id, report, dry_run)
        elif (action == "created" and table not in report.dropped and _exists(cur, schema, table)
              and not _foreign_rows(cur, schema, table, job_id)):
            report.dropped.append(table)
            if not dry_run:
                cur.execute(f"DROP TABLE {_q(schema, table)}")
    if not dry_run:
        cur.execute(f"DELETE FROM {_q(schema, TABLES)} WHERE job_id = {lit(job_id)}")


def _drop_lineage(cur, schema: str, table: str, job_id: str, report: RollbackReport,
                  dry_run: bool) -> None:
    """The job added the lineage columns to a table made before etlconsole: when no other
    job's rows rely on them, they go again (a view using them keeps them)."""
    t, j = _q(schema, table), lit(job_id)
    tagged = _rows(cur, f"SELECT (EXISTS (SELECT 1 FROM {t} WHERE _etl_job_id < {j}) OR "
                        f"EXISTS (SELECT 1 FROM {t} WHERE _etl_job_id > {j}))::int")[0][0]
    if tagged:
        return
    deps = _rows(cur, "SELECT count(*) FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attribute a "
                      "ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid WHERE d.refobjid = "
                      f"{lit(t)}::regclass AND a.attname IN ('_etl_job_id', '_etl_batch') "
                      "AND d.classid = 'pg_catalog.pg_rewrite'::regclass")[0][0]
    if deps:
        return
    if not dry_run:
        cur.execute(f"ALTER TABLE {t} DROP COLUMN IF EXISTS _etl_batch, DROP COLUMN IF EXISTS _etl_job_id")
    report.dropped.append(f"{table}.{', '.join(n for n, _ in LINEAGE)}")
