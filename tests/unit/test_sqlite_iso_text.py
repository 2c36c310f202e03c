"""Dates and timestamps reach SQLite as Arrow-made ISO text (ADBC's per-value formatting
cost more than the rest of the insert). The text must be exactly what ADBC writes for the
same values, or a table loaded before this change and appended to after would mix forms."""

import random
import sqlite3

import adbc_driver_sqlite.dbapi as adbc
import pyarrow as pa
import pytest

from etlconsole.engine.destinations.sqlite import _as_iso_text

_LOW_S, _HIGH_S = -62_135_596_800, 253_402_300_799      # 0001-01-01 .. 9999-12-31T23:59:59
_PER = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _adbc_text(path, arr: pa.Array) -> list:
    conn = adbc.connect(str(path))
    with conn.cursor() as cur:
        cur.adbc_ingest("t", pa.table({"v": arr}), mode="create")
    conn.commit()
    conn.close()
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT v FROM t ORDER BY rowid")]
    finally:
        db.close()


def _ours(arr: pa.Array) -> list:
    out = _as_iso_text(pa.record_batch({"v": arr})).column(0)
    assert pa.types.is_string(out.type), "in-range values must be converted here, not by ADBC"
    return out.to_pylist()


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "-05:00"])
def test_timestamps_match_adbc(tmp_path, unit, tz):
    rng = random.Random(f"{unit}{tz}")
    per = _PER[unit]
    low, high = (-(2**63), 2**63 - 1) if unit == "ns" else (_LOW_S * per, _HIGH_S * per + per - 1)
    values = [rng.randint(low, high) for _ in range(2000)]
    values += [0, -1, 1, None, low, high, 1_700_000_000 * per]      # whole seconds too
    arr = pa.array(values, pa.timestamp(unit, tz))
    assert _ours(arr) == _adbc_text(tmp_path / "t.db", arr)


def test_whole_second_timestamps_have_no_fraction(tmp_path):
    arr = pa.array([1_700_000_000_000_000, None], pa.timestamp("us"))
    assert _ours(arr) == ["2023-11-14T22:13:20", None] == _adbc_text(tmp_path / "t.db",
                                                                     arr.cast(pa.timestamp("s")))


def test_dates_match_adbc(tmp_path):
    rng = random.Random(7)
    values = [rng.randint(-719_162, 2_932_896) for _ in range(2000)] + [None, -719_162, 2_932_896, 0]
    arr = pa.array(values, pa.date32())
    assert _ours(arr) == _adbc_text(tmp_path / "t.db", arr)


def test_years_past_9999_are_left_to_adbc():
    late = pa.array([253_402_300_800], pa.timestamp("s"))
    assert _as_iso_text(pa.record_batch({"v": late})).column(0).type == pa.timestamp("s")
    batch = pa.record_batch({"d": pa.array([2_932_897], pa.date32())})
    assert _as_iso_text(batch).column(0).type == pa.date32()
