"""The postgres destination's pure parts (no server): locations, secrets, types, errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from etlconsole.engine.destinations import get
from etlconsole.engine.destinations.postgres import (RowFailure, castable, cast_batch, ident,
                                                     is_transient, make_location, masked,
                                                     parse_location, pg_type, row_failure)
from etlconsole.errors import UserError


@pytest.mark.parametrize("url, stored", [
    ("postgresql://etl@db:5432/wh", "postgresql://etl@db:5432/wh?schema=public"),
    ("postgres://etl@db/wh?sslmode=require", "postgresql://etl@db/wh?sslmode=require&schema=public"),
    ("postgresql:///wh", "postgresql://?dbname=wh&schema=public"),
    ("postgresql://?service=wh", "postgresql://?service=wh&schema=public"),
])
def test_a_location_survives_the_job_record_and_a_path(url, stored):
    loc = make_location(url)
    assert str(loc) == stored
    for again in (stored, Path(stored)):              # a Path folds // to /
        back = parse_location(again)
        assert (back.url, back.schema, str(back)) == (loc.url, loc.schema, stored)


def test_schema_password_env_and_service_are_kept_apart_from_the_url():
    loc = make_location("postgresql://etl@db/wh", schema="sales", password_env="PW")
    assert loc.url == "postgresql://etl@db/wh"
    assert str(loc) == "postgresql://etl@db/wh?schema=sales&password_env=PW"
    assert make_location(None, service="wh").url == "postgresql://?service=wh"


@pytest.mark.parametrize("url", ["postgresql://etl:s3cret@db/wh", "postgresql://etl@db/wh?password=s3cret",
                                 "postgresql://etl:s3cret@db/wh?schema=x"])
def test_a_password_in_the_url_is_refused_without_echoing_it(url):
    with pytest.raises(UserError, match="a password in the URL is refused") as e:
        make_location(url)
    assert "s3cret" not in str(e.value) and "***" in str(e.value)
    assert "s3cret" not in masked(url)


def test_password_env_is_read_at_connect_time_only(monkeypatch):
    loc = make_location("postgresql://etl@db/wh", password_env="ETL_PW_TEST")
    monkeypatch.setenv("ETL_PW_TEST", "p w&x")
    assert loc.conninfo() == "postgresql://etl@db/wh?password=p+w%26x"
    assert "p w" not in str(loc)


def test_not_a_postgres_url_is_a_user_error():
    with pytest.raises(UserError, match="not a PostgreSQL URL"):
        make_location("mysql://x@y/z")


def test_types_and_casts():
    assert pg_type(pa.int64()) == "bigint" and pg_type(pa.float64()) == "double precision"
    assert pg_type(pa.bool_()) == "boolean" and pg_type(pa.date32()) == "date"
    assert pg_type(pa.timestamp("us")) == "timestamp without time zone"
    assert pg_type(pa.timestamp("us", tz="+02:00")) == "timestamp with time zone"
    assert pg_type(pa.string()) == "text"
    assert castable(pa.int64(), "integer") and castable(pa.int64(), "character varying(10)")
    assert not castable(pa.string(), "integer") and not castable(pa.int64(), "numeric")
    batch = pa.record_batch({"a": pa.array([1, 2**40, None]), "b": pa.array([1.5, 2.5, 3.5])})
    out, bad = cast_batch(batch, {"a": "integer", "b": "real"})
    assert out.schema.types == [pa.int32(), pa.float32()]
    assert list(bad) == [1] and "out of range for type integer" in bad[1]
    assert out.column(0).to_pylist() == [1, None, None]


class _Err(Exception):
    def __init__(self, message, sqlstate, details):
        super().__init__(message)
        self.sqlstate, self.details = sqlstate, details


def test_a_refused_row_is_read_from_the_copy_error():
    exc = _Err("INTEGRITY: [libpq] …", "23505", [
        (b"PG_DIAG_CONTEXT", b"COPY x, line 4"), (b"PG_DIAG_SQLSTATE", b"23505"),
        (b"PG_DIAG_MESSAGE_PRIMARY", b'duplicate key value violates unique constraint "x_pkey"'),
        (b"PG_DIAG_MESSAGE_DETAIL", b"Key (a)=(2) already exists.")])
    f = row_failure(exc)
    assert isinstance(f, RowFailure) and f.line == 4 and f.rule == "unique" and f.column == "a"
    assert f.message.endswith("Key (a)=(2) already exists. (SQLSTATE 23505)")
    assert row_failure(_Err("x", "22P02", [(b"PG_DIAG_CONTEXT", b"COPY x, line 1, column q")])).rule == "data"
    assert row_failure(_Err("x", "57P01", [])) is None


@pytest.mark.parametrize("state, transient", [("57P01", True), ("40001", True), ("40P01", True),
                                              ("55P03", True), ("53300", True), ("08006", True),
                                              ("23505", False), ("42P01", False)])
def test_transient_sqlstates(state, transient):
    assert is_transient(_Err("x", state, [])) is transient


def test_connection_texts_are_transient():
    assert is_transient(_Err("IO: server closed the connection unexpectedly", None, []))


def test_long_names_stay_within_63_bytes_and_distinct():
    a, b = ident("_etl_stage_abcd1234_" + "x" * 60), ident("_etl_stage_abcd1234_" + "x" * 61)
    assert len(a) <= 63 and len(b) <= 63 and a != b and a.startswith("_etl_stage_abcd1234_")


def test_registered_with_its_capabilities():
    cls = get("postgres")
    assert cls.has_tables and cls.refuses_rows and cls.atomic_publish and cls.locator == "url"
    assert cls.lineage_columns == ("_etl_job_id", "_etl_batch")


def test_built_in_found_without_entry_points_and_not_replaceable(monkeypatch):
    """A source tree without installed metadata still knows postgres (issue 14), and no
    plugin can take its name."""
    import importlib.metadata

    from etlconsole.engine import destinations
    from etlconsole.engine.destinations import Destination
    from etlconsole.engine.destinations.postgres import PostgresDestination

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: [])
    monkeypatch.setattr(destinations, "_refs", None)
    monkeypatch.setattr(destinations, "_registered", {})
    assert "postgres" in destinations.BUILTIN
    assert destinations.available()[:4] == ["sqlite", "parquet", "csv", "postgres"]
    assert destinations.get("postgres") is PostgresDestination

    class Impostor(Destination):
        kind = "postgres"

    with pytest.raises(ValueError, match="built in"):
        destinations.register("postgres", Impostor)
