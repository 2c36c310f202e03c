"""engine.types: vectorized text -> typed values, with a mask of values that did not parse."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from etlconsole.engine import types


def parse(values, type_, formats=None):
    """(typed python values, failure flags) for a list of strings."""
    typed, failed = types.parse(pa.array(values, pa.string()), type_, formats)
    assert len(typed) == len(values) and len(failed) == len(values)
    assert typed.type == types.TYPES[type_]
    return typed.to_pylist(), failed.to_pylist()


def one(value, type_, formats=None):
    typed, failed = parse([value], type_, formats)
    return typed[0], failed[0]


# --- int64 -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("0", 0),
    ("1", 1),
    ("-5", -5),
    ("007", 7),
    ("-007", -7),
    ("00000000000000000000001", 1),          # 23 chars, but only one significant digit
    ("9223372036854775807", 2**63 - 1),
    ("-9223372036854775807", -(2**63 - 1)),
])
def test_int64_valid(text, expected):
    assert one(text, "int64") == (expected, False)


def test_int64_explicit_plus_sign():
    assert parse(["+7", "1"], "int64") == ([7, 1], [False, False])


def test_int64_minimum_value_fits():
    assert one("-9223372036854775808", "int64") == (-(2**63), False)


@pytest.mark.parametrize("text", [
    "9223372036854775808",                 # int64 max + 1
    "-9223372036854775809",                # int64 min - 1
    "99999999999999999999",
    "1.5", "1e3", "abc", "", " 1", "1 ", "0x10", "0X1F", "--1", "1-", "١",
])
def test_int64_failures(text):
    assert one(text, "int64") == (None, True)


def test_int64_mixed_array_keeps_positions():
    typed, failed = parse(["12", "x", None, "9223372036854775808", "-3"], "int64")
    assert typed == [12, None, None, None, -3]
    assert failed == [False, True, False, True, False]


# --- float64 -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("1", 1.0), ("-2.25", -2.25), ("+1.5", 1.5), (".5", 0.5), ("-.5", -0.5), ("5.", 5.0),
    ("1e3", 1000.0), ("1.5E-2", 0.015), ("-2e+2", -200.0), ("007.50", 7.5),
])
def test_float64_valid(text, expected):
    value, failed = one(text, "float64")
    assert failed is False
    assert value == pytest.approx(expected)


@pytest.mark.parametrize("text", ["abc", "1e", "e5", ".", "1.2.3", "", "1,5", "inf", "nan", "NaN",
                                  "-Infinity", "--1"])
def test_float64_failures(text):
    assert one(text, "float64") == (None, True)


# --- bool --------------------------------------------------------------------------------

def test_bool_values():
    texts = ["yes", "no", "1", "0", "t", "f", "TRUE", "False", "Y", "n", "maybe", "", None]
    typed, failed = parse(texts, "bool")
    assert typed == [True, False, True, False, True, False, True, False, True, False,
                     None, None, None]
    assert failed == [False] * 10 + [True, True, False]


# --- date --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("2024-02-29", dt.date(2024, 2, 29)),     # leap year
    ("2000-02-29", dt.date(2000, 2, 29)),     # divisible by 400: leap
    ("2024-12-31", dt.date(2024, 12, 31)),
    ("1999-01-01", dt.date(1999, 1, 1)),
])
def test_date_iso_valid(text, expected):
    assert one(text, "date") == (expected, False)


@pytest.mark.parametrize("text", [
    "2023-02-29",      # not a leap year
    "2024-02-30",
    "1900-02-29",      # divisible by 100, not 400: not leap
    "2024-13-01",
    "2024-00-10",
    "2024-04-31",
    "2024-1-05",       # not zero padded
    "31/12/2024",
    "2024-01-01T00:00:00",
    "yesterday",
    "",
])
def test_date_iso_failures(text):
    assert one(text, "date") == (None, True)


def test_date_impossible_value_does_not_poison_good_ones():
    # Arrow's cast is all-or-nothing; one Feb 30 must not null the whole column.
    typed, failed = parse(["2024-02-29", "2024-02-30", None, "2023-02-28"], "date")
    assert typed == [dt.date(2024, 2, 29), None, None, dt.date(2023, 2, 28)]
    assert failed == [False, True, False, False]


def test_date_custom_format():
    texts = ["5/1/2024", "05/01/2024", "31/12/2024", "29/2/2024", "29/2/2023", "32/1/2024",
             "2024-01-05"]
    typed, failed = parse(texts, "date", ["%d/%m/%Y"])
    assert typed == [dt.date(2024, 1, 5), dt.date(2024, 1, 5), dt.date(2024, 12, 31),
                     dt.date(2024, 2, 29), None, None, None]
    assert failed == [False, False, False, False, True, True, True]


def test_date_several_formats_first_match_wins():
    typed, failed = parse(["5/1/2024", "2024.01.06", "06-01"], "date", ["%d/%m/%Y", "%Y.%m.%d"])
    assert typed == [dt.date(2024, 1, 5), dt.date(2024, 1, 6), None]
    assert failed == [False, False, True]


# --- timestamp ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("2024-03-01T12:00:00", dt.datetime(2024, 3, 1, 12, 0, 0)),
    ("2024-03-01 12:00:00", dt.datetime(2024, 3, 1, 12, 0, 0)),
    ("2024-03-01T12:34", dt.datetime(2024, 3, 1, 12, 34)),
    ("2024-03-01T12:00:00.5", dt.datetime(2024, 3, 1, 12, 0, 0, 500000)),
    ("2024-03-01T12:00:00.123456", dt.datetime(2024, 3, 1, 12, 0, 0, 123456)),
    ("2024-03-01T12:00:00Z", dt.datetime(2024, 3, 1, 12, 0, 0)),
    ("2024-03-01T12:00:00+01:00", dt.datetime(2024, 3, 1, 11, 0, 0)),   # converted to UTC
    ("2024-03-01T12:00:00-0130", dt.datetime(2024, 3, 1, 13, 30, 0)),
    ("2024-03-01T00:30:00+01:00", dt.datetime(2024, 2, 29, 23, 30, 0)),  # crosses a leap day
    ("2024-02-29 23:59:59.999999Z", dt.datetime(2024, 2, 29, 23, 59, 59, 999999)),
])
def test_timestamp_valid(text, expected):
    assert one(text, "timestamp") == (expected, False)


@pytest.mark.parametrize("text", [
    "2024-03-01T25:00:00",
    "2024-03-01T12:60:00",
    "2024-03-01T12:00:60",
    "2024-02-30T10:00:00",
    "2023-02-29 00:00:00",
    "2024-03-01",          # a date is not a timestamp
    "yesterday",
    "",
])
def test_timestamp_failures(text):
    assert one(text, "timestamp") == (None, True)


def test_timestamp_mixed_array():
    texts = ["2024-03-01T12:00:00+01:00", "2024-03-01T25:00:00", None, "2024-02-30T10:00:00",
             "2024-03-02 08:15:00"]
    typed, failed = parse(texts, "timestamp")
    assert typed == [dt.datetime(2024, 3, 1, 11, 0), None, None, None,
                     dt.datetime(2024, 3, 2, 8, 15)]
    assert failed == [False, True, False, True, False]


def test_timestamp_custom_format():
    typed, failed = parse(["1/2/2024 10:30", "31/2/2024 10:30", "bad"], "timestamp",
                          ["%d/%m/%Y %H:%M"])
    assert typed == [dt.datetime(2024, 2, 1, 10, 30), None, None]
    assert failed == [False, True, True]


# --- nulls, strings, misc ----------------------------------------------------------------

@pytest.mark.parametrize("type_", ["string", "int64", "float64", "bool", "date", "timestamp"])
def test_nulls_are_never_failures(type_):
    typed, failed = parse([None, None], type_)
    assert typed == [None, None]
    assert failed == [False, False]


def test_string_is_identity():
    assert parse(["a", "", None], "string") == (["a", "", None], [False, False, False])


def test_unknown_type_is_value_error():
    with pytest.raises(ValueError, match="money"):
        types.parse(pa.array(["1"]), "money")


def test_already_typed_input_passes_through():
    typed, failed = types.parse(pa.array([1, None, 3], pa.int64()), "float64")
    assert typed.type == pa.float64() and typed.to_pylist() == [1.0, None, 3.0]
    assert failed.to_pylist() == [False, False, False]


@pytest.mark.parametrize("dtype, expected", [
    (pa.int64(), "INTEGER"), (pa.int32(), "INTEGER"), (pa.bool_(), "INTEGER"),
    (pa.float64(), "REAL"), (pa.float32(), "REAL"), (pa.decimal128(10, 2), "REAL"),
    (pa.string(), "TEXT"), (pa.date32(), "TEXT"), (pa.timestamp("us"), "TEXT"),
])
def test_sqlite_type(dtype, expected):
    assert types.sqlite_type(dtype) == expected


def test_type_name_round_trip():
    for name, dtype in types.TYPES.items():
        assert types.type_name(dtype) == name


# --- the whole-array fast path agrees with the per-value checks ---------------------------

def _odd_strings(seed: int, n: int) -> list[str]:
    """Short strings from the characters numbers and dates are made of, plus the letters
    and spaces that Arrow's parsers might take (hex, nan, inf, exponents)."""
    import random
    rng = random.Random(seed)
    alphabet = "0123456789" * 4 + "+-.eExXnNaAiIfF :T/"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(n)] \
        + ["0x1f", "NaN", "inf", "-Infinity", "1e5", "+7", "007", "2024-02-29", "2023-02-29",
           "9223372036854775807", "9223372036854775808", "0000-01-01", "2024-1-5"]


