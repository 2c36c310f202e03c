"""Conditional phases: the shape of `when` (load time), its decision (plan time), the row
estimate, the schema flowing past skipped phases, and decisions reused on resume."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from etlconsole.engine.conditions import ConditionContext, check_when, estimate_rows, evaluate
from etlconsole.engine.plan import decisions_from_events, make_plan
from etlconsole.errors import SpecError
from etlconsole.spec import load_spec

HEADER = "order_id,customer_email,status,quantity\n"


def rows(n: int) -> str:
    return "".join(f"{i},u{i}@ex.org,new,{i % 7 + 1}\n" for i in range(1, n + 1))


def pipeline(when: str, *, more: str = "") -> str:
    return f'''name = "c"
[source]
path = "orders.csv"

[[phases]]
type = "clean"
uppercase = ["status"]
when = {when}

[[phases]]
type = "transform"
derive = {{ loud = "status" }}
{more}

[[phases]]
type = "load"
path = "out.db"
table = "t"
'''


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "orders.csv").write_text(HEADER + rows(50), encoding="utf-8")
    return tmp_path


def plan(workdir: Path, text: str, **kw):
    (workdir / "p.toml").write_text(text, encoding="utf-8")
    return make_plan(load_spec(workdir / "p.toml"), **kw)


@pytest.mark.parametrize("when, key, needle", [
    ("true", "when", "must be a table"),
    ("{}", "when", "empty"),
    ('{ colum_exists = "x" }', "when.colum_exists", "unknown condition"),
    ('{ env = "1BAD" }', "when.env", "environment variable"),
    ('{ env = [] }', "when.env", "non-empty list"),
    ('{ min_rows = -1 }', "when.min_rows", ">= 0"),
    ('{ max_rows = "10" }', "when.max_rows", "whole number"),
    ('{ min_rows = 10, max_rows = 5 }', "when.min_rows", "never holds"),
    ('"not a reference"', "when", "package.module:function"),
    ('{ predicate = "nocolon" }', "when.predicate", "package.module:function"),
    ('{ not = 3 }', "when.not", "must be a table"),
    ('{ any = [] }', "when.any", "non-empty list"),
    ('{ any = [ { env = "A" }, { bogus = 1 } ] }', "when.any[1].bogus", "unknown condition"),
])
def test_bad_when_names_file_phase_and_key(workdir, when, key, needle):
    with pytest.raises(SpecError) as info:
        plan(workdir, pipeline(when))
    err = info.value
    assert err.file.endswith("p.toml") and err.phase == "phase 1 (clean)", str(err)
    assert err.key == key and needle in err.detail, str(err)


def test_when_on_a_load_is_refused(workdir):
    text = pipeline('{ env = "X" }').replace('table = "t"', 'table = "t"\nwhen = { env = "X" }')
    with pytest.raises(SpecError) as info:
        plan(workdir, text)
    assert info.value.phase == "phase 3 (load)" and info.value.key == "when"


def test_env_condition_skips_and_runs(workdir):
    p = plan(workdir, pipeline('{ env = "UPPER_STATUS" }'), env={})
    assert [x.label for x in p.phases] == ["phase 2 (transform)", "phase 3 (load)"]
    assert p.skipped == ["phase 1 (clean): when env = 'UPPER_STATUS': UPPER_STATUS is not set "
                         "(or empty)"]
    assert p.conditions[0]["holds"] is False
    p = plan(workdir, pipeline('{ env = "UPPER_STATUS" }'), env={"UPPER_STATUS": ""})
    assert p.conditions[0]["holds"] is False          # set but empty: does not hold
    p = plan(workdir, pipeline('{ env = "UPPER_STATUS" }'), env={"UPPER_STATUS": "1"})
    assert [x.label for x in p.phases][0] == "phase 1 (clean)" and p.skipped == []
    assert p.conditions[0]["holds"] is True


def test_column_exists_sees_the_columns_flowing_into_the_phase(workdir):
    # `loud` is made by phase 2, so a condition on phase 3 sees it, one on phase 1 does not
    more = '''
[[phases]]
type = "clean"
lowercase = ["loud"]
when = { column_exists = "loud" }
'''
    p = plan(workdir, pipeline('{ column_exists = "loud" }', more=more))
    assert [x.label for x in p.phases] == ["phase 2 (transform)", "phase 3 (clean)",
                                           "phase 4 (load)"]
    assert p.skipped == ["phase 1 (clean): when column_exists = 'loud': column 'loud' is missing"]
    p = plan(workdir, pipeline('{ column_exists = ["status", "quantity"] }'))
    assert p.skipped == []


def test_skipped_phase_is_out_of_the_schema_flow(workdir):
    """A later phase that needs the skipped phase's column is an error naming it."""
    text = pipeline('{ env = "NOPE" }').replace(
        'type = "clean"\nuppercase = ["status"]',
        'type = "transform"\nderive = { shout = "upper(status)" }')
    text = text.replace('derive = { loud = "status" }', 'derive = { loud = "shout" }')
    with pytest.raises(SpecError) as info:
        plan(workdir, text, env={})
    assert "phase 2 (transform)" in str(info.value) and "shout" in str(info.value)
    p = plan(workdir, text, env={"NOPE": "yes"})
    assert "shout" in p.output_schema.names


def test_min_and_max_rows(workdir):
    assert plan(workdir, pipeline("{ min_rows = 50 }")).skipped == []
    assert plan(workdir, pipeline("{ min_rows = 51 }")).skipped[0].endswith("50 rows < 51")
    assert plan(workdir, pipeline("{ max_rows = 50 }")).skipped == []
    assert plan(workdir, pipeline("{ max_rows = 49 }")).skipped[0].endswith("50 rows > 49")
    assert plan(workdir, pipeline("{ max_rows = 49 }")).estimated_rows == 50


