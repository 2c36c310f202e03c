"""One plan shape (ADR 0022): a plain pipeline is one unfiltered target, a branched one a
target per branch; what differs is data on the target, and the figures are as before: a
plain job's refusals are its rejects and not loaded, a branched job's rows_loaded counts
the rows reaching the branches and a branch's refusals are the branch's own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from etlconsole.engine.plan import make_plan
from etlconsole.spec import load_spec

from .helpers import Cli, assert_summary, query

HEADER = "id,status,quantity\n"
# 12 records: record 5 fails validation (quantity 0); quantities 7 are refused by the
# destination's CHECK (records 3 and 9, both 'new')
ROWS = [(1, "new", 1), (2, "paid", 2), (3, "new", 7), (4, "paid", 4), (5, "new", 0),
        (6, "paid", 6), (7, "new", 3), (8, "paid", 8), (9, "new", 7), (10, "paid", 1),
        (11, "new", 2), (12, "paid", 5)]

MAIN = '''name = "shape"

[source]
path = "data.csv"

[[phases]]
type = "validate"
on_error = "reject"
rules = [ { column = "quantity", type = "int64", min = 1 } ]

[[phases]]
type = "transform"
cast = { id = "int64", quantity = "int64" }
'''

PLAIN = MAIN + '''
[[phases]]
type = "load"
path = "w.db"
table = "t"
'''

BRANCHED = MAIN + '''
[[phases]]
type = "branch"

[[phases.branches]]
name = "new"
filter = "status == 'new'"

[[phases.branches.phases]]
type = "load"
path = "w.db"
table = "t"

[[phases.branches]]
name = "all"

[[phases.branches.phases]]
type = "load"
path = "all.db"
table = "t"
'''


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text(
        HEADER + "".join(f"{i},{s},{q}\n" for i, s, q in ROWS), encoding="utf-8")
    db = sqlite3.connect(tmp_path / "w.db")      # refuses quantity 7
    db.execute("CREATE TABLE t (id INTEGER, status TEXT, quantity INTEGER CHECK (quantity != 7))")
    db.commit()
    db.close()
    (tmp_path / "plain.toml").write_text(PLAIN, encoding="utf-8")
    (tmp_path / "branched.toml").write_text(BRANCHED, encoding="utf-8")
    return tmp_path


def test_a_plain_plan_is_one_unfiltered_target(folder):
    plan = make_plan(load_spec(folder / "plain.toml"))
    [t] = plan.targets
    assert t.name is None and t.filter is None and t.phases == []
    assert t.load_label == plan.phases[-1].label == "phase 3 (load)"
    assert t.refusals_are_job_rejects
    assert plan.branches == [] and plan.load is t.load
    assert plan.destination_path == t.destination_path == (folder / "w.db").resolve()
    assert t.output_schema.names == ["id", "status", "quantity"]
    info = plan.describe()
    assert info["destination"] == info["destinations"][0] and "branch" not in info["destination"]
    assert info["branches"] == []


def test_a_branched_plan_is_a_target_per_branch(folder):
    plan = make_plan(load_spec(folder / "branched.toml"))
    assert [t.name for t in plan.targets] == ["new", "all"]
    assert plan.branches == plan.targets and plan.load is None and plan.destination_path is None
    assert not any(t.refusals_are_job_rejects for t in plan.targets)
    assert [t.load_label for t in plan.targets] == [
        "phase 3 (branch) > new > phase 1 (load)", "phase 3 (branch) > all > phase 1 (load)"]
    info = plan.describe()
    assert info["destination"] is None
    assert [d["branch"] for d in info["destinations"]] == ["new", "all"]


def test_plain_job_refusals_are_rejects_of_the_job(folder):
    cli = Cli(folder, folder / "state.db")
    res = cli("run", "plain.toml", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert_summary(s)
    assert (s["rows_read"], s["rows_loaded"], s["rows_rejected"]) == (12, 9, 3)
    assert "branches" not in s and s["destination"]["table"] == "t"
    assert query(folder / "w.db", "SELECT id FROM t ORDER BY id") == [
        (i,) for i, _, q in ROWS if q not in (0, 7)]
    shown = cli("show", s["job_id"], "--json").last_json()
    assert (shown["rows_loaded"], shown["rows_rejected"]) == (9, 3)
    load = [p for p in shown["phase_stats"] if p["label"] == "phase 3 (load)"]
    assert load and load[0]["rejected"] == 2 and load[0]["rows_out"] == 9
    rejects = cli("rejects", s["job_id"], "--json").json_lines()
    assert sorted((r["row"], r["phase"], r["rule"]) for r in rejects) == [
        (3, "load", "check"), (5, "validate", "min"), (9, "load", "check")]


def test_branched_job_counts_rows_reaching_the_branches(folder):
    cli = Cli(folder, folder / "state.db")
    res = cli("run", "branched.toml", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert_summary(s)
    # 11 rows reach the branches; the 'new' branch's destination refuses 2 of its 5
    assert (s["rows_read"], s["rows_loaded"], s["rows_rejected"]) == (12, 11, 1)
    assert s["destination"] is None
    by = {b["branch"]: b for b in s["branches"]}
    assert (by["new"]["rows_in"], by["new"]["filtered"], by["new"]["refused"],
            by["new"]["loaded"]) == (11, 6, 2, 3)
    assert (by["all"]["rows_in"], by["all"]["filtered"], by["all"]["refused"],
            by["all"]["loaded"]) == (11, 0, 0, 11)
    assert query(folder / "w.db", "SELECT id FROM t ORDER BY id") == [(1,), (7,), (11,)]
    assert query(folder / "all.db", "SELECT count(*) FROM t") == [(11,)]
    shown = cli("show", s["job_id"], "--json").last_json()
    assert (shown["rows_loaded"], shown["rows_rejected"]) == (11, 1)
    lines = {p["label"]: p for p in shown["phase_stats"]}
    new = lines["phase 3 (branch) > new > phase 1 (load)"]
    assert (new["branch"], new["rows_in"], new["refused"], new["loaded"]) == ("new", 11, 2, 3)
    assert lines["phase 2 (transform)"]["rows_out"] == 11       # no refusal on the main line
    rejects = cli("rejects", s["job_id"], "--json").json_lines()
    assert sorted((r["row"], r["phase"], r["rule"]) for r in rejects) == [
        (3, "load", "check"), (5, "validate", "min"), (9, "load", "check")]
