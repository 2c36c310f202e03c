"""Builder API and branch specs: the builder gives the spec a TOML file loads into,
save() round-trips, and branches are parsed, validated and planned with located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from etlconsole import PipelineBuilder
from etlconsole.engine.plan import make_plan
from etlconsole.errors import SpecError, UserError
from etlconsole.spec import load_spec, spec_from_dict

HEADER = "order_id,customer_email,status,quantity\n"
ROWS = "1,a@b.co,new,2\n2,c@d.io,cancelled,1\n"

HAND = '''name = "orders"
description = "hand-written"

[source]
path = "orders.csv"
delimiter = ","

[[phases]]
type = "clean"
trim = true
when = { env = "CLEAN_IT", min_rows = 1 }

[[phases]]
type = "validate"
enabled = false
rules = [ { column = "order_id", required = true } ]

[[phases]]
type = "transform"
checkpoint = true
cast = { order_id = "int64", quantity = "int64" }

[[phases]]
type = "branch"

[[phases.branches]]
name = "cancelled"
filter = "status == 'cancelled'"

[[phases.branches.phases]]
type = "map"
columns = { order_id = "id", status = "status" }

[[phases.branches.phases]]
type = "load"
destination = "parquet"
path = "cancelled"

[[phases.branches]]
name = "all"

[[phases.branches.phases]]
type = "load"
path = "warehouse.db"
table = "orders"
'''


def built(base_dir=None):
    return (PipelineBuilder("orders", description="hand-written", base_dir=base_dir)
            .source("orders.csv", delimiter=",")
            .phase("clean", trim=True, when={"env": "CLEAN_IT", "min_rows": 1})
            .phase("validate", enabled=False, rules=[{"column": "order_id", "required": True}])
            .phase("transform", checkpoint=True, cast={"order_id": "int64", "quantity": "int64"})
            .branch("cancelled", filter="status == 'cancelled'")
            .phase("map", columns={"order_id": "id", "status": "status"})
            .phase("load", destination="parquet", path="cancelled")
            .branch("all")
            .phase("load", path="warehouse.db", table="orders")
            .build())


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "orders.csv").write_text(HEADER + ROWS, encoding="utf-8")
    (tmp_path / "hand.toml").write_text(HAND, encoding="utf-8")
    return tmp_path


def test_builder_equals_the_hand_written_file(workdir):
    hand = load_spec(workdir / "hand.toml")
    spec = built()
    assert spec == hand
    assert spec.phases[0].when == {"env": "CLEAN_IT", "min_rows": 1}
    assert spec.phases[1].enabled is False and spec.phases[2].checkpoint is True
    assert [b.name for b in spec.phases[3].branches] == ["cancelled", "all"]
    assert spec.phases[3].branches[0].filter == "status == 'cancelled'"
    assert spec.branched


def test_save_round_trips(workdir):
    spec = built()
    spec.save(workdir / "saved.toml")
    again = load_spec(workdir / "saved.toml")
    assert again == spec
    assert again.to_dict() == spec.to_dict()
    # and a change shows as a difference (equality is not vacuous)
    again.phases[0].when = {"env": "OTHER"}
    assert again != spec


def test_builder_with_phases_given_as_tables(workdir):
    spec = (PipelineBuilder("orders", description="hand-written").source("orders.csv", delimiter=",")
            .phase("clean", trim=True, when={"env": "CLEAN_IT", "min_rows": 1})
            .phase("validate", enabled=False, rules=[{"column": "order_id", "required": True}])
            .phase("transform", checkpoint=True, cast={"order_id": "int64", "quantity": "int64"})
            .branch("cancelled", filter="status == 'cancelled'", phases=[
                {"type": "map", "columns": {"order_id": "id", "status": "status"}},
                {"type": "load", "destination": "parquet", "path": "cancelled"}])
            .branch("all", phases=[{"type": "load", "path": "warehouse.db", "table": "orders"}])
            .build())
    assert spec == load_spec(workdir / "hand.toml")


def test_builder_mistakes_are_spec_errors():
    with pytest.raises(SpecError, match="source"):
        PipelineBuilder("x").phase("load", path="a.db", table="t").build()
    with pytest.raises(SpecError) as info:
        PipelineBuilder("x").source("a.csv").phase("clean", when={"nope": 1}).build()
    assert info.value.key == "when.nope" and "<builder x>" in str(info.value)


def test_branched_plan(workdir):
    plan = make_plan(load_spec(workdir / "hand.toml"), env={"CLEAN_IT": "1"})
    assert plan.load is None and plan.destination_path is None
    assert [b.name for b in plan.branches] == ["cancelled", "all"]
    c, a = plan.branches
    assert c.filter is not None and c.filter_text == "status == 'cancelled'"
    assert [p.label for p in c.phases] == ["phase 4 (branch) > cancelled > phase 1 (map)",
                                           "phase 4 (branch) > cancelled > phase 2 (load)"]
    assert c.output_schema.names == ["id", "status"]
    assert c.destination_path == (workdir / "cancelled").resolve()
    assert a.load.destination == "sqlite" and a.load.table == "orders"
    assert "customer_email" in a.output_schema.names
    info = plan.describe()
    assert [d["kind"] for d in info["destinations"]] == ["parquet", "sqlite"]
    assert info["branches"][0]["filter"] == "status == 'cancelled'"


def branch_doc(**over) -> dict:
    b1 = {"name": "one", "phases": [{"type": "load", "destination": "parquet", "path": "p1"}]}
    b2 = {"name": "two", "phases": [{"type": "load", "path": "w.db", "table": "t"}]}
    b1.update(over.pop("b1", {}))
    return {"name": "x", "source": {"path": "orders.csv"},
            "phases": [{"type": "branch", "branches": [b1, b2], **over}]}


def plan_doc(workdir: Path, doc: dict, **kw):
    return make_plan(spec_from_dict(doc, file="b.toml", base_dir=workdir), **kw)


@pytest.mark.parametrize("over, key, needle", [
    ({"b1": {"filter": "status =="}}, "filter", "syntax error"),
    ({"b1": {"filter": "nosuch == 'x'"}}, "filter", "unknown column"),
    ({"b1": {"filter": "quantity"}}, "filter", "must be a condition"),
    ({"b1": {"filter": 3}}, "branches[0].filter", "must be a string"),
    ({"b1": {"name": "two"}}, "branches[1].name", "used twice"),
    ({"b1": {"colour": "red"}}, "branches[0].colour", "unknown key"),
    ({"b1": {"phases": [{"type": "clean", "trim": True}]}}, "phases", "last enabled phase must be a load"),
    ({"b1": {"phases": [{"type": "branch", "branches": []}]}}, "type", "cannot be nested"),
    ({"b1": {"phases": [{"type": "clean", "checkpoint": True},
                        {"type": "load", "destination": "csv", "path": "c"}]}}, "checkpoint",
     "cannot be checkpointed"),
    ({"b1": {"phases": [{"type": "load", "path": "w.db", "table": "t"}]}}, "path",
     "same destination"),
    ({"b1": {"phases": [{"type": "load", "destination": "parquet", "path": "p", "table": "t"}]}},
     "table", "no table"),
    ({"when": {"env": "X"}}, "when", "cannot be conditional"),
    ({"extra": 1}, "extra", "unknown option"),
])
def test_bad_branches_are_located(workdir, over, key, needle):
    with pytest.raises(SpecError) as info:
        plan_doc(workdir, branch_doc(**over))
    err = info.value
    assert err.file == "b.toml" and err.phase and "phase 1 (branch)" in err.phase, str(err)
    assert err.key == key and needle in err.detail, str(err)


def test_branch_must_be_last_and_needs_branches(workdir):
    doc = branch_doc()
    doc["phases"].append({"type": "load", "path": "z.db", "table": "z"})
    with pytest.raises(SpecError, match="only the last phase may be a"):
        plan_doc(workdir, doc)
    with pytest.raises(SpecError, match="needs"):
        plan_doc(workdir, {"name": "x", "source": {"path": "orders.csv"},
                           "phases": [{"type": "branch"}]})


def test_dest_override_with_several_branches_is_refused(workdir):
    with pytest.raises(UserError, match="--dest"):
        plan_doc(workdir, branch_doc(), dest=workdir / "x.db")


def test_phases_in_a_branch_may_be_conditional(workdir):
    doc = branch_doc(b1={"phases": [{"type": "clean", "trim": True, "when": {"env": "T"}},
                                    {"type": "load", "destination": "csv", "path": "c"}]})
    plan = plan_doc(workdir, doc, env={})
    assert plan.skipped == ["phase 1 (branch) > one > phase 1 (clean): when env = 'T': "
                            "T is not set (or empty)"]
    assert [p.type for p in plan.branches[0].phases] == ["load"]
