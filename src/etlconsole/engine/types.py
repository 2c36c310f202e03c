"""Text -> typed values, vectorized.

Every column is read as text; the ``validate`` rule ``type`` and the ``transform`` option
``cast`` both go through ``parse``: one pass of ``pyarrow.compute`` over a whole array
returns the typed values and a mask of the values that did not parse. Nulls are not
failures (a missing value is ``required``'s business).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}
# How a type lands in SQLite (dates and timestamps as ISO 8601 text, booleans as 0/1).
SQLITE_TYPES = {
    pa.types.is_integer: "INTEGER",
    pa.types.is_boolean: "INTEGER",
    pa.types.is_floating: "REAL",
    pa.types.is_decimal: "REAL",
}

_INT = r"^[+-]?[0-9]+$"
_FLOAT = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_TRUE = ["true", "t", "yes", "y", "1"]
_FALSE = ["false", "f", "no", "n", "0"]
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# date, 'T' or space, hh:mm[:ss[.ffffff]], optional Z or ±hh:mm
_ISO_TS = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
           r"(Z|[+-][0-9]{2}:?[0-9]{2})?$")
_INT64_MAX = "9223372036854775807"


def sqlite_type(dtype: pa.DataType) -> str:
    for test, name in SQLITE_TYPES.items():
        if test(dtype):
            return name
    return "TEXT"


def type_name(dtype: pa.DataType) -> str:
    for name, t in TYPES.items():
        if t == dtype:
            return name
    return str(dtype)


def parse(values: pa.Array, type_: str, formats: list[str] | None = None) -> tuple[pa.Array, pa.Array]:
    """(typed values, mask of non-null values that failed to parse)."""
    if type_ not in TYPES:
        raise ValueError(f"unknown type {type_!r} (expected one of {', '.join(TYPES)})")
    target = TYPES[type_]
    if values.type == target:
        return values, _no_failures(values)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        try:
            return pc.cast(values, target), _no_failures(values)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = pc.cast(values, pa.string())
    parser = {"string": _as_string, "int64": _int64, "float64": _float64, "bool": _bool,
              "date": _date, "timestamp": _timestamp}[type_]
    typed, ok = parser(values, formats) if type_ in ("date", "timestamp") else parser(values)
    ok = pc.fill_null(ok, True)
    failed = pc.and_(pc.invert(ok), pc.is_valid(values))
    return typed, failed


def _no_failures(values: pa.Array) -> pa.Array:
    return pa.repeat(pa.scalar(False), len(values))


def _keep(values: pa.Array, ok: pa.Array) -> pa.Array:
    """Values where ok, null elsewhere, so a cast of the result cannot fail."""
    return pc.if_else(ok, values, pa.scalar(None, values.type))


def _as_string(values):
    return values, pc.is_valid(values)


def _int64(values):
    ok = pc.match_substring_regex(values, _INT)
    digits = pc.utf8_ltrim(values, "+-")
    digits = pc.utf8_ltrim(digits, "0")
    length = pc.utf8_length(digits)
    fits = pc.or_(pc.less(length, 19),
                  pc.and_(pc.equal(length, 19), pc.less_equal(digits, _INT64_MAX)))
    ok = pc.and_(ok, fits)
    return pc.cast(_keep(values, ok), pa.int64()), ok


def _float64(values):
    ok = pc.match_substring_regex(values, _FLOAT)
    return pc.cast(_keep(values, ok), pa.float64()), ok


def _bool(values):
    lowered = pc.utf8_lower(values)
    is_true = pc.is_in(lowered, pa.array(_TRUE))
    ok = pc.or_(is_true, pc.is_in(lowered, pa.array(_FALSE)))
    return _keep(is_true, ok), ok


def _strip_zeros(text):
    """'05/01/2024' -> '5/1/2024', so a round trip ignores zero padding."""
    return pc.replace_substring_regex(text, r"(^|[^0-9])0+([0-9])", r"\1\2")


def _strptime_roundtrip(values, fmt, strict: bool):
    """Parse with fmt and keep only values that format back to themselves.

    Arrow's strptime is lenient (2024-02-30 becomes March 1st); the round trip makes it
    exact without a Python loop.
    """
    parsed = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
    back = pc.strftime(parsed, format=fmt)
    same = pc.equal(back, values) if strict else pc.equal(_strip_zeros(back), _strip_zeros(values))
    ok = pc.fill_null(same, False)
    return pc.cast(_keep(parsed, ok), pa.timestamp("us")), ok


def _first_match(values, formats, strict):
    parsed, ok = None, None
    for fmt in formats:
        p, o = _strptime_roundtrip(values, fmt, strict)
        parsed = p if parsed is None else pc.if_else(ok, parsed, p)
        ok = o if ok is None else pc.or_(ok, o)
    return parsed, ok


def _date(values, formats=None):
    if formats:
        parsed, ok = _first_match(values, formats, strict=False)
    else:
        shaped = pc.match_substring_regex(values, _ISO_DATE)
        parsed, ok = _strptime_roundtrip(_keep(values, shaped), "%Y-%m-%d", strict=True)
        ok = pc.and_(shaped, ok)
    return pc.cast(parsed, pa.date32()), ok


def _timestamp(values, formats=None):
    if formats:
        parsed, ok = _first_match(values, formats, strict=False)
        return parsed, ok
    shaped = pc.match_substring_regex(values, _ISO_TS)
    text = _keep(values, shaped)
    text = pc.replace_substring(text, " ", "T", max_replacements=1)
    # Split 'YYYY-MM-DDTHH:MM[:SS][.ffffff][zone]' into its parts.
    parts = pc.extract_regex(
        text, r"^(?P<base>.{16})(?P<sec>:[0-9]{2})?(?P<frac>\.[0-9]{1,6})?(?P<zone>Z|[+-][0-9]{2}:?[0-9]{2})?$")
    base = pc.struct_field(parts, "base")
    sec = pc.struct_field(parts, "sec")
    sec = pc.if_else(pc.equal(sec, ""), ":00", sec)
    whole = pc.binary_join_element_wise(base, sec, "")
    parsed, ok = _strptime_roundtrip(whole, "%Y-%m-%dT%H:%M:%S", strict=True)
    micros = _fraction_micros(pc.struct_field(parts, "frac"))
    offset = _offset_micros(pc.struct_field(parts, "zone"))
    as_int = pc.cast(parsed, pa.int64())
    as_int = pc.subtract(pc.add(as_int, micros), offset)
    return pc.cast(as_int, pa.timestamp("us")), pc.and_(shaped, ok)


def _fraction_micros(frac):
    digits = pc.utf8_slice_codeunits(frac, 1)
    padded = pc.utf8_rpad(digits, 6, "0")
    padded = pc.if_else(pc.equal(digits, ""), "0", padded)
    return pc.cast(padded, pa.int64())


def _offset_micros(zone):
    zone = pc.replace_substring(zone, ":", "")
    zone = pc.if_else(pc.or_(pc.equal(zone, ""), pc.equal(zone, "Z")), "+0000", zone)
    sign = pc.if_else(pc.starts_with(zone, "-"), -1, 1)
    hours = pc.cast(pc.utf8_slice_codeunits(zone, 1, 3), pa.int64())
    minutes = pc.cast(pc.utf8_slice_codeunits(zone, 3, 5), pa.int64())
    seconds = pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60))
    return pc.multiply(pc.multiply(seconds, sign), 1_000_000)
