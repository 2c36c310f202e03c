"""rowjson.values_json writes exactly the JSON that json.JSONEncoder writes row by row.

The state store keeps a rejected row's values as that text, and `rejects`, the console
and replays read it back: the vectorized encoder must not change a character of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from etlconsole.engine.phases.base import ROW, Rejects
from etlconsole.engine.rowjson import values_json

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "realworld"
ENCODE = json.JSONEncoder(default=str, ensure_ascii=False).encode


def python_json(batch: pa.RecordBatch) -> list[str]:
    return [ENCODE(row) for row in batch.to_pylist()]


NASTY = ['plain', 'with "quotes"', 'back\\slash', 'both \\" at once', "tab\there",
         "new\nline", "cr\r\nlf", "\b\f", "nul\x00byte", "".join(map(chr, range(32))), "\x7f",
         "é ü 中文 🙂", "\u2028\u2029", "", None, '"', "\\", "\\\\n", "}{,:"]


def test_every_escape_json_writes_is_written_the_same():
    batch = pa.record_batch({"text": pa.array(NASTY), "lar": pa.array(NASTY, pa.large_string())})
    assert values_json(batch) == python_json(batch)


def test_keys_that_need_escaping_and_every_supported_type():
    batch = pa.record_batch({
        'we"ird\\ key\n': pa.array(["a", None, "c"]),
        "int": pa.array([1, None, -(2**63)], pa.int64()),
        "small": pa.array([7, 0, None], pa.int8()),
        "unsigned": pa.array([2**64 - 1, None, 0], pa.uint64()),
        "flag": pa.array([True, False, None]),
        "nothing": pa.nulls(3),
        "ключ": pa.array(["x", "y", "z"]),
    })
    assert values_json(batch) == python_json(batch)


@pytest.mark.parametrize("array", [pa.array([1.5, 1e20, float("nan")]),
                                   pa.array([1, 2, 3], pa.date32()),
                                   pa.array([[1], [2], [3]])])
def test_a_type_it_cannot_write_exactly_is_left_to_python(array):
    batch = pa.record_batch({"s": pa.array(["a", "b", "c"]), "x": array})
    assert values_json(batch) is None


def test_no_columns_and_no_rows():
    assert values_json(pa.RecordBatch.from_pydict({"a": pa.array([], pa.string())})) == []
    empty = pa.record_batch({"a": pa.array(["x"])}).drop_columns(["a"])
    assert values_json(empty) == python_json(empty) == ["{}"]


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.suffix in (".csv", ".tsv", ".txt") and p.is_file())


def test_every_corpus_file_read_as_text_encodes_as_python_does():
    """The real-world corpus (quoted newlines, odd encodings' survivors, empty fields):
    every file Arrow can read as text, every row."""
    checked = 0
    for path in corpus_files():
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:  # the engine rejects those rows raw; Arrow's handler of a
            continue                # ragged row cannot even hand its text to Python
        try:
            table = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=lambda row: "skip"),
                convert_options=pcsv.ConvertOptions(strings_can_be_null=True),
                read_options=pcsv.ReadOptions(autogenerate_column_names=True))
        except (pa.ArrowInvalid, UnicodeDecodeError):
            continue
        if not len({n.lower() for n in table.column_names}) == table.num_columns:
            continue
        try:
            text = table.cast(pa.schema([(f.name, pa.string()) for f in table.schema]))
        except pa.ArrowInvalid:     # bytes that are not UTF-8: the engine rejects those rows raw
            continue
        for batch in text.to_batches():
            assert values_json(batch) == python_json(batch), path
            checked += batch.num_rows
    assert checked > 1000


def test_rejects_records_carry_the_row_number_and_the_json_of_the_rest():
    rows = pa.record_batch({"name": pa.array(['a "b"', "c\nd", None]),
                            ROW: pa.array([10, 11, 12], pa.int64()),
                            "n": pa.array([1.5, 2.0, None])})
    rejects = Rejects(rows, ["r"] * 3, ["name"] * 3, ["m"] * 3)
    records = rejects.records("validate", "phase 2 (validate)")
    assert [r["row"] for r in records] == [10, 11, 12]
    assert [r["values"] for r in records] == python_json(rows.drop_columns([ROW]))
    strings = Rejects(rows.drop_columns(["n"]), ["r"] * 3, ["name"] * 3, ["m"] * 3)
    assert [r["values"] for r in strings.records("validate")] == python_json(
        rows.drop_columns(["n", ROW]))
