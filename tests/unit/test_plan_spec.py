"""Pipeline spec loading and planning: every mistake is located by file, phase and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pyarrow as pa
import pytest

from etlconsole.engine.plan import make_plan
from etlconsole.errors import SpecError, UserError
from etlconsole.sample import SAMPLE_PIPELINE_TOML
from etlconsole.spec import PhaseSpec, PipelineSpec, SourceSpec, load_spec, spec_from_dict

HEADER = "order_id,customer_email,status,quantity,unit_price\n"
ROWS = "1,a@b.co,new,2,1.50\n2,c@d.io,paid,1,3.00\n"


def pipeline(src="", clean="", rules="", cast="", extra="", dest="warehouse.db", top="") -> str:
    return f'''{top}
name = "orders"
[source]
path = "orders.csv"
{src}

[[phases]]
type = "clean"
trim = true
{clean}

[[phases]]
type = "validate"
rules = [ {{ column = "order_id", required = true, type = "int64" }}, {rules} ]

[[phases]]
type = "transform"
cast = {{ order_id = "int64"{", " + cast if cast else ""} }}
{extra}

[[phases]]
type = "load"
path = "{dest}"
table = "orders"
'''


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "orders.csv").write_text(HEADER + ROWS, encoding="utf-8")
    return tmp_path


def plan_of(workdir: Path, text: str, name="pipe.toml"):
    path = workdir / name
    path.write_text(text, encoding="utf-8")
    return make_plan(load_spec(path))


def spec_error(workdir: Path, text: str, name="pipe.toml") -> SpecError:
    with pytest.raises(SpecError) as info:
        plan_of(workdir, text, name)
    assert name in str(info.value)
    assert info.value.file is not None and info.value.file.endswith(name)
    return info.value


def test_good_pipeline_plans(workdir):
    plan = plan_of(workdir, pipeline())
    assert [p.label for p in plan.phases] == ["phase 1 (clean)", "phase 2 (validate)",
                                              "phase 3 (transform)", "phase 4 (load)"]
    assert plan.source == (workdir / "orders.csv").resolve()
    assert plan.destination_path == (workdir / "warehouse.db").resolve()
    assert plan.dialect.names == HEADER.strip().split(",")
    out = {f.name: f.type for f in plan.output_schema}
    assert out["order_id"] == pa.int64() and out["status"] == pa.string()
    assert "_etl_row" not in out
    assert plan.skipped == []
    assert not (workdir / "warehouse.db").exists()       # planning touches nothing


def test_toml_syntax_error(workdir):
    err = spec_error(workdir, pipeline() + "\nname = \n")
    assert "TOML syntax" in str(err)
    assert "line" in str(err)


def test_unknown_top_level_key(workdir):
    err = spec_error(workdir, pipeline(top='colour = "blue"'))
    assert err.key == "colour" and "colour" in str(err)


def test_unknown_source_key(workdir):
    err = spec_error(workdir, pipeline(src='delim = ";"'))
    assert err.key == "source.delim" and "source.delim" in str(err)


def test_format_2_refused(workdir):
    err = spec_error(workdir, pipeline(top="format = 2"))
    assert err.key == "format" and "format" in str(err) and "2" in err.detail


def test_format_1_accepted(workdir):
    assert plan_of(workdir, pipeline(top="format = 1")).spec.name == "orders"


def test_unknown_phase_type(workdir):
    err = spec_error(workdir, pipeline(extra='\n[[phases]]\ntype = "frobnicate"\n'))
    assert "phase 4 (frobnicate)" in str(err)
    assert err.key == "type"
    assert "frobnicate" in err.detail and "validate" in err.detail   # lists what exists


def test_unknown_option(workdir):
    err = spec_error(workdir, pipeline(clean="trimm = true"))
    assert "phase 1 (clean)" in str(err)
    assert err.key == "trimm" and "trimm" in str(err)


def test_option_of_wrong_kind(workdir):
    err = spec_error(workdir, pipeline(clean='null_values = "NULL"'))
    assert "phase 1 (clean)" in str(err) and err.key == "null_values"


def test_unknown_rule_key(workdir):
    err = spec_error(workdir, pipeline(rules='{ colum = "status" }'))
    assert "phase 2 (validate)" in str(err)
    assert err.key == "rules[1].colum"


def test_bad_regex_in_rule(workdir):
    err = spec_error(workdir, pipeline(rules="{ column = \"status\", pattern = '([' }"))
    assert "phase 2 (validate)" in str(err) and err.key == "rules[1].pattern"


def test_rule_on_missing_column(workdir):
    err = spec_error(workdir, pipeline(rules='{ column = "nope", required = true }'))
    assert "phase 2 (validate)" in str(err)
    assert err.key == "rules[1].column"
    assert "'nope'" in str(err)


def test_cast_on_missing_column(workdir):
    err = spec_error(workdir, pipeline(cast='nope = "int64"'))
    assert "phase 3 (transform)" in str(err)
    assert err.key == "cast.nope"


def test_lowercase_on_missing_column(workdir):
    err = spec_error(workdir, pipeline(clean='lowercase = ["nope"]'))
    assert "phase 1 (clean)" in str(err) and err.key == "lowercase"


def test_column_dropped_by_map_is_unknown_later(workdir):
    text = pipeline(extra='\n[[phases]]\ntype = "map"\ncolumns = { order_id = "id" }\n'
                          '\n[[phases]]\ntype = "validate"\nrules = [{ column = "status" }]\n')
    err = spec_error(workdir, text)
    assert "phase 5 (validate)" in str(err) and err.key == "rules[0].column"


def test_missing_load_phase(workdir):
    text = pipeline().split("[[phases]]\ntype = \"load\"")[0]
    err = spec_error(workdir, text)
    assert err.key == "phases" and "load" in err.detail


def test_load_not_last(workdir):
    err = spec_error(workdir, pipeline() + '\n[[phases]]\ntype = "clean"\ntrim = true\n')
    assert err.key == "phases" and "load" in err.detail


def test_two_loads(workdir):
    err = spec_error(workdir, pipeline(extra='\n[[phases]]\ntype = "load"\npath = "x.db"\n'
                                             'table = "x"\n'))
    assert "phase 4 (load)" in str(err) and "last" in err.detail


def test_source_path_equals_destination(workdir):
    err = spec_error(workdir, pipeline(dest="orders.csv"))
    assert "phase 4 (load)" in str(err)
    assert err.key == "path"
    assert "source" in err.detail


def test_dest_override_equal_to_source(workdir):
    path = workdir / "pipe.toml"
    path.write_text(pipeline(), encoding="utf-8")
    with pytest.raises(SpecError, match="source"):
        make_plan(load_spec(path), dest=workdir / "orders.csv")


def test_missing_source_file_is_user_error(workdir):
    (workdir / "orders.csv").unlink()
    path = workdir / "pipe.toml"
    path.write_text(pipeline(), encoding="utf-8")
    with pytest.raises(UserError, match="not found"):
        make_plan(load_spec(path))


def test_missing_pipeline_file(tmp_path):
    with pytest.raises(SpecError, match="not found") as info:
        load_spec(tmp_path / "nope.toml")
    assert "nope.toml" in str(info.value)


def test_disabled_phase_is_skipped(workdir):
    text = pipeline(clean='enabled = false\nlowercase = ["nope"]')   # would fail if planned
    plan = plan_of(workdir, text)
    assert [p.label for p in plan.phases] == ["phase 2 (validate)", "phase 3 (transform)",
                                              "phase 4 (load)"]
    assert plan.skipped == ["phase 1 (clean): enabled = false"]


def test_disabled_load_means_no_load(workdir):
    text = pipeline().replace('type = "load"', 'type = "load"\nenabled = false')
    err = spec_error(workdir, text)
    assert err.key == "phases"


def test_when_of_the_wrong_shape_is_located(workdir):
    err = spec_error(workdir, pipeline(clean="when = true"))
    assert "phase 1 (clean)" in str(err) and err.key == "when"


def test_checkpoint_must_be_a_bool_and_round_trips(workdir):
    err = spec_error(workdir, pipeline(clean='checkpoint = "yes"'))
    assert "phase 1 (clean)" in str(err) and err.key == "checkpoint"
    from etlconsole.spec import load_spec
    (workdir / "p2.toml").write_text(pipeline(clean="checkpoint = true"), encoding="utf-8")
    spec = load_spec(workdir / "p2.toml")
    assert spec.phases[0].checkpoint is True
    assert "checkpoint = true" in spec.to_toml()


def test_paths_relative_to_pipeline_file(tmp_path):
    sub = tmp_path / "pipes"
    sub.mkdir()
    (sub / "orders.csv").write_text(HEADER + ROWS, encoding="utf-8")
    plan = plan_of(sub, pipeline())
    assert plan.source == (sub / "orders.csv").resolve()
    assert plan.destination_path == (sub / "warehouse.db").resolve()


# --- spec round trip ---------------------------------------------------------------------

def test_sample_pipeline_round_trip(tmp_path):
    first = tmp_path / "sample.toml"
    first.write_text(SAMPLE_PIPELINE_TOML, encoding="utf-8")
    spec = load_spec(first)
    second = tmp_path / "again.toml"
    spec.save(second)
    again = load_spec(second)
    assert again.name == spec.name == "orders"
    assert again.source == spec.source
    assert again.phases == spec.phases
    assert again.description == spec.description
    assert again.base_dir == spec.base_dir
    # and the saved text is the same document as the original
    assert tomllib.loads(spec.to_toml()) == tomllib.loads(SAMPLE_PIPELINE_TOML)
    assert again.to_toml() == spec.to_toml()
    rules = again.phases[1].options["rules"]
    assert rules[1]["pattern"] == r"^[^@ ]+@[^@ ]+\.[a-z]{2,}$"


def test_round_trip_keeps_disabled_source_options_and_description():
    spec = PipelineSpec(name="x", description="why",
                        source=SourceSpec(path="a.csv", delimiter=";", encoding="latin-1",
                                          header=False),
                        phases=[PhaseSpec("clean", {"trim": True}, enabled=False),
                                PhaseSpec("load", {"path": "w.db", "table": "t"})],
                        file="x.toml")
    again = spec_from_dict(tomllib.loads(spec.to_toml()), file="x.toml", base_dir=spec.base_dir)
    assert again == spec


def test_sample_pipeline_plans_against_sample_header(tmp_path):
    from etlconsole.sample import write_orders_csv
    (tmp_path / "pipe.toml").write_text(SAMPLE_PIPELINE_TOML, encoding="utf-8")
    write_orders_csv(tmp_path / "orders.csv", 50)
    plan = make_plan(load_spec(tmp_path / "pipe.toml"))
    names = [f.name for f in plan.output_schema]
    assert names[0] == "id" and "total" in names and "sku" not in names
