"""Text -> typed values, vectorized.

Every column is read as text; the ``validate`` rule ``type`` and the ``transform`` option
``cast`` both go through ``parse``: one pass of ``pyarrow.compute`` over a whole array
returns the typed values and a mask of the values that did not parse. Nulls are not
failures (a missing value is ``required``'s business).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

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
# The shapes carry the ranges (month 01-12, each month's own last day, hour 00-23, …),
# so only February 29th of a common year is left to find.
_YMD = (r"[0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
        r"|02-(0[1-9]|1[0-9]|2[0-9]))")
_ISO_DATE = rf"^{_YMD}$"
# date, 'T' or space, hh:mm[:ss[.ffffff]], optional Z or ±hh:mm
_ISO_TS = (rf"^{_YMD}[T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{{1,6}})?)?"
           r"(Z|[+-][0-9]{2}:?[0-9]{2})?$")
_INT64_MAX = "9223372036854775807"
_INT64_MIN_DIGITS = "9223372036854775808"


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


# A small memo of parsed columns: ``validate`` parses a column to check its type, and
# ``transform`` casts the same (filtered) column moments later; the memo lets the second
# parse cost nothing. It holds the text arrays themselves, so buffer addresses in the
# keys cannot be reused while an entry lives. The phase line runs phases in threads of
# their own (engine.stages), so every look-up and change holds the lock.
_MEMO: OrderedDict[tuple, tuple[pa.Array, pa.Array]] = OrderedDict()
_MEMO_SIZE = 16
_MEMO_LOCK = threading.Lock()


def _memo_key(values: pa.Array, type_: str, formats) -> tuple:
    buffers = tuple(b.address if b is not None else 0 for b in values.buffers())
    return (buffers, values.offset, len(values), type_, tuple(formats or ()))


def remember(values: pa.Array, type_: str, formats, typed: pa.Array) -> None:
    """Record that `values` parse cleanly to `typed` (every non-null value parsed)."""
    key = _memo_key(values, type_, formats)
    with _MEMO_LOCK:
        _MEMO[key] = (values, typed)
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)


def parse(values: pa.Array, type_: str, formats: list[str] | None = None) -> tuple[pa.Array, pa.Array]:
    """(typed values, mask of non-null values that failed to parse)."""
    key = _memo_key(values, type_, formats)
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
    if hit is not None:
        return hit[1], _no_failures(values)
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
    if type_ in _DIRECT:
        try:
            typed = pc.cast(values, target)
        except pa.ArrowInvalid:
            typed = None    # some value is bad: find which, value by value
        if typed is not None and _direct_ok(values, type_):
            return typed, _no_failures(values)
    parser: Callable[..., Any] = {"string": _as_string, "int64": _int64, "float64": _float64, "bool": _bool,
              "date": _date, "timestamp": _timestamp}[type_]
    typed, ok = parser(values, formats) if type_ in ("date", "timestamp") else parser(values)
    ok = pc.fill_null(ok, True)
    failed = pc.and_(pc.invert(ok), pc.is_valid(values))
    return typed, failed


# Arrow's own cast of a whole array is exact for these types and several times faster
# than the per-value checks, but all-or-nothing, and it also takes hex integers ('0x1f')
# and 'nan'/'inf' floats, which the rules refuse: those need a letter no valid value has.
_DIRECT = {"int64": "x", "float64": "n", "date": None}


def _direct_ok(values: pa.Array, type_: str) -> bool:
    letter = _DIRECT[type_]
    if letter is None:
        return True
    data = text_bytes(values)   # one memchr over the bytes, not a search per value
    return letter.encode() not in data and letter.upper().encode() not in data


def text_bytes(values: pa.Array) -> bytes:
    """The UTF-8 bytes of a text array's values, back to back (a copy of just its slice):
    whole-array questions ("any 'x'?", "all ASCII?") become one C pass over bytes."""
    _, offsets, data = values.buffers()
    if data is None or len(values) == 0:
        return b""
    view = memoryview(offsets).cast("q" if pa.types.is_large_string(values.type) else "i")
    start, end = view[values.offset], view[values.offset + len(values)]
    return data.slice(start, end - start).to_pybytes()


def _no_failures(values: pa.Array) -> pa.Array:
    return pa.repeat(pa.scalar(False), len(values))


def _keep(values: pa.Array, ok: pa.Array) -> pa.Array:
    """Values where ok, null elsewhere, so a cast of the result cannot fail.

    Text keeps its buffers under a new validity bitmap (``if_else`` would copy every
    string, and this runs on every column a type rule checks)."""
    valid = pc.and_(pc.fill_null(ok, False), pc.is_valid(values))
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return pc.if_else(valid, values, pa.scalar(None, values.type))
    if values.offset:     # the bitmap is read from the same offset as the other buffers
        valid = pa.concat_arrays([pa.repeat(pa.scalar(False), values.offset), valid])
    return pa.Array.from_buffers(values.type, len(values), [valid.buffers()[1], *values.buffers()[1:]],
                                 offset=values.offset)


def _as_string(values):
    return values, pc.is_valid(values)


def _int64(values):
    ok = pc.match_substring_regex(values, _INT)
    if (pc.max(pc.binary_length(values)).as_py() or 0) > 18:   # else no value can overflow
        ok = pc.and_(ok, _fits_int64(values))
    if pc.any(pc.starts_with(values, "+")).as_py():
        values = pc.utf8_ltrim(values, "+")        # Arrow's cast refuses a leading '+'
    return pc.cast(_keep(values, ok), pa.int64()), ok


def _fits_int64(values):
    negative = pc.starts_with(values, "-")
    digits = pc.utf8_ltrim(pc.utf8_ltrim(values, "+-"), "0")
    length = pc.utf8_length(digits)
    limit = pc.if_else(negative, _INT64_MIN_DIGITS, _INT64_MAX)   # same length, 19 digits
    return pc.or_(pc.less(length, 19),
                  pc.and_(pc.equal(length, 19), pc.less_equal(digits, limit)))


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
        return pc.cast(parsed, pa.date32()), ok
    ok = pc.match_substring_regex(values, _ISO_DATE)
    return _strict_cast(_keep(values, ok), ok, pa.date32(), _calendar_ok)


def _timestamp(values, formats=None):
    if formats:
        return _first_match(values, formats, strict=False)
    shaped = pc.match_substring_regex(values, _ISO_TS)
    text = _keep(values, shaped)
    try:      # local times on real days, the usual case (a zone offset makes the cast fail)
        return pc.cast(text, pa.timestamp("us")), shaped
    except pa.ArrowInvalid:
        pass
    tail = pc.utf8_slice_codeunits(text, 16)          # after YYYY-MM-DDTHH:MM
    zoned = pc.or_(pc.ends_with(text, "Z"), pc.or_(pc.greater_equal(pc.find_substring(tail, "+"), 0),
                                                   pc.greater_equal(pc.find_substring(tail, "-"), 0)))
    if not pc.any(zoned).as_py():                      # the common case: local times only
        return _strict_cast(text, shaped, pa.timestamp("us"), _calendar_ok)
    parts = pc.extract_regex(text, r"^(?P<local>[^Z+]{16}[^Z+-]*)(?P<zone>Z|[+-][0-9]{2}:?[0-9]{2})?$")
    local = pc.struct_field(parts, "local")
    parsed, ok = _strict_cast(local, shaped, pa.timestamp("us"), _calendar_ok)
    micros = pc.subtract(pc.cast(parsed, pa.int64()), _offset_micros(pc.struct_field(parts, "zone")))
    return pc.cast(micros, pa.timestamp("us")), ok


def _strict_cast(text, ok, target, check):
    """Cast well-shaped ISO text; Arrow's cast is exact but all-or-nothing, so only when
    it refuses are the impossible days (Feb 30) found, vectorized, and nulled."""
    try:
        return pc.cast(text, target), ok
    except pa.ArrowInvalid:
        ok = pc.and_(ok, pc.fill_null(check(text), False))
        return pc.cast(_keep(text, ok), target), ok


_PAST_MONTH_END = pa.array(["02-30", "02-31", "04-31", "06-31", "09-31", "11-31"])


def _calendar_ok(text):
    """False where the day is past the end of its month, for 'YYYY-MM-DD…' text whose
    ranges the shape regex already checked."""
    month_day = pc.utf8_slice_codeunits(text, 5, 10)      # a lookup beats a regex here
    bad = pc.is_in(month_day, _PAST_MONTH_END)
    feb29 = pc.equal(month_day, "02-29")
    if pc.any(feb29).as_py():
        y = pc.cast(pc.utf8_slice_codeunits(text, 0, 4), pa.int64())
        leap = pc.and_(pc.equal(_mod(y, 4), 0),
                       pc.or_(pc.not_equal(_mod(y, 100), 0), pc.equal(_mod(y, 400), 0)))
        bad = pc.or_(bad, pc.and_(feb29, pc.invert(leap)))
    return pc.invert(bad)


def _mod(values, n):
    return pc.subtract(values, pc.multiply(pc.divide(values, n), n))   # integer division


def _offset_micros(zone):
    zone = pc.replace_substring(zone, ":", "")
    zone = pc.if_else(pc.or_(pc.equal(zone, ""), pc.equal(zone, "Z")), "+0000", zone)
    sign = pc.if_else(pc.starts_with(zone, "-"), -1, 1)
    hours = pc.cast(pc.utf8_slice_codeunits(zone, 1, 3), pa.int64())
    minutes = pc.cast(pc.utf8_slice_codeunits(zone, 3, 5), pa.int64())
    seconds = pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60))
    return pc.multiply(pc.multiply(seconds, sign), 1_000_000)
