"""The sample pipeline over ~20,000 generated orders with known defects, end to end.

One run (module fixture) with small chunks and batches, so the job spans several load
batches and checkpoints; the tests then read the summary, the state store through the
CLI (jobs, show, checkpoints, rejects) and the SQLite warehouse directly, and check
everything against the generator's manifest and an independent parse of the file with
the ``csv`` module.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pytest

from etlconsole.sample import COLUMNS, DEFECT_KINDS, SAMPLE_PIPELINE_TOML, write_orders_csv

from .helpers import Cli, assert_summary, query

ROWS = 20_000
SEED = 11
# Several chunks, load batches and checkpoints instead of one of each.
SMALL_BATCHES = {"PIPELINE_CHUNK_SIZE": "2000", "PIPELINE_BATCH_SIZE_MIN": "1000",
                 "PIPELINE_BATCH_SIZE_MAX": "3000", "PIPELINE_CHECKPOINT_INTERVAL": "5000"}

# defect kind -> the (phase, rule, column) triples that may reject it
EXPECTED_REASONS = {
    "missing_order_id": {("validate", "required", "order_id")},
    "duplicate_order_id": {("validate", "unique", "order_id")},
    "bad_email": {("validate", "pattern", "customer_email")},
    "bad_status": {("validate", "allowed", "status")},
    "bad_quantity": {("validate", r, "quantity") for r in ("type", "min", "max")},
    "negative_price": {("validate", "min", "unit_price")},
    "bad_date": {("validate", "type", "ordered_on")},
    "bad_timestamp": {("validate", "type", "shipped_at")},
    "ragged_row": {("extract", "fields", None)},
    "bad_currency": {("validate", r, "currency") for r in ("allowed", "max_length")},
}
NULLS = {"", "NULL", "N/A"}


def _reason_kind(reason: tuple) -> str:
    kinds = [k for k, reasons in EXPECTED_REASONS.items() if reason in reasons]
    assert len(kinds) == 1, f"reject reason {reason} matches no defect kind"
    return kinds[0]


def _value(raw: str) -> str | None:
    v = raw.strip()
    return None if v in NULLS else v


class SampleJob:
    def __init__(self, folder: Path, cli: Cli, manifest, result):
        self.folder, self.cli, self.manifest, self.result = folder, cli, manifest, result
        self.summary = result.last_json()
        self.job_id = self.summary["job_id"]
        self.db = folder / "warehouse.db"
        with open(folder / "orders.csv", newline="", encoding="utf-8") as f:
            records = list(csv.reader(f))
        assert records[0] == list(COLUMNS)
        self.records = records[1:]          # records[n - 1] is record number n
        self._rejects = None

    @property
    def rejects(self) -> list[dict]:
        if self._rejects is None:
            res = self.cli("rejects", self.job_id, "--json")
            assert res.returncode == 0, str(res)
            self._rejects = res.json_lines()
        return self._rejects


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> SampleJob:
    folder = tmp_path_factory.mktemp("sample")
    manifest = write_orders_csv(folder / "orders.csv", ROWS, seed=SEED)
    assert all(manifest.defects[k] > 0 for k in DEFECT_KINDS), manifest
    (folder / "pipeline.toml").write_text(SAMPLE_PIPELINE_TOML, encoding="utf-8")
    cli = Cli(folder, folder / "state" / "state.db")
    res = cli("run", "pipeline.toml", "--no-ui", "--json", env=SMALL_BATCHES, timeout=120)
    assert res.returncode == 0, str(res)
    assert "Traceback" not in res.stderr, str(res)
    return SampleJob(folder, cli, manifest, res)


# -- the run summary -------------------------------------------------------------------
def test_summary_contract_and_exact_counts(job):
    s = job.summary
    assert_summary(s)
    assert s["status"] == "succeeded"
    assert s["rows_read"] == ROWS
    assert s["rows_loaded"] == job.manifest.expected_loaded
    assert s["rows_rejected"] == job.manifest.expected_rejected


def test_table_row_count_equals_rows_loaded(job):
    assert query(job.db, "SELECT count(*) FROM orders") == [(job.summary["rows_loaded"],)]


# -- rejects ---------------------------------------------------------------------------
def test_rejects_json_lines_shape(job):
    assert len(job.rejects) == job.manifest.expected_rejected
    for r in job.rejects:
        for key in ("row", "phase", "rule", "column", "message", "values"):
            assert key in r, r
        assert isinstance(r["message"], str) and r["message"], r
    rows = [r["row"] for r in job.rejects]
    assert all(isinstance(n, int) and 1 <= n <= ROWS for n in rows), rows[:20]
    assert len(set(rows)) == len(rows), "a record was rejected twice"


def test_rejects_grouped_by_reason_match_the_manifest(job):
    by_reason = Counter((r["phase"], r["rule"], r["column"]) for r in job.rejects)
    by_kind = Counter()
    for reason, n in by_reason.items():
        by_kind[_reason_kind(reason)] += n
    assert dict(by_kind) == {k: n for k, n in job.manifest.defects.items() if n}


def test_each_rejected_record_really_is_defective(job):
    """Look every reject up in the file by its record number (csv module parse)."""
    first_row_of_id = {}
    for n, rec in enumerate(job.records, 1):
        if len(rec) == len(COLUMNS):
            first_row_of_id.setdefault(rec[0].strip(), n)
    checked = Counter()
    for r in job.rejects:
        rec = job.records[r["row"] - 1]
        kind = _reason_kind((r["phase"], r["rule"], r["column"]))
        where = f"record {r['row']}: {rec} rejected as {kind}: {r}"
        if kind == "ragged_row":
            assert len(rec) != len(COLUMNS), where
            assert r["values"]["raw"].startswith(rec[0]), where
            checked[kind] += 1
            continue
        assert len(rec) == len(COLUMNS), where
        row = dict(zip(COLUMNS, rec, strict=False))
        # the rejected values are the (cleaned) values of that very record
        assert r["values"]["order_id"] == _value(row["order_id"]), where
        assert r["values"]["sku"] == _value(row["sku"]), where
        if kind == "missing_order_id":
            assert _value(row["order_id"]) is None, where
        elif kind == "duplicate_order_id":
            assert first_row_of_id[row["order_id"].strip()] < r["row"], where
        elif kind == "bad_email":
            assert "@" not in row["customer_email"], where
        elif kind == "bad_status":
            assert row["status"].strip() not in {"new", "paid", "shipped", "cancelled"}, where
        elif kind == "bad_quantity":
            q = row["quantity"].strip()
            assert not re.fullmatch(r"[0-9]+", q) or not 1 <= int(q) <= 10_000, where
        elif kind == "negative_price":
            assert float(row["unit_price"]) < 0, where
        elif kind == "bad_date":
            with pytest.raises(ValueError):
                date.fromisoformat(row["ordered_on"].strip())
        elif kind == "bad_timestamp":
            with pytest.raises(ValueError):
                datetime.fromisoformat(row["shipped_at"].strip())
        elif kind == "bad_currency":
            assert row["currency"].strip().upper() not in {"EUR", "USD", "GBP"}, where
        checked[kind] += 1
    assert set(checked) == set(DEFECT_KINDS)


def test_loaded_ids_are_exactly_the_records_not_rejected(job):
    rejected = {r["row"] for r in job.rejects}
    expected = sorted(int(rec[0]) for n, rec in enumerate(job.records, 1) if n not in rejected)
    loaded = [r[0] for r in query(job.db, "SELECT id FROM orders ORDER BY id")]
    assert loaded == expected


def test_rejects_csv_export(job, tmp_path):
    out = tmp_path / "rejects.csv"
    res = job.cli("rejects", job.job_id, "--csv", out)
    assert res.returncode == 0, str(res)
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["row", "phase", "rule", "column", "message", "values"]
    assert len(rows) == 1 + job.manifest.expected_rejected
    assert sorted(int(r[0]) for r in rows[1:]) == sorted(r["row"] for r in job.rejects)
    assert all(isinstance(json.loads(r[5]), dict) for r in rows[1:])


# -- what landed in SQLite -------------------------------------------------------------
def test_sqlite_types_and_iso_dates(job):
    db = job.db
    assert query(db, "SELECT DISTINCT typeof(id) FROM orders") == [("integer",)]
    assert query(db, "SELECT DISTINCT typeof(quantity) FROM orders") == [("integer",)]
    assert query(db, "SELECT DISTINCT typeof(unit_price) FROM orders") == [("real",)]
    assert query(db, "SELECT DISTINCT typeof(ordered_on) FROM orders") == [("text",)]
    bad_dates = query(db, "SELECT ordered_on FROM orders WHERE ordered_on NOT GLOB "
                          "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]' LIMIT 5")
    assert bad_dates == []
    shipped = query(db, "SELECT shipped_at, typeof(shipped_at) FROM orders "
                        "WHERE shipped_at IS NOT NULL")
    assert shipped, "no shipped orders loaded"
    for text, typ in shipped:
        assert typ == "text" and "T" in text, text
        datetime.fromisoformat(text)
    columns = {r[1]: r[2] for r in query(db, "PRAGMA table_info(orders)")}
    assert columns["id"] == "INTEGER" and columns["unit_price"] == "REAL"
    assert "_etl_job_id" in columns and "_etl_batch" in columns
    assert "sku" not in columns and "notes" not in columns      # unmapped -> dropped
    assert query(db, "SELECT DISTINCT _etl_job_id FROM orders") == [(job.job_id,)]


def test_loaded_values_match_the_source_records(job):
    """Every loaded row against its source record: clean + cast + derive + map."""
    by_id = {}
    rejected = {r["row"] for r in job.rejects}
    for n, rec in enumerate(job.records, 1):
        if n not in rejected:
            by_id[int(rec[0])] = dict(zip(COLUMNS, rec, strict=False))
    rows = query(job.db, "SELECT id, email, customer_name, status, quantity, unit_price, total, "
                         "currency, ordered_on, shipped_at, country FROM orders")
    assert len(rows) == len(by_id)
    for (id_, email, name, status, qty, price, total, currency, ordered_on, shipped_at,
         country) in rows:
        src = by_id[id_]
        assert email == src["customer_email"].strip().lower(), (id_, src)
        assert name == src["customer_name"].strip(), (id_, src)
        assert status == src["status"].strip()
        assert qty == int(src["quantity"]) and price == float(src["unit_price"]), (id_, src)
        assert math.isclose(total, round(qty * price, 2), abs_tol=0.005), (id_, total, src)
        assert currency == src["currency"].strip().upper() and country == src["country"].strip().upper()
        assert ordered_on == src["ordered_on"].strip(), (id_, src)
        ship = _value(src["shipped_at"])
        if ship is None:
            assert shipped_at is None, (id_, shipped_at, src)
        else:
            assert datetime.fromisoformat(shipped_at) == datetime.fromisoformat(ship), (id_, src)


def test_ledger_one_row_per_batch_covering_every_record(job):
    s = job.summary
    ledger = query(job.db, "SELECT batch, row_start, row_end, rows "
                           "FROM _etl_loads WHERE job_id = ? AND table_name = 'orders' "
                           "ORDER BY batch", (job.job_id,))
    assert len(ledger) >= 3, f"expected several batches with small batch settings: {ledger}"
    assert [b[0] for b in ledger] == list(range(1, len(ledger) + 1))
    expect_start = 1
    for batch, start, end, rows in ledger:
        assert start == expect_start, f"gap or overlap before batch {batch}: {ledger}"
        assert end >= start
        expect_start = end + 1
        assert query(job.db, "SELECT count(*) FROM orders WHERE _etl_batch = ?", (batch,)) == [(rows,)]
    # the job created the table and nothing else wrote to it: no lineage index is kept per
    # row, only a partial one of rows not the job's (empty), which proves a drop safe; the
    # next job to write here makes the lineage index (ADR 0022)
    jid = s["job_id"]
    assert query(job.db, "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'orders'"
                 ) == [(f'CREATE INDEX "_etl_foreign_{jid}_orders" ON "orders" (_etl_job_id) '
                        f"WHERE _etl_job_id IS NOT '{jid}'",)]
    assert expect_start - 1 == s["rows_read"]
    assert sum(b[3] for b in ledger) == s["rows_loaded"]
    if "batches" in s:
        assert s["batches"] == len(ledger)


# -- history commands ------------------------------------------------------------------
def test_jobs_json_lists_the_job(job):
    res = job.cli("jobs", "--json")
    assert res.returncode == 0, str(res)
    jobs = {j["id"]: j for j in res.json_lines()}
    j = jobs[job.job_id]
    assert j["status"] == "succeeded"
    assert (j["rows_read"], j["rows_loaded"], j["rows_rejected"]) == (
        ROWS, job.manifest.expected_loaded, job.manifest.expected_rejected)


@pytest.mark.parametrize("ref", ["id", "last"])
def test_show_json(job, ref):
    res = job.cli("show", job.job_id if ref == "id" else "last", "--json")
    assert res.returncode == 0, str(res)
    j = res.last_json()
    assert j["id"] == job.job_id and j["status"] == "succeeded"
    assert (j["rows_read"], j["rows_loaded"], j["rows_rejected"]) == (
        ROWS, job.manifest.expected_loaded, job.manifest.expected_rejected)
    ledger = query(job.db, "SELECT count(*) FROM _etl_loads WHERE job_id = ?", (job.job_id,))
    assert j["batches"] == ledger[0][0]
    # conservation in every phase
    stats = j["phase_stats"]
    assert [p["label"].split("(")[-1].rstrip(")") for p in stats] == [
        "extract", "clean", "validate", "transform", "map", "load"]
    extract_rejects = sum(1 for r in job.rejects if r["phase"] == "extract")
    assert stats[0]["rows_in"] == ROWS and stats[0]["rejected"] == extract_rejects
    assert stats[1]["rows_in"] == ROWS - extract_rejects
    assert sum(p["rejected"] for p in stats) == j["rows_rejected"]
    for p in stats:
        assert p["rows_in"] == p["rows_out"] + p["rejected"], p
    for a, b in zip(stats, stats[1:], strict=False):
        assert b["rows_in"] == a["rows_out"], (a, b)
    assert stats[-1]["rows_out"] == job.manifest.expected_loaded


def test_checkpoints_json(job):
    res = job.cli("checkpoints", job.job_id, "--json")
    assert res.returncode == 0, str(res)
    cps = res.json_lines()
    assert cps and all(c["phase"] == "load" for c in cps), cps
    assert len(cps) >= 2, "PIPELINE_CHECKPOINT_INTERVAL=5000 over 20,000 rows"
    last_rows = [c["checkpoint_data"]["last_row"] for c in cps]
    assert last_rows == sorted(last_rows)
    final = cps[-1]["checkpoint_data"]
    assert final["last_row"] == ROWS
    assert final["rows_loaded"] == job.manifest.expected_loaded
    assert final["rows_rejected"] == job.manifest.expected_rejected


# -- the same file with default settings -----------------------------------------------
def test_default_settings_give_the_same_result(job, tmp_path):
    cli = Cli(job.folder, tmp_path / "state.db")
    dest = tmp_path / "default.db"
    res = cli("run", "pipeline.toml", "--no-ui", "--json", "--dest", dest, timeout=120)
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert_summary(s)
    assert (s["rows_read"], s["rows_loaded"], s["rows_rejected"]) == (
        ROWS, job.manifest.expected_loaded, job.manifest.expected_rejected)
    assert query(dest, "SELECT count(*) FROM orders") == [(s["rows_loaded"],)]
    assert (query(dest, "SELECT group_concat(id) FROM (SELECT id FROM orders ORDER BY id)")
            == query(job.db, "SELECT group_concat(id) FROM (SELECT id FROM orders ORDER BY id)"))
    ledger = query(dest, "SELECT min(row_start), max(row_end), sum(rows) FROM _etl_loads")
    assert ledger == [(1, ROWS, s["rows_loaded"])]
