"""The sample orders generator: determinism, shape, and exact defect accounting.

The defect counts are recomputed independently: the file is parsed with the ``csv`` module
and every record is run through a small re-implementation of the sample pipeline's clean and
validate rules. Each defect record must break exactly one rule, every other record none.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import tomllib
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pytest

from etlconsole.sample import (COLUMNS, DEFECT_KINDS, HEADER, SAMPLE_PIPELINE_TOML,
                               SampleManifest, write_orders_csv)

NULLS = {"", "NULL", "N/A"}
EMAIL = re.compile(r"^[^@ ]+@[^@ ]+\.[a-z]{2,}$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _records(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _clean(rec: list[str]) -> dict[str, str | None]:
    row: dict[str, str | None] = {}
    for col, raw in zip(COLUMNS, rec, strict=False):
        v = raw.strip()
        if v in NULLS:
            row[col] = None
            continue
        if col == "customer_email":
            v = v.lower()
        elif col in ("currency", "country"):
            v = v.upper()
        row[col] = v
    return row


def _int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _is_date(v) -> bool:
    if v is None or not ISO_DATE.match(v):
        return False
    try:
        date.fromisoformat(v)
        return True
    except ValueError:
        return False


def _is_timestamp(v) -> bool:
    try:
        datetime.strptime(v, "%Y-%m-%dT%H:%M:%S")
        return True
    except (TypeError, ValueError):
        return False


def _failures(row: dict) -> list[str]:
    """Rule failures other than uniqueness, named like the generator's defect kinds."""
    out = []
    if row["order_id"] is None:
        out.append("missing_order_id")
    elif _int(row["order_id"]) is None:
        out.append("order_id_not_int")
    if row["customer_email"] is None or not EMAIL.match(row["customer_email"]):
        out.append("bad_email")
    if row["status"] is not None and row["status"] not in ("new", "paid", "shipped", "cancelled"):
        out.append("bad_status")
    q = _int(row["quantity"])
    if q is None or not 1 <= q <= 10000:
        out.append("bad_quantity")
    p = _float(row["unit_price"])
    if p is None or p < 0:
        out.append("negative_price")
    c = row["currency"]
    if c is not None and (c not in ("EUR", "USD", "GBP") or len(c) > 3):
        out.append("bad_currency")
    if not _is_date(row["ordered_on"]):
        out.append("bad_date")
    if row["shipped_at"] is not None and not _is_timestamp(row["shipped_at"]):
        out.append("bad_timestamp")
    return out


def _recount(path: Path) -> tuple[int, Counter]:
    """(records, defect kind -> count), from the file alone."""
    records = _records(path)
    assert records[0] == list(COLUMNS)
    counts: Counter = Counter()
    first_seen: dict[int, bool] = {}            # order id -> was its first record clean?
    for rec in records[1:]:
        if len(rec) != len(COLUMNS):
            counts["ragged_row"] += 1
            continue
        row = _clean(rec)
        fails = _failures(row)
        oid = _int(row["order_id"])
        if oid is not None:
            if oid in first_seen:
                assert first_seen[oid], f"order id {oid} duplicates a rejected record"
                fails.append("duplicate_order_id")
            else:
                first_seen[oid] = not fails
        assert len(fails) <= 1, f"record breaks more than one rule: {fails} {rec}"
        counts.update(fails)
    return len(records) - 1, counts


