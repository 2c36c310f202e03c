"""validate phase: every rule, rule order, unique across batches, on_error modes, spec errors."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from etlconsole.engine.phases.base import PhaseResult
from etlconsole.engine.phases.validate import Validate
from etlconsole.errors import JobFailed, SpecError

ROW = "_etl_row"


def batch(rows=None, **cols):
    n = len(next(iter(cols.values())))
    arrays = {k: pa.array(v, pa.string()) for k, v in cols.items()}
    arrays[ROW] = pa.array(list(rows) if rows is not None else list(range(1, n + 1)), pa.int64())
    return pa.record_batch(arrays)


def validate(rules, b, **kw) -> tuple[Validate, PhaseResult]:
    v = Validate(rules, **kw)
    v.setup(b.schema)
    return v, v.process(b)


def kept(result: PhaseResult, column: str):
    return result.batch.column(column).to_pylist()


def rejected(result: PhaseResult) -> dict[int, tuple[str, str, str]]:
    """record number -> (rule, column, message)."""
    if result.rejects is None:
        return {}
    r = result.rejects
    rows = r.rows.column(ROW).to_pylist()
    assert len(rows) == len(r.rule) == len(r.column) == len(r.message)
    return {row: (rule, col, msg)
            for row, rule, col, msg in zip(rows, r.rule, r.column, r.message, strict=False)}


def rules_of(result):
    return {row: v[0] for row, v in rejected(result).items()}


def conserved(b, result):
    n_rej = len(result.rejects) if result.rejects is not None else 0
    assert result.batch.num_rows + n_rej == b.num_rows
    assert sorted(result.batch.column(ROW).to_pylist() + list(rejected(result))) == \
        sorted(b.column(ROW).to_pylist())


# --- individual rules --------------------------------------------------------------------

def test_required_rejects_null_and_empty_string():
    b = batch(a=["x", "", None, " "], rows=[10, 11, 12, 13])
    _, r = validate([{"column": "a", "required": True}], b)
    conserved(b, r)
    assert kept(r, "a") == ["x", " "]
    assert kept(r, ROW) == [10, 13]
    assert rejected(r) == {11: ("required", "a", "value is required"),
                           12: ("required", "a", "value is required")}


def test_type_rule_rejects_unparseable_but_not_null():
    b = batch(a=["1", "x", None, "3", "1.5"])
    _, r = validate([{"column": "a", "type": "int64"}], b)
    conserved(b, r)
    # the batch keeps its text; validate does not cast
    assert kept(r, "a") == ["1", None, "3"]
    assert rules_of(r) == {2: "type", 5: "type"}
    msgs = rejected(r)
    assert "'x'" in msgs[2][2] and "int64" in msgs[2][2]
    assert "'1.5'" in msgs[5][2]


def test_type_rule_with_date_formats():
    b = batch(d=["5/1/2024", "2024-01-05", "31/2/2024"])
    _, r = validate([{"column": "d", "type": "date", "formats": ["%d/%m/%Y"]}], b)
    assert kept(r, "d") == ["5/1/2024"]
    assert rules_of(r) == {2: "type", 3: "type"}


def test_pattern_rule_re2():
    b = batch(e=["a@b.co", "no-at", None, "x y@z.io", "ok@ok.org"])
    _, r = validate([{"column": "e", "pattern": r"^[^@ ]+@[^@ ]+\.[a-z]{2,}$"}], b)
    conserved(b, r)
    assert kept(r, "e") == ["a@b.co", None, "ok@ok.org"]
    msgs = rejected(r)
    assert set(msgs) == {2, 4}
    assert msgs[2][0] == "pattern" and "'no-at'" in msgs[2][2]
    assert "'x y@z.io'" in msgs[4][2]


def test_pattern_uses_re2_semantics_digit_class():
    b = batch(a=["123", "12a", "٣"])
    _, r = validate([{"column": "a", "pattern": r"^\d+$"}], b)
    assert kept(r, "a") == ["123"]


def test_min_max_numbers_without_type():
    b = batch(q=["0", "1", "10", "11", "2.5", "-3", None])
    _, r = validate([{"column": "q", "min": 1, "max": 10}], b)
    conserved(b, r)
    assert kept(r, "q") == ["1", "10", "2.5", None]
    msgs = rejected(r)
    assert {k: v[0] for k, v in msgs.items()} == {1: "min", 4: "max", 6: "min"}
    assert msgs[1][2].startswith("0 ") and "minimum 1" in msgs[1][2]
    assert msgs[4][2].startswith("11 ") and "maximum 10" in msgs[4][2]


def test_min_max_with_int_type():
    b = batch(q=["0", "1", "10000", "10001", "x"])
    _, r = validate([{"column": "q", "type": "int64", "min": 1, "max": 10000}], b)
    assert kept(r, "q") == ["1", "10000"]
    assert rules_of(r) == {1: "min", 4: "max", 5: "type"}


def test_min_max_with_date_bounds():
    b = batch(d=["2023-12-31", "2024-01-01", "2024-06-15", "2024-12-31", "2025-01-01", None])
    _, r = validate([{"column": "d", "type": "date", "min": "2024-01-01", "max": "2024-12-31"}], b)
    conserved(b, r)
    assert kept(r, "d") == ["2024-01-01", "2024-06-15", "2024-12-31", None]
    msgs = rejected(r)
    assert msgs[1][0] == "min" and "2023-12-31" in msgs[1][2] and "2024-01-01" in msgs[1][2]
    assert msgs[5][0] == "max" and "2025-01-01" in msgs[5][2]


def test_allowed_is_case_sensitive():
    b = batch(s=["new", "NEW", "paid", "x"])
    _, r = validate([{"column": "s", "allowed": ["new", "paid"]}], b)
    conserved(b, r)
    assert kept(r, "s") == ["new", "paid"]
    msgs = rejected(r)
    assert set(msgs) == {2, 4}
    assert msgs[2][0] == "allowed" and "'NEW'" in msgs[2][2] and "new, paid" in msgs[2][2]


def test_allowed_lets_null_through():
    b = batch(s=["new", None])
    _, r = validate([{"column": "s", "allowed": ["new"]}], b)
    assert r.rejects is None
    assert kept(r, "s") == ["new", None]


def test_max_length_counts_characters_not_bytes():
    b = batch(c=["EUR", "EURO", "äöü", "äöüß", "", None])
    _, r = validate([{"column": "c", "max_length": 3}], b)
    conserved(b, r)
    assert kept(r, "c") == ["EUR", "äöü", "", None]
    msgs = rejected(r)
    assert set(msgs) == {2, 4}
    assert msgs[2][0] == "max_length" and "'EURO'" in msgs[2][2] and "3" in msgs[2][2]


# --- unique ------------------------------------------------------------------------------

def test_unique_within_a_batch_first_occurrence_wins():
    b = batch(id=["1", "2", "1", None, None, "2", "3"])
    _, r = validate([{"column": "id", "unique": True}], b)
    conserved(b, r)
    assert kept(r, ROW) == [1, 2, 4, 5, 7]      # nulls are not duplicates of each other
    msgs = rejected(r)
    assert set(msgs) == {3, 6}
    assert msgs[3][0] == "unique" and "'1'" in msgs[3][2]


def test_unique_across_batches():
    v = Validate([{"column": "id", "unique": True}])
    b1 = batch(id=["1", "2", "3"], rows=[1, 2, 3])
    v.setup(b1.schema)
    r1 = v.process(b1)
    assert r1.rejects is None
    r2 = v.process(batch(id=["4", "2", "5", "4"], rows=[4, 5, 6, 7]))
    assert kept(r2, ROW) == [4, 6]
    assert rules_of(r2) == {5: "unique", 7: "unique"}
    r3 = v.process(batch(id=["5", "6"], rows=[8, 9]))
    assert kept(r3, ROW) == [9]
    v.teardown()


def test_unique_on_typed_values():
    # with a type, '01' and '1' are the same int64 key
    b = batch(id=["1", "01", "x", "x"])
    _, r = validate([{"column": "id", "type": "int64", "unique": True}], b)
    assert kept(r, ROW) == [1]
    assert rules_of(r) == {2: "unique", 3: "type", 4: "type"}


def test_row_rejected_for_another_rule_does_not_use_up_a_unique_key():
    v = Validate([{"column": "id", "unique": True}, {"column": "q", "type": "int64"}])
    b1 = batch(id=["1", "2", "3", "3"], q=["1", "bad", "bad", "7"], rows=[1, 2, 3, 4])
    v.setup(b1.schema)
    r1 = v.process(b1)
    # row 3 fails 'type', so its id 3 is still free for row 4 in the same batch
    assert kept(r1, ROW) == [1, 4]
    assert rules_of(r1) == {2: "type", 3: "type"}
    # ... and id 2 (row 2 was rejected) is free in a later batch; id 1 is not
    r2 = v.process(batch(id=["2", "1"], q=["5", "5"], rows=[5, 6]))
    assert kept(r2, ROW) == [5]
    assert rules_of(r2) == {6: "unique"}


# --- rule order, messages, row numbers ---------------------------------------------------

def test_first_failing_rule_wins_in_rule_order():
    rules = [{"column": "a", "required": True, "type": "int64", "min": 5},
             {"column": "b", "allowed": ["ok"]},
             {"column": "b", "max_length": 1}]
    b = batch(a=[None, "z", "3", "7", "7", "9"], b=["no", "no", "no", "no", "ok", "ok"],
              rows=[21, 22, 23, 24, 25, 26])
    _, r = validate(rules, b)
    conserved(b, r)
    assert kept(r, ROW) == []   # 'ok' is longer than 1 character
    assert rules_of(r) == {21: "required", 22: "type", 23: "min", 24: "allowed",
                           25: "max_length", 26: "max_length"}
    cols = {row: v[1] for row, v in rejected(r).items()}
    assert cols == {21: "a", 22: "a", 23: "a", 24: "b", 25: "b", 26: "b"}


def test_rejected_rows_keep_their_values_and_record_numbers():
    b = batch(id=["1", "x", "3"], name=["ann", "bob", "cy"], rows=[101, 205, 307])
    _, r = validate([{"column": "id", "type": "int64"}], b)
    records = r.rejects.records("validate", "phase 2 (validate)")
    assert records == [{"row": 205, "phase": "validate", "phase_label": "phase 2 (validate)",
                        "rule": "type", "column": "id",
                        "message": "'x' is not a valid int64",
                        "values": json.dumps({"id": "x", "name": "bob"})}]
    assert kept(r, ROW) == [101, 307]


def test_long_value_is_shortened_in_message():
    long = "y" * 500
    _, r = validate([{"column": "a", "type": "int64"}], batch(a=[long]))
    msg = rejected(r)[1][2]
    assert msg.startswith("'yyyy") and len(msg) < 120


def test_all_good_returns_no_rejects():
    b = batch(a=["1", "2"])
    _, r = validate([{"column": "a", "required": True, "type": "int64"}], b)
    assert r.rejects is None and r.batch.num_rows == 2


# --- on_error ----------------------------------------------------------------------------

def test_on_error_warn_keeps_rows_and_counts():
    b = batch(a=["1", "x", "y", None])
    _, r = validate([{"column": "a", "type": "int64"}], b, on_error="warn")
    assert r.rejects is None
    assert r.batch.num_rows == 4 and kept(r, "a") == ["1", "x", "y", None]
    assert r.warnings == 2
    assert any("'x'" in n for n in r.notes)


def test_on_error_fail_raises_job_failed_naming_row_column_rule():
    b = batch(a=["1", "2", "oops"], rows=[40, 41, 42])
    v = Validate([{"column": "a", "type": "int64"}], on_error="fail")
    v.setup(b.schema)
    with pytest.raises(JobFailed) as info:
        v.process(b)
    text = str(info.value)
    assert "row 42" in text and "'a'" in text and "type" in text and "'oops'" in text


def test_on_error_fail_without_bad_rows_passes():
    b = batch(a=["1", "2"])
    _, r = validate([{"column": "a", "type": "int64"}], b, on_error="fail")
    assert r.batch.num_rows == 2


# --- spec errors -------------------------------------------------------------------------

@pytest.mark.parametrize("rules, key", [
    ([{"colum": "a"}], "rules[0].colum"),
    ([{"column": "a"}, {"column": "a", "requird": True}], "rules[1].requird"),
    ([{"required": True}], "rules[0].column"),
    ([{"column": "a", "pattern": "(["}], "rules[0].pattern"),
    ([{"column": "a", "pattern": "(?=x)y"}], "rules[0].pattern"),       # lookahead: not RE2
    ([{"column": "a", "type": "money"}], "rules[0].type"),
    ([{"column": "a", "required": "yes"}], "rules[0].required"),
    ([{"column": "a", "min": "abc"}], "rules[0].min"),
    ([{"column": "a", "type": "date", "max": "2024-13-01"}], "rules[0].max"),
    ([{"column": "a", "max_length": -1}], "rules[0].max_length"),
    ([{"column": "a", "allowed": "new"}], "rules[0].allowed"),
    ([{"column": "a", "type": "int64", "formats": ["%d"]}], "rules[0].formats"),
    (["a"], "rules[0]"),
])
def test_bad_rule_is_spec_error_with_key(rules, key):
    with pytest.raises(SpecError) as info:
        Validate(rules)
    assert info.value.key == key
    assert str(info.value).startswith(key + ":")


def test_bad_regex_message_says_regular_expression():
    with pytest.raises(SpecError, match="regular expression"):
        Validate([{"column": "a", "pattern": "(["}])


def test_unknown_column_is_spec_error_at_setup():
    v = Validate([{"column": "a", "required": True}, {"column": "nope", "required": True}])
    with pytest.raises(SpecError) as info:
        v.setup(batch(a=["1"]).schema)
    assert info.value.key == "rules[1].column"
    assert "'nope'" in str(info.value)


def test_etl_row_is_not_a_user_column():
    v = Validate([{"column": ROW, "required": True}])
    with pytest.raises(SpecError):
        v.setup(batch(a=["1"]).schema)


def test_bound_without_type_rejects_non_numbers():
    import pyarrow as pa
    from etlconsole.engine.phases.validate import Validate
    v = Validate(rules=[{"column": "q", "min": 1}])
    b = pa.record_batch({"q": pa.array(["5", "x", "0", None]),
                         "_etl_row": pa.array([1, 2, 3, 4], pa.int64())})
    v.setup(b.schema)
    r = v.process(b)
    assert r.batch.column("_etl_row").to_pylist() == [1, 4]
    assert r.rejects.rule == ["min", "min"]
    assert "'x' is not a number" in r.rejects.message[0]


def test_on_error_fail_names_the_earliest_bad_row():
    import pyarrow as pa
    import pytest
    from etlconsole.engine.phases.validate import Validate
    from etlconsole.errors import JobFailed
    v = Validate(rules=[{"column": "a", "required": True}, {"column": "b", "type": "int64"}],
                 on_error="fail")
    b = pa.record_batch({"a": pa.array(["x", "y", None]), "b": pa.array(["1", "z", "3"]),
                         "_etl_row": pa.array([1, 2, 3], pa.int64())})
    v.setup(b.schema)
    with pytest.raises(JobFailed, match=r"row 2, column 'b', rule type"):
        v.process(b)