@pytest.mark.parametrize("type_, checks", [
    ("int64", types._int64), ("float64", types._float64), ("date", types._date)])
def test_fast_path_takes_only_what_the_checks_take(type_, checks):
    """Each value alone (so Arrow's all-or-nothing cast decides it alone): the fast path in
    ``parse`` must accept exactly the values the per-value checks accept, with equal values."""
    for text in _odd_strings(11, 3000):
        value = pa.array([text], pa.string())
        typed, failed = types.parse(value, type_)
        slow_typed, ok = checks(value)
        assert failed[0].as_py() == (not ok[0].as_py()), text
        if ok[0].as_py():
            assert typed[0] == slow_typed[0], text


# --- every calendar day, and the zero-copy null mask ----------------------------------------

def _calendar_texts() -> list[str]:
    """Every month 00-13 and day 00-32 of a leap year, a common year, a century that is
    not leap (1900) and one that is (2000): the shapes reject months and days out of range,
    and each month's own last day decides the rest."""
    return [f"{y}-{m:02d}-{d:02d}" for y in (2024, 2023, 1900, 2000)
            for m in range(14) for d in range(33)]


def _real_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


@pytest.mark.parametrize("together", [True, False])
def test_every_calendar_day_is_judged_like_python(together):
    """Alone, a value is decided by the shape and a cast of that one value; together with
    good ones, an impossible day must fail only itself (the all-or-nothing cast refuses)."""
    texts = _calendar_texts()
    days = parse(texts, "date") if together else tuple(zip(*(one(t, "date") for t in texts), strict=False))
    stamps = parse([t + "T06:30:00" for t in texts], "timestamp") if together else \
        tuple(zip(*(one(t + " 06:30", "timestamp") for t in texts), strict=False))
    for i, text in enumerate(texts):
        truth = _real_date(text)
        assert days[0][i] == truth and days[1][i] == (truth is None), text
        expected = None if truth is None else dt.datetime.combine(truth, dt.time(6, 30))
        assert stamps[0][i] == expected and stamps[1][i] == (truth is None), text


@pytest.mark.parametrize("offset", [0, 1, 7, 8, 13])
def test_keep_nulls_the_refused_text_of_a_slice_without_copying(offset):
    values = pa.array(["a", None, "ccc", "", "e", None, "ggg", "h"] * 3, pa.string()).slice(offset)
    ok = pa.array([i % 3 != 0 if i % 5 else None for i in range(len(values))], pa.bool_())
    kept = types._keep(values, ok)
    assert kept.to_pylist() == [v if o else None
                                for v, o in zip(values.to_pylist(), ok.to_pylist(), strict=False)]
    assert kept.buffers()[2].address == values.buffers()[2].address     # same string data
    kept.validate(full=True)