def test_not_and_any(workdir):
    p = plan(workdir, pipeline('{ not = { env = "SKIP" } }'), env={})
    assert p.skipped == []
    p = plan(workdir, pipeline('{ not = { env = "SKIP" } }'), env={"SKIP": "1"})
    assert len(p.skipped) == 1 and "not (SKIP is set)" in p.skipped[0]
    p = plan(workdir, pipeline('{ any = [ { env = "A" }, { column_exists = "status" } ] }'), env={})
    assert p.skipped == []
    p = plan(workdir, pipeline('{ any = [ { env = "A" }, { column_exists = "zz" } ] }'), env={})
    assert len(p.skipped) == 1


def test_several_keys_must_all_hold(workdir):
    p = plan(workdir, pipeline('{ env = "A", min_rows = 1 }'), env={"A": "1"})
    assert p.skipped == []
    p = plan(workdir, pipeline('{ env = "A", min_rows = 1000 }'), env={"A": "1"})
    assert len(p.skipped) == 1 and "1,000" in p.skipped[0] and "A is set" not in p.skipped[0]
    checks = p.conditions[0]["checks"]
    assert [c["holds"] for c in checks] == [True, False]


@pytest.fixture
def predicates(tmp_path, monkeypatch):
    mod = tmp_path / "mods"
    mod.mkdir()
    (mod / "mypreds.py").write_text(textwrap.dedent('''
        SEEN = []
        def big(ctx):
            SEEN.append(ctx)
            return ctx.estimated_rows > 10
        def has(ctx):
            return "status" in ctx.columns and ctx.source.name == "orders.csv"
        def not_bool(ctx):
            return "yes"
        def boom(ctx):
            raise RuntimeError("kaput")
    '''), encoding="utf-8")
    monkeypatch.syspath_prepend(str(mod))
    yield
    sys.modules.pop("mypreds", None)


def test_plugin_predicate(workdir, predicates):
    p = plan(workdir, pipeline('"mypreds:big"'))
    assert p.skipped == []
    import mypreds
    ctx = mypreds.SEEN[-1]
    assert ctx.columns == ["order_id", "customer_email", "status", "quantity"]
    assert ctx.source_columns == ctx.columns and ctx.phase == "phase 1 (clean)"
    assert ctx.pipeline == "c" and ctx.estimated_rows == 50
    p = plan(workdir, pipeline('{ predicate = "mypreds:has", env = "X" }'), env={"X": "1"})
    assert p.skipped == []


@pytest.mark.parametrize("ref, needle", [
    ("mypreds:not_bool", "must return True or False"),
    ("mypreds:boom", "raised RuntimeError: kaput"),
    ("mypreds:missing", "cannot load predicate"),
    ("no_such_module_q:f", "cannot load predicate"),
])
def test_bad_predicate_is_a_spec_error(workdir, predicates, ref, needle):
    with pytest.raises(SpecError) as info:
        plan(workdir, pipeline(f'"{ref}"'))
    assert info.value.phase == "phase 1 (clean)" and needle in str(info.value), str(info.value)


def test_recorded_decisions_are_reused(workdir):
    """resume: the decision of the job's start, even if the environment changed since."""
    first = plan(workdir, pipeline('{ env = "UPPER_STATUS" }'), env={"UPPER_STATUS": "1"})
    events = [{"event": "plan.conditions", "details": {"decisions": first.conditions}}]
    again = plan(workdir, pipeline('{ env = "UPPER_STATUS" }'), env={},
                 decisions=decisions_from_events(events))
    assert again.skipped == [] and again.conditions[0]["reused"] is True
    # a changed condition is decided again
    changed = plan(workdir, pipeline('{ env = "OTHER" }'), env={},
                   decisions=decisions_from_events(events))
    assert len(changed.skipped) == 1


def test_estimate_rows_exact_when_the_file_fits(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text(HEADER + rows(1234), encoding="utf-8")
    assert estimate_rows(f) == (1234, True)
    f.write_text(HEADER + 'x,"multi\nline",y,1\n' + rows(3), encoding="utf-8")
    assert estimate_rows(f) == (4, True)
    f.write_text(HEADER, encoding="utf-8")
    assert estimate_rows(f) == (0, True)


def test_estimate_rows_from_a_sample_is_close(tmp_path):
    f = tmp_path / "big.csv"
    f.write_text(HEADER + rows(40_000), encoding="utf-8")
    n, exact = estimate_rows(f, sample_bytes=64 * 1024)
    assert not exact
    assert abs(n - 40_000) / 40_000 < 0.1, n


def test_check_when_accepts_the_documented_forms():
    for ok in ({"column_exists": "a"}, {"column_exists": ["a", "b"]}, {"env": "A_B"},
               {"min_rows": 0, "max_rows": 10}, {"predicate": "a.b:c"}, "pkg.mod:fn",
               {"not": {"env": "X"}}, {"any": [{"env": "X"}, "m:f"]}):
        check_when(ok)


def test_evaluate_explains_every_check(tmp_path):
    ctx = ConditionContext(columns=["a"], source_columns=["a"], source=tmp_path, env={"E": "1"},
                           estimator=lambda: (5, True))
    holds, checks = evaluate({"env": "E", "column_exists": "b", "max_rows": 4}, ctx)
    assert holds is False
    assert [(c["key"], c["holds"]) for c in checks] == [
        ("when.env", True), ("when.column_exists", False), ("when.max_rows", False)]
