"""clean phase: trim, null markers, case folding; never rejects, keeps _etl_row."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from etlconsole.engine.phases.clean import Clean
from etlconsole.errors import SpecError

ROW = "_etl_row"


def batch(rows=(1, 2, 3, 5, 9), **cols):
    arrays = {k: pa.array(v, pa.string()) for k, v in cols.items()}
    arrays[ROW] = pa.array(list(rows), pa.int64())
    return pa.record_batch(arrays)


def run(phase, b):
    phase.setup(b.schema)
    out = phase.process(b)
    assert isinstance(out, pa.RecordBatch)
    assert out.schema == b.schema
    return out.to_pydict()


@pytest.fixture
def dirty():
    return batch(name=["  Ann ", "NULL", " N/A ", "", "\tBob\n"],
                 email=[" A@X.COM", "b@y.org", None, "Mixed@Case.Io ", "C@Z.de"])


def test_trim_every_text_column(dirty):
    out = run(Clean(trim=True), dirty)
    assert out["name"] == ["Ann", "NULL", "N/A", "", "Bob"]
    assert out["email"] == ["A@X.COM", "b@y.org", None, "Mixed@Case.Io", "C@Z.de"]


def test_no_options_changes_nothing(dirty):
    assert run(Clean(), dirty) == dirty.to_pydict()


def test_null_values_after_trim(dirty):
    out = run(Clean(trim=True, null_values=["", "NULL", "N/A"]), dirty)
    assert out["name"] == ["Ann", None, None, None, "Bob"]


def test_null_values_without_trim_match_exactly(dirty):
    out = run(Clean(null_values=["NULL", "N/A"]), dirty)
    # ' N/A ' is not the marker 'N/A' when nothing trims it; '' is not a marker here.
    assert out["name"] == ["  Ann ", None, " N/A ", "", "\tBob\n"]


def test_lowercase_and_uppercase_only_named_columns(dirty):
    out = run(Clean(trim=True, lowercase=["email"], uppercase=["name"]), dirty)
    assert out["email"] == ["a@x.com", "b@y.org", None, "mixed@case.io", "c@z.de"]
    assert out["name"] == ["ANN", "NULL", "N/A", "", "BOB"]


def test_case_folding_is_unicode_aware():
    out = run(Clean(lowercase=["c"]), batch(rows=[1, 2], c=["ÄÖÜ É", "İstanbul"]))
    assert out["c"][0] == "äöü é"


def test_etl_row_untouched(dirty):
    out = run(Clean(trim=True, null_values=["", "NULL"], lowercase=["email"]), dirty)
    assert out[ROW] == [1, 2, 3, 5, 9]


def test_non_text_columns_untouched():
    b = pa.record_batch({"n": pa.array([1, None, 3], pa.int64()),
                         "s": pa.array([" x ", "NULL", None]),
                         ROW: pa.array([1, 2, 3], pa.int64())})
    c = Clean(trim=True, null_values=["NULL"])
    c.setup(b.schema)
    out = c.process(b)
    assert out.column("n").type == pa.int64()
    assert out.to_pydict() == {"n": [1, None, 3], "s": ["x", None, None], ROW: [1, 2, 3]}


def test_unknown_column_in_lowercase_is_spec_error(dirty):
    with pytest.raises(SpecError) as info:
        Clean(lowercase=["nope"]).setup(dirty.schema)
    assert info.value.key == "lowercase"
    assert "'nope'" in str(info.value)
    assert "email" in str(info.value)       # lists what is available


def test_unknown_column_in_uppercase_is_spec_error(dirty):
    with pytest.raises(SpecError) as info:
        Clean(uppercase=["nope"]).setup(dirty.schema)
    assert info.value.key == "uppercase"


def test_etl_row_cannot_be_case_folded(dirty):
    with pytest.raises(SpecError) as info:
        Clean(lowercase=[ROW]).setup(dirty.schema)
    assert info.value.key == "lowercase"


def test_same_column_lower_and_upper_is_spec_error(dirty):
    with pytest.raises(SpecError, match="'email'"):
        Clean(lowercase=["email"], uppercase=["email"]).setup(dirty.schema)


def test_empty_batch():
    b = batch(rows=[], a=[])
    assert run(Clean(trim=True, null_values=[""], lowercase=["a"]), b) == {"a": [], ROW: []}


@pytest.mark.parametrize("seed", range(5))
def test_ascii_shortcuts_give_what_the_unicode_kernels_give(seed):
    """Plain-ASCII columns take the ASCII kernels or skip the trim: the result must be
    exactly the UTF-8 kernels' (which also strip the separators 0x1C-0x1F)."""
    rng = random.Random(seed)
    alphabet = "aZ9 -_.\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f" + ("é\u00a0\u2003" if seed % 2 else "")
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(3000)]
    values += [None, "", "NULL", " NULL "]
    def without(chars):
        return [v.translate({ord(c): None for c in chars}) if v else v for v in values]

    batch = pa.record_batch({"a": values,                          # UTF-8 kernels
                             "b": without("\x1c\x1d\x1e\x1f"),     # ASCII trim (odd seeds: UTF-8)
                             "c": without(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f")})   # no trim needed
    phase = Clean(trim=True, null_values=["", "NULL"], lowercase=["a"], uppercase=["b"])
    phase.setup(batch.schema)
    got = phase.process(batch)
    for name, fold in (("a", pc.utf8_lower), ("b", pc.utf8_upper), ("c", lambda x: x)):
        expected = pc.utf8_trim_whitespace(batch.column(name))
        expected = pc.if_else(pc.is_in(expected, pa.array(["", "NULL"])), pa.scalar(None, pa.string()),
                              expected)
        assert got.column(name).to_pylist() == fold(expected).to_pylist()
