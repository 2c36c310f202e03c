"""The postgres destination through the real CLI: the sample pipeline, secrets, types,
modes, row isolation and rollback, against the suite's own server (pg.py)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from faults.faultkit import Lab

from .pg import PASSWORD, PgServer
from .pgkit import PgLab, pg_digest, sqlite_digest, user_tables


def test_sample_pipeline_equals_sqlite_and_keeps_no_secret(tmp_path, pg: PgServer, pgdb: str,
                                                           orders_pg_csv):
    ref = Lab(tmp_path / "sqlite", orders_pg_csv)
    ref_summary = ref.run()
    lab = PgLab(tmp_path / "pg", orders_pg_csv, pg, pgdb)
    run = lab.cli("run", lab.pipeline, "--no-ui", "--json")
    assert run.returncode == 0, str(run)
    assert PASSWORD not in run.stdout + run.stderr            # logs go to stderr
    summary = run.last_json()
    assert summary["status"] == "succeeded"
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert summary[key] == ref_summary[key], key
    assert pg_digest(pg, pgdb) == sqlite_digest(ref.dest)
    assert lab.rejects(summary["job_id"]) == ref.rejects(ref_summary["job_id"])
    # types as the issue asks
    types = dict(lab.q("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                       "attrelid = 'orders'::regclass AND attnum > 0"))
    assert types["id"] == "bigint" and types["unit_price"] == "double precision"
    assert types["ordered_on"] == "date" and types["email"] == "text"
    assert types["shipped_at"] == "timestamp without time zone"
    assert types["_etl_job_id"] == "text" and types["_etl_batch"] == "bigint"
    # the ledger: one row per batch, in the target schema, summing to the rows loaded
    assert lab.q(f"SELECT sum(rows)::bigint FROM public._etl_loads WHERE job_id = '{summary['job_id']}'") \
        == [(summary["rows_loaded"],)]
    # the table holds this job's rows only: no lineage index yet (ADR 0024); a second job
    # that appends builds it before its first batch
    assert lab.q("SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'") == [(0,)]
    # secrets: the store, every output and the job record name the URL without the password
    show = lab.cli("show", summary["job_id"])
    jobs = lab.cli("jobs", "--json")
    assert show.returncode == 0, str(show)
    # named as people read it: host, database, schema.table (no user, port or password)
    assert f"dest       postgres: postgres://127.0.0.1/{pgdb} public.orders mode append" in show.stdout
    preview = lab.cli("rollback", summary["job_id"], "--dry-run")
    assert f"postgres://127.0.0.1/{pgdb} public.orders: would drop the table" in preview.stdout, \
        str(preview)
    for text in (show.stdout, show.stderr, jobs.stdout, json.dumps(summary)):
        assert PASSWORD not in text
    for f in lab.state.parent.rglob("*"):
        if f.is_file():
            assert PASSWORD.encode() not in f.read_bytes(), f


def test_password_in_url_is_refused(tmp_path, pg: PgServer, pgdb: str, orders_pg_csv):
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb)
    for args in (["--dest", pg.secret_url(pgdb)], []):
        if not args:
            lab.pipeline.write_text(lab.pipeline.read_text().replace(
                pg.url(pgdb), pg.secret_url(pgdb)))
        res = lab.cli("run", lab.pipeline, "--no-ui", *args)
        assert res.returncode == 2, str(res)
        assert "a password in the URL is refused" in res.stderr
        assert PASSWORD not in res.stderr + res.stdout
        assert "Traceback" not in res.stderr
    assert user_tables(pg, pgdb) == []
    assert not lab.state.exists() or PASSWORD.encode() not in lab.state.read_bytes()


def test_dest_overrides_url_and_password_env(tmp_path, pg: PgServer, orders_pg_csv):
    first, other = pg.new_database(), pg.new_database()
    lab = PgLab(tmp_path, orders_pg_csv, pg, first)
    lab.env = {}                                # no PGPASSWORD: password_env only
    lab.pipeline.write_text(lab.pipeline.read_text().replace(
        'table = "orders"', 'table = "orders"\npassword_env = "ETL_WAREHOUSE_PW"'))
    res = lab.cli("run", lab.pipeline, "--no-ui", "--dest", pg.url(other))
    assert res.returncode == 2, str(res)
    assert "ETL_WAREHOUSE_PW" in res.stderr and "not set" in res.stderr
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json", "--dest", pg.url(other),
                  env={"ETL_WAREHOUSE_PW": PASSWORD})
    assert res.returncode == 0, str(res)
    summary = res.last_json()
    assert "password_env=ETL_WAREHOUSE_PW" in summary["destination"]["path"]
    assert user_tables(pg, first) == []
    assert pg.execute("SELECT count(*) FROM orders", db=other) == [(summary["rows_loaded"],)]
    # the recovery half finds the password the same way
    res = lab.cli("rollback", summary["job_id"], "--yes", env={"ETL_WAREHOUSE_PW": PASSWORD})
    assert res.returncode == 0, str(res)
    assert "orders" not in user_tables(pg, other)


def test_wrong_password_is_a_clear_error(tmp_path, pg: PgServer, pgdb: str, orders_pg_csv):
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb)
    res = lab.cli("run", lab.pipeline, "--no-ui", env={"PGPASSWORD": "nope"})
    assert res.returncode == 2, str(res)
    assert "cannot connect" in res.stderr and "password authentication failed" in res.stderr
    assert "Traceback" not in res.stderr


EXISTING = """CREATE TABLE orders (
    id integer PRIMARY KEY, customer_id integer, email varchar(200), customer_name text,
    status text, quantity smallint CONSTRAINT qty_rule CHECK (quantity < 50 OR id % 10 <> 7),
    unit_price real, total double precision,
    currency character(3), ordered_on date, shipped_at timestamptz, country text)"""


def test_existing_table_gets_its_exact_types_and_refused_rows(tmp_path, pg: PgServer, pgdb: str,
                                                                orders_pg_csv):
    pg.execute(EXISTING, db=pgdb)
    # a row of a hand-made import already holds id 5: the job's id 5 is refused (unique)
    pg.execute("INSERT INTO orders (id, status) VALUES (5, 'hand')", db=pgdb)
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb)
    summary = lab.run()
    assert summary["status"] == "succeeded"
    rejects = [r for r in lab.cli("rejects", summary["job_id"], "--json").json_lines()
               if r["phase"] == "load"]
    rules = Counter(r["rule"] for r in rejects)
    assert rules["unique"] == 1 and rules["check"] > 0, rules
    unique = next(r for r in rejects if r["rule"] == "unique")
    assert "duplicate key value violates unique constraint" in unique["message"]
    assert "23505" in unique["message"] and unique["column"] == "id"
    check = next(r for r in rejects if r["rule"] == "check")
    assert "23514" in check["message"] and check["values"]["quantity"] == 50
    loaded = lab.q("SELECT count(*) FROM orders WHERE _etl_job_id IS NOT NULL")[0][0]
    assert loaded == summary["rows_loaded"]
    assert summary["rows_read"] == summary["rows_loaded"] + summary["rows_rejected"]
    # a full rollback removes the job's rows and its lineage columns; the hand row stays
    lab.rollback(summary["job_id"])
    assert lab.q("SELECT id, status FROM orders") == [(5, "hand")]
    cols = [c for (c,) in lab.q("SELECT attname FROM pg_attribute WHERE attrelid = 'orders'::regclass "
                                "AND attnum > 0 AND NOT attisdropped")]
    assert "_etl_job_id" not in cols


def test_on_error_fail_fails_the_job_resumably(tmp_path, pg: PgServer, pgdb: str, orders_pg_csv):
    pg.execute(EXISTING, db=pgdb)
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb)
    lab.pipeline.write_text(lab.pipeline.read_text() + 'on_error = "fail"\n')   # the load's
    summary = lab.run(expect=1)
    assert summary["status"] == "failed" and "violates check constraint" in summary["error"]
    # nothing of the refused row's batch is there; the batches before it are, and resume
    # (with the constraint gone) finishes the job exactly
    pg.execute("ALTER TABLE orders DROP CONSTRAINT qty_rule", db=pgdb)
    done = lab.resume(summary["job_id"])
    assert done["status"] == "succeeded"
    assert lab.q("SELECT count(*) FROM orders")[0][0] == done["rows_loaded"]
    assert lab.q("SELECT count(*), count(DISTINCT id) FROM orders")[0] == (done["rows_loaded"],) * 2


def test_on_error_fail_in_atomic_mode_names_the_target(tmp_path, pg: PgServer, pgdb: str,
                                                       orders_pg_csv):
    pg.execute(EXISTING, db=pgdb)
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb, mode="atomic")
    lab.pipeline.write_text(lab.pipeline.read_text() + 'on_error = "fail"\n')   # the load's
    summary = lab.run(expect=1)
    assert summary["status"] == "failed", summary
    assert 'new row for relation "orders" violates check constraint "qty_rule"' in summary["error"]
    assert "_etl_" not in summary["error"]                   # never the stage's names
    assert lab.q("SELECT count(*) FROM orders") == [(0,)]    # nothing published


COLUMNS = ("id bigint, customer_id bigint, email text, customer_name text, status text, "
           "quantity bigint, unit_price float8, total float8, currency text, ordered_on date, "
           "shipped_at timestamp, country text")


@pytest.mark.parametrize("ddl, needle", [
    (f"CREATE TABLE orders ({COLUMNS.replace('email text', 'email integer')})",
     "column 'email' is integer"),
    (f"CREATE TABLE orders ({COLUMNS.replace('ordered_on date', 'ordered_on boolean')})",
     "column 'ordered_on' is boolean"),
    ("CREATE TABLE orders (id bigint)", "has no column 'customer_id'"),
    (f"CREATE TABLE orders ({COLUMNS}, region text NOT NULL)",
     "column 'region' is NOT NULL without a default"),
    (f"CREATE TABLE orders ({COLUMNS.replace('id bigint', 'id numeric')})", "column 'id' is numeric"),
])
def test_check_refuses_an_incompatible_table_before_writing(tmp_path, pg: PgServer, pgdb: str,
                                                            orders_pg_csv, ddl, needle):
    pg.execute(ddl, db=pgdb)
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb)
    res = lab.cli("run", lab.pipeline, "--no-ui")
    assert res.returncode == 2, str(res)
    assert needle in res.stderr and "nothing was written" in res.stderr
    assert user_tables(pg, pgdb) == ["orders"]
    assert pg.execute("SELECT count(*) FROM orders", db=pgdb) == [(0,)]


def test_atomic_and_replace_publish_and_roll_back(tmp_path, pg: PgServer, pgdb: str, orders_pg_csv):
    pg.execute("CREATE TABLE orders (id bigint, note text)", db=pgdb)
    pg.execute("INSERT INTO orders VALUES (1, 'before')", db=pgdb)
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb, mode="replace")
    summary = lab.run()
    job = summary["job_id"]
    assert lab.q("SELECT count(*) FROM orders") == [(summary["rows_loaded"],)]
    assert f"_etl_replaced_{job}_orders" in user_tables(pg, pgdb)
    assert not [t for t in user_tables(pg, pgdb) if t.startswith("_etl_stage_")]
    lab.rollback(job)
    assert lab.q("SELECT * FROM orders") == [(1, "before")]
    assert user_tables(pg, pgdb) == ["_etl_loads", "_etl_tables", "orders"]
    # atomic into a new table: nothing visible before the publish, then all of it
    atomic = PgLab(tmp_path / "atomic", orders_pg_csv, pg, pgdb, mode="atomic", table="fresh")
    summary = atomic.run()
    assert pg.execute("SELECT count(*) FROM fresh", db=pgdb) == [(summary["rows_loaded"],)]
    atomic.rollback(summary["job_id"])
    assert "fresh" not in user_tables(pg, pgdb)


def test_check_command_connects_and_checks_the_table_without_writing(tmp_path, pg: PgServer,
                                                                      pgdb: str, orders_pg_csv):
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb)
    ok = lab.cli("check", lab.pipeline)
    assert ok.returncode == 0, str(ok)
    assert f"-> postgres postgres://127.0.0.1/{pgdb} public.orders (append)" in ok.stdout
    assert user_tables(pg, pgdb) == []                     # nothing written, not even a ledger
    bad = lab.cli("check", lab.pipeline, env={"PGPASSWORD": "nope"})
    assert bad.returncode == 2 and "cannot connect" in bad.stderr and "nope" not in bad.stderr
    # an existing compatible table with a row: checked (types read), left exactly as it was
    pg.execute(f"CREATE TABLE orders ({COLUMNS})", db=pgdb)
    pg.execute("INSERT INTO orders (id) VALUES (7)", db=pgdb)
    columns = "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0"
    before = pg.execute(columns, db=pgdb)
    assert lab.cli("check", lab.pipeline).returncode == 0
    assert pg.execute(columns, db=pgdb) == before          # no lineage columns added
    assert user_tables(pg, pgdb) == ["orders"] and lab.q("SELECT id FROM orders") == [(7,)]
    pg.execute("DROP TABLE orders", db=pgdb)
    pg.execute(f"CREATE TABLE orders ({COLUMNS.replace('email text', 'email integer')})", db=pgdb)
    res = lab.cli("check", lab.pipeline)
    assert res.returncode == 2 and "column 'email' is integer" in res.stderr, str(res)
    # a schema that does not exist: said, nothing created
    lab.pipeline.write_text(lab.pipeline.read_text().replace('table = "orders"',
                                                             'table = "orders"\nschema = "nowhere"'))
    res = lab.cli("check", lab.pipeline)
    assert res.returncode == 2 and "schema 'nowhere' does not exist" in res.stderr, str(res)
    assert user_tables(pg, pgdb) == ["orders"]


def test_many_refused_rows_in_every_batch_are_found_exactly(tmp_path, pg: PgServer, orders_pg_csv):
    """A re-import: 1 row in 50 is already in the table (unique). Each batch refuses its
    dozens of rows exactly, and loads the rest."""
    ref_db, db = pg.new_database(), pg.new_database()
    ref = PgLab(tmp_path / "ref", orders_pg_csv, pg, ref_db).run()
    pg.execute(f"CREATE TABLE orders ({COLUMNS.replace('id bigint,', 'id bigint PRIMARY KEY,', 1)})",
               db=db)
    ids = [i for (i,) in pg.execute("SELECT id FROM orders WHERE id % 50 = 3", db=ref_db)]
    assert len(ids) > 300
    pg.execute(f"INSERT INTO orders (id) SELECT unnest(ARRAY{ids}::bigint[])", db=db)
    lab = PgLab(tmp_path / "lab", orders_pg_csv, pg, db)
    summary = lab.run()
    assert summary["rows_loaded"] == ref["rows_loaded"] - len(ids)
    refused = [r for r in lab.cli("rejects", summary["job_id"], "--json").json_lines()
               if r["phase"] == "load"]
    assert len(refused) == len(ids)
    assert {r["rule"] for r in refused} == {"unique"}
    assert sorted(r["values"]["id"] for r in refused) == sorted(ids)
    assert pg_digest(pg, db, where=f"WHERE _etl_job_id = '{summary['job_id']}'") == \
        pg_digest(pg, ref_db, where="WHERE id % 50 <> 3")


def test_rerun_from_a_checkpoint_replaces_the_jobs_rows(tmp_path, pg: PgServer, pgdb: str,
                                                        orders_pg_csv):
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb)
    text = lab.pipeline.read_text()
    assert text.count('type = "validate"') == 1
    lab.pipeline.write_text(text.replace('type = "validate"', 'type = "validate"\ncheckpoint = true'))
    first = lab.run()
    before = pg_digest(pg, pgdb)
    res = lab.cli("rerun", first["job_id"], "--from", "validate", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    second = res.last_json()
    assert second["status"] == "succeeded" and second["job_id"] != first["job_id"]
    assert pg_digest(pg, pgdb) == before
    assert lab.q("SELECT DISTINCT _etl_job_id FROM orders") == [(second["job_id"],)]


@pytest.mark.parametrize("key", ["orders_pkey", "orders_id_uq"])
def test_atomic_into_an_existing_table_refuses_violations_at_load(tmp_path, pg: PgServer, pgdb: str,
                                                                  orders_pg_csv, key):
    """The stage carries the target's constraints: a row breaking one is a reject of phase
    load with PostgreSQL's message (in the target's names) and the rule of its SQLSTATE,
    and the rest publishes; before, the publish failed on the first such row. The key is
    a primary key, or a unique index that is no constraint."""
    ddl = EXISTING.replace("country text)", "country text, origin text NOT NULL DEFAULT 'etl')")
    if key == "orders_id_uq":
        ddl = ddl.replace("id integer PRIMARY KEY", "id integer")
    pg.execute(ddl, db=pgdb)
    if key == "orders_id_uq":
        pg.execute("CREATE UNIQUE INDEX orders_id_uq ON orders (id)", db=pgdb)
    pg.execute("INSERT INTO orders (id, status) VALUES (5, 'hand')", db=pgdb)
    lab = PgLab(tmp_path, orders_pg_csv, pg, pgdb, mode="atomic")
    summary = lab.run()
    assert summary["status"] == "succeeded", summary
    job = summary["job_id"]
    rejects = [r for r in lab.cli("rejects", job, "--json").json_lines() if r["phase"] == "load"]
    rules = Counter(r["rule"] for r in rejects)
    assert rules["unique"] == 1 and rules["check"] > 0, rules
    unique = next(r for r in rejects if r["rule"] == "unique")
    assert unique["message"] == (f'duplicate key value violates unique constraint "{key}": '
                                 'Key (id)=(5) already exists. (SQLSTATE 23505)')
    assert unique["column"] == "id" and unique["values"]["id"] == 5
    check = next(r for r in rejects if r["rule"] == "check")
    assert 'new row for relation "orders" violates check constraint "qty_rule"' in check["message"]
    assert "23514" in check["message"] and check["values"]["quantity"] >= 50
    assert not [r for r in rejects if "_etl_" in r["message"]]      # never the stage's names
    assert summary["rows_read"] == summary["rows_loaded"] + summary["rows_rejected"]
    # published: the job's rows, the defaults of the columns it does not load, no _etl_row
    assert lab.q(f"SELECT count(*), min(origin), max(origin) FROM orders WHERE _etl_job_id = "
                 f"'{job}'") == [(summary["rows_loaded"], "etl", "etl")]
    assert lab.q("SELECT count(*) FROM orders") == [(summary["rows_loaded"] + 1,)]
    assert lab.q("SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND "
                 "attname = '_etl_row'") == [(0,)]
    assert not [t for t in user_tables(pg, pgdb) if t.startswith("_etl_stage_")]
    lab.rollback(job)
    assert lab.q("SELECT id, status FROM orders") == [(5, "hand")]
