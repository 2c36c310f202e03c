"""transform (cast, derive, rename) and map (select + rename) phases."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from etlconsole.engine.phases.base import PhaseResult
from etlconsole.engine.phases.mapping import Map
from etlconsole.engine.phases.transform import Transform
from etlconsole.engine.phases.validate import Validate
from etlconsole.errors import SpecError

ROW = "_etl_row"


def batch(rows=None, **cols):
    n = len(next(iter(cols.values())))
    arrays = {k: pa.array(v, pa.string()) for k, v in cols.items()}
    arrays[ROW] = pa.array(list(rows) if rows is not None else list(range(1, n + 1)), pa.int64())
    return pa.record_batch(arrays)


def transform(b, **options) -> PhaseResult:
    t = Transform(**options)
    t.setup(b.schema)
    out = t.process(b)
    return out if isinstance(out, PhaseResult) else PhaseResult(out)


@pytest.fixture
def orders():
    return batch(qty=["2", "x", "3", "4"], price=["1.50", "2", "abc", "0.25"],
                 day=["2024-02-29", "2024-03-01", "2024-03-02", "2023-02-29"],
                 name=["a", "b", "c", "d"], rows=[11, 12, 13, 14])


# --- cast --------------------------------------------------------------------------------

def test_cast_types_good_rows(orders):
    r = transform(orders, cast={"qty": "int64", "price": "float64"})
    good = r.batch
    assert good.schema.field("qty").type == pa.int64()
    assert good.schema.field("price").type == pa.float64()
    assert good.schema.field("name").type == pa.string()
    assert good.to_pydict() == {"qty": [2, 4], "price": [1.5, 0.25],
                                "day": ["2024-02-29", "2023-02-29"], "name": ["a", "d"],
                                ROW: [11, 14]}


def test_cast_failure_rejects_row_with_original_text(orders):
    r = transform(orders, cast={"qty": "int64", "price": "float64", "day": "date"})
    assert r.batch.column(ROW).to_pylist() == [11]
    assert r.batch.column("day").to_pylist() == [dt.date(2024, 2, 29)]
    rej = r.rejects
    assert rej.rule == ["cast", "cast", "cast"]
    records = {rec["row"]: rec for rec in rej.records("phase 3 (transform)")}
    assert set(records) == {12, 13, 14}
    assert records[12]["column"] == "qty" and "'x'" in records[12]["message"]
    assert records[13]["column"] == "price" and "'abc'" in records[13]["message"]
    assert records[14]["column"] == "day" and "'2023-02-29'" in records[14]["message"]
    # the values are the row's original text, not half-cast values (qty of row 13 is "3")
    assert json.loads(records[13]["values"]) == {"qty": "3", "price": "abc",
                                                 "day": "2024-03-02", "name": "c"}
    assert json.loads(records[12]["values"])["qty"] == "x"
    assert rej.rows.schema.field("qty").type == pa.string()


def test_cast_null_is_not_a_failure():
    r = transform(batch(q=["1", None]), cast={"q": "int64"})
    assert r.rejects is None
    assert r.batch.column("q").to_pylist() == [1, None]


def test_cast_with_formats():
    r = transform(batch(d=["5/1/2024", "2024-01-05"]), cast={"d": "date"},
                  formats={"d": ["%d/%m/%Y"]})
    assert r.batch.column("d").to_pylist() == [dt.date(2024, 1, 5)]
    assert r.rejects.rows.column(ROW).to_pylist() == [2]


def test_validate_reject_then_cast_is_consistent():
    # validate remembers what surviving rows parse to; the cast must agree with it
    b = batch(q=["1", "x", "3"])
    v = Validate([{"column": "q", "type": "int64"}])
    v.setup(b.schema)
    vr = v.process(b)
    r = transform(vr.batch, cast={"q": "int64"})
    assert r.rejects is None
    assert r.batch.to_pydict() == {"q": [1, 3], ROW: [1, 3]}


def test_warned_bad_value_is_still_rejected_by_cast():
    b = batch(q=["1", "x"])
    v = Validate([{"column": "q", "type": "int64"}], on_error="warn")
    v.setup(b.schema)
    vr = v.process(b)
    assert vr.warnings == 1 and vr.batch.num_rows == 2
    r = transform(vr.batch, cast={"q": "int64"})
    assert r.batch.to_pydict() == {"q": [1], ROW: [1]}
    assert r.rejects is not None and r.rejects.rule == ["cast"]


# --- derive, rename ----------------------------------------------------------------------

def test_derive_uses_cast_columns(orders):
    r = transform(orders, cast={"qty": "int64", "price": "float64"},
                  derive={"total": "qty * price", "label": "upper(name)"})
    assert r.batch.column("total").to_pylist() == [3.0, 1.0]
    assert r.batch.column("label").to_pylist() == ["A", "D"]
    assert r.batch.column(ROW).to_pylist() == [11, 14]


def test_derive_can_use_an_earlier_derived_column():
    r = transform(batch(q=["2", "5"]), cast={"q": "int64"},
                  derive={"double": "q * 2", "quad": "double * 2"})
    assert r.batch.column("quad").to_pylist() == [8, 20]


def test_rename(orders):
    r = transform(orders, cast={"qty": "int64"}, rename={"qty": "quantity", "name": "who"})
    assert r.batch.schema.names == ["quantity", "price", "day", "who", ROW]
    assert r.batch.column("quantity").to_pylist() == [2, 3, 4]


def test_rename_a_derived_column():
    r = transform(batch(q=["2"]), derive={"t": "q"}, rename={"t": "total"})
    assert r.batch.schema.names == ["q", ROW, "total"]


@pytest.mark.parametrize("options, key", [
    ({"cast": {"nope": "int64"}}, "cast.nope"),
    ({"formats": {"nope": ["%d"]}}, "formats.nope"),
    ({"rename": {"nope": "x"}}, "rename.nope"),
    ({"derive": {"x": "nope + 1"}}, "derive.x"),
    ({"rename": {"qty": "name"}}, "rename"),               # name clash
])
def test_transform_setup_errors(orders, options, key):
    with pytest.raises(SpecError) as info:
        Transform(**options).setup(orders.schema)
    assert info.value.key == key


@pytest.mark.parametrize("options, key", [
    ({"cast": {"qty": "money"}}, "cast.qty"),
    ({"derive": {"x": "__import__('os')"}}, "derive.x"),
    ({"derive": {"x": 3}}, "derive.x"),
])
def test_transform_construction_errors(options, key):
    with pytest.raises(SpecError) as info:
        Transform(**options)
    assert info.value.key == key


@pytest.mark.parametrize("options", [{"rename": {"qty": "_etl_row"}},
                                     {"derive": {"_etl_row": "1"}},
                                     {"derive": {"_etl_x": "qty"}}])
def test_transform_refuses_etl_targets(orders, options):
    with pytest.raises(SpecError):
        Transform(**options).setup(orders.schema)


# --- map ---------------------------------------------------------------------------------

def test_map_keeps_only_mapped_columns_plus_etl_row(orders):
    m = Map({"qty": "quantity", "name": "customer"})
    m.setup(orders.schema)
    out = m.process(orders)
    assert out.schema.names == ["quantity", "customer", ROW]
    assert out.to_pydict() == {"quantity": ["2", "x", "3", "4"], "customer": ["a", "b", "c", "d"],
                               ROW: [11, 12, 13, 14]}


def test_map_order_follows_mapping_and_identity_names(orders):
    m = Map({"name": "name", "day": "ordered_on"})
    m.setup(orders.schema)
    assert m.process(orders).schema.names == ["name", "ordered_on", ROW]


def test_map_duplicate_target_is_spec_error():
    with pytest.raises(SpecError, match="'x'") as info:
        Map({"qty": "x", "name": "x"})
    assert info.value.key == "columns"


@pytest.mark.parametrize("target", ["_etl_row", "_etl_batch"])
def test_map_refuses_etl_target(target):
    with pytest.raises(SpecError, match="_etl_") as info:
        Map({"qty": target})
    assert info.value.key == "columns.qty"


@pytest.mark.parametrize("columns", [{}, {"qty": ""}, {"qty": 5}])
def test_map_empty_or_bad_target(columns):
    with pytest.raises(SpecError):
        Map(columns)


def test_map_unknown_source_column_at_setup(orders):
    with pytest.raises(SpecError) as info:
        Map({"nope": "x"}).setup(orders.schema)
    assert info.value.key == "columns.nope"