@pytest.fixture(scope="module")
def sample_10k(tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "orders.csv"
    return path, write_orders_csv(path, 10_000)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    ma = write_orders_csv(a, 3_000, seed=11)
    mb = write_orders_csv(b, 3_000, seed=11)
    write_orders_csv(c, 3_000, seed=12)
    assert a.read_bytes() == b.read_bytes()
    assert ma == mb
    assert a.read_bytes() != c.read_bytes()


def test_header_and_clean_rows(sample_10k):
    path, manifest = sample_10k
    raw = path.read_bytes()
    assert raw.startswith((HEADER + "\n").encode())
    assert b"\r" not in raw and raw.endswith(b"\n")
    records = _records(path)
    assert records[0] == HEADER.split(",") and len(records[0]) == 14
    body = records[1:]
    assert len(body) == manifest.rows == 10_000
    assert sum(len(r) == 14 for r in body) == 10_000 - manifest.defects["ragged_row"]
    clean = [r for r in body if len(r) == 14 and not _failures(_clean(r))]
    assert len(clean) >= 9_000
    # ids are the 1-based record number, except on duplicates (and missing ids)
    off = sum(int(r[0]) != i for i, r in enumerate(body, 1) if len(r) == 14 and r[0])
    assert off == manifest.defects["duplicate_order_id"]
    for r in clean[:2000]:
        assert re.fullmatch(r"SKU-\d{5}", r[12]) and re.fullmatch(r"\d+\.\d{2}", r[6])
        assert 1 <= int(r[5]) <= 50 and 0.5 <= float(r[6]) <= 999.99
        assert "2023-01-01" <= r[8] <= "2025-12-31"
        assert len(r[10].strip()) == 2


def test_realistic_quoting_and_cosmetics(sample_10k):
    path, _ = sample_10k
    body = [r for r in _records(path)[1:] if len(r) == 14]
    n = len(body)
    quoted_names = sum(("," in r[3]) or ('"' in r[3]) for r in body)
    multiline = sum("\n" in r[13] for r in body)
    cosmetic = sum(r[2] != r[2].strip().lower() or r[3] != r[3].strip()
                   or r[7] != r[7].upper() or r[10] != r[10].upper()
                   or r[9] in ("NULL", "N/A") or r[13] in ("NULL", "N/A") for r in body)
    assert 0.03 < quoted_names / n < 0.07
    assert 1 <= multiline <= 40
    assert 0.03 < cosmetic / n < 0.12
    assert any('""' in line for line in path.read_text(encoding="utf-8").splitlines())


def test_every_defect_kind_present_at_10k(sample_10k):
    _, manifest = sample_10k
    assert list(manifest.defects) == list(DEFECT_KINDS)
    assert all(manifest.defects[k] >= 1 for k in DEFECT_KINDS), manifest.defects
    assert 150 <= manifest.expected_rejected <= 250        # ~2% of 10k


@pytest.mark.parametrize("rows,seed,rate", [(10_000, 7, 0.02), (200, 3, 0.02),
                                            (5_000, 99, 0.1), (150, 1, 0.05)])
def test_manifest_matches_independent_recount(tmp_path, rows, seed, rate):
    path = tmp_path / "orders.csv"
    manifest = write_orders_csv(path, rows, seed=seed, dirty_rate=rate)
    n, counts = _recount(path)
    assert n == manifest.rows == rows
    assert {k: v for k, v in manifest.defects.items() if v} == dict(counts)
    assert manifest.expected_rejected == sum(counts.values())
    assert manifest.expected_loaded == rows - manifest.expected_rejected
    if rows >= 200:
        assert set(counts) == set(DEFECT_KINDS)


def test_zero_dirty_rate_and_empty_file(tmp_path):
    clean = write_orders_csv(tmp_path / "clean.csv", 1_000, dirty_rate=0)
    assert clean.expected_rejected == 0 and clean.expected_loaded == 1_000
    assert _recount(tmp_path / "clean.csv") == (1_000, Counter())
    empty = write_orders_csv(tmp_path / "empty.csv", 0)
    assert (tmp_path / "empty.csv").read_text() == HEADER + "\n"
    assert empty.rows == 0 and empty.expected_rejected == 0
    with pytest.raises(ValueError):
        write_orders_csv(tmp_path / "x.csv", -1)


def test_manifest_json_roundtrip(sample_10k):
    _, manifest = sample_10k
    data = json.loads(manifest.to_json())
    assert SampleManifest(**data) == manifest


def test_pipeline_toml():
    spec = tomllib.loads(SAMPLE_PIPELINE_TOML)
    assert spec["name"] == "orders" and spec["source"]["path"] == "orders.csv"
    assert [p["type"] for p in spec["phases"]] == ["clean", "validate", "transform", "map", "load"]
    rules = {r["column"]: r for r in spec["phases"][1]["rules"]}
    assert rules["customer_email"]["pattern"] == r"^[^@ ]+@[^@ ]+\.[a-z]{2,}$"
    assert rules["order_id"]["unique"] is True
    assert "#" in SAMPLE_PIPELINE_TOML


def test_cli_prints_manifest(tmp_path):
    path = tmp_path / "cli.csv"
    src = Path(__file__).resolve().parents[2] / "src"
    out = subprocess.run([sys.executable, "-m", "etlconsole.sample", str(path), "500",
                          "--seed", "5"], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(src)})
    assert SampleManifest(**json.loads(out.stdout)) == write_orders_csv(tmp_path / "b.csv", 500,
                                                                        seed=5)
    assert path.read_bytes() == (tmp_path / "b.csv").read_bytes()
