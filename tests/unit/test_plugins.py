"""The phase contract for plugins: a plain class works, hooks are optional, a raising
phase rejects only the rows that raise, and every way a plugin can be broken is one
SpecError naming it."""

from __future__ import annotations

import sys

import pyarrow as pa
import pytest

import etlconsole
from etlconsole.engine import phases as registry
from etlconsole.engine.phases.base import ROW
from etlconsole.engine.phases.plugin import PluginPhase
from etlconsole.engine.plan import make_plan
from etlconsole.errors import SpecError
from etlconsole.spec import spec_from_dict

PLUGINS = '''
import pyarrow as pa
import pyarrow.compute as pc

class Plain:                      # no base class, no hooks, no declared options
    def __init__(self, column, factor=2):
        self.column, self.factor = column, factor
    def process(self, batch):
        i = batch.schema.get_field_index(self.column)
        doubled = pc.multiply(pc.cast(batch.column(i), pa.int64()), self.factor)
        return batch.set_column(i, self.column, doubled)

class Picky:                      # raises on some rows
    calls = 0
    def __init__(self, bad="13"):
        self.bad = bad
    def process(self, batch):
        type(self).calls += 1
        if self.bad in batch.column("n").to_pylist():
            raise ValueError(f"cannot handle {self.bad}")
        return batch

class Hooks:
    log = []
    def setup(self, schema):
        type(self).log.append(("setup", schema.names))
    def process(self, batch):
        return batch
    def teardown(self):
        type(self).log.append(("teardown",))

class DropsRow:
    def process(self, batch):
        return batch.drop_columns(["_etl_row"])

class ReturnsList:
    def process(self, batch):
        return []

not_a_class = 3
'''


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "myplugins.py").write_text(PLUGINS, encoding="utf-8")
    (mods / "explodes.py").write_text("raise RuntimeError('kaput at import')\n", encoding="utf-8")
    (mods / "needs_missing.py").write_text("import no_such_dependency_zz\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(mods))
    (tmp_path / "data.csv").write_text("n,name\n" + "".join(f"{i},x{i}\n" for i in range(1, 41)),
                                       encoding="utf-8")
    yield tmp_path
    for m in ("myplugins", "explodes", "needs_missing"):
        sys.modules.pop(m, None)


def doc(*phases) -> dict:
    return {"name": "p", "source": {"path": "data.csv"},
            "phases": [*phases, {"type": "load", "path": "out.db", "table": "t"}]}


def plan(workdir, *phases):
    return make_plan(spec_from_dict(doc(*phases), file="p.toml", base_dir=workdir))


def test_contract_is_exported_from_the_package():
    for name in ("Phase", "PhaseResult", "Rejects", "Option", "PipelineBuilder",
                 "ConditionContext"):
        assert hasattr(etlconsole, name) and name in etlconsole.__all__


def test_plain_class_by_module_path(workdir):
    p = plan(workdir, {"type": "myplugins:Plain", "column": "n", "factor": 3})
    planned = p.phases[0]
    assert planned.source == "module path" and planned.ref == "myplugins:Plain"
    assert isinstance(planned.phase, PluginPhase)
    assert planned.output.field("n").type == pa.int64()
    b = pa.RecordBatch.from_pylist([{"n": "2", "name": "a", ROW: 1}],
                                   schema=pa.schema([("n", pa.string()), ("name", pa.string()),
                                                     (ROW, pa.int64())]))
    assert planned.phase.process(b).column("n").to_pylist() == [6]
    planned.phase.teardown()          # optional hook: absent, and that is fine


def test_hooks_are_called_when_present(workdir):
    import myplugins
    p = plan(workdir, {"type": "myplugins:Hooks"})
    assert myplugins.Hooks.log == [("setup", ["n", "name", ROW])]
    p.phases[0].phase.teardown()
    assert myplugins.Hooks.log[-1] == ("teardown",)


def _runner_process(planned, batch):
    """The runner's phase step (it isolates raising rows for plugins and built-ins alike)."""
    from pathlib import Path
    from etlconsole.engine.line import process, records_of
    out, blamed, warnings = process(planned, batch, Path("."))
    return out, records_of(blamed), warnings


def test_a_raising_phase_rejects_only_the_rows_that_raise(workdir):
    import myplugins
    p = plan(workdir, {"type": "myplugins:Picky", "bad": "13"})
    rows = [{"n": str(i), "name": f"x{i}", ROW: i} for i in range(1, 41)]
    b = pa.RecordBatch.from_pylist(rows, schema=pa.schema(
        [("n", pa.string()), ("name", pa.string()), (ROW, pa.int64())]))
    with pytest.raises(ValueError):            # the wrapper itself lets it through
        p.phases[0].phase.process(b)
    myplugins.Picky.calls = 0
    out, recs, _ = _runner_process(p.phases[0], b)
    assert out.num_rows == 39 and "13" not in out.column("n").to_pylist()
    assert out.column(ROW).to_pylist() == [i for i in range(1, 41) if i != 13]
    assert len(recs) == 1
    assert recs[0]["row"] == 13 and recs[0]["rule"] == "exception"
    assert recs[0]["message"] == "ValueError: cannot handle 13"
    assert recs[0]["phase"] == "myplugins:Picky"
    assert myplugins.Picky.calls < 40          # halves, not row by row
    # every row raising: all rejected, an empty batch of the right schema goes on
    all_bad = plan(workdir, {"type": "myplugins:Picky", "bad": "1"}).phases[0]
    out, recs, _ = _runner_process(all_bad, b.slice(0, 1))
    assert out.num_rows == 0 and len(recs) == 1 and out.schema == all_bad.output


def test_built_in_phases_are_not_wrapped(workdir):
    p = plan(workdir, {"type": "clean", "trim": True})
    assert not isinstance(p.phases[0].phase, PluginPhase) and p.phases[0].source == "built-in"


@pytest.mark.parametrize("ptype, needle", [
    ("no_such_module_q:Thing", "module 'no_such_module_q' not found"),
    ("myplugins:Nope", "module 'myplugins' has no 'Nope'"),
    ("explodes:Thing", "importing it raised RuntimeError: kaput at import"),
    ("needs_missing:Thing", "importing it raised ModuleNotFoundError"),
    ("myplugins:not_a_class", "not a phase"),
    ("json:dumps", "not a phase"),
    ("myplugins:DropsRow", "_etl_row"),
    ("myplugins:ReturnsList", "must return a pyarrow.RecordBatch"),
    ("not a ref:", "must be 'package.module:Class'"),
])
def test_broken_plugins_are_one_located_error(workdir, ptype, needle):
    with pytest.raises(SpecError) as info:
        plan(workdir, {"type": ptype})
    err = info.value
    assert err.phase == f"phase 1 ({ptype})" and err.file == "p.toml", str(err)
    assert needle in str(err), str(err)
    assert "\n" not in str(err)


def test_unknown_option_for_a_plain_class_is_located(workdir):
    with pytest.raises(SpecError) as info:
        plan(workdir, {"type": "myplugins:Plain", "column": "n", "colour": "red"})
    assert "colour" in str(info.value) and info.value.phase == "phase 1 (myplugins:Plain)"


def test_broken_entry_point_is_named(workdir, monkeypatch):
    """An installed distribution whose entry point is broken (a fake dist-info)."""
    site = workdir / "site"
    info = site / "brokenplug-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[etlconsole.phases]\nghost = ghost_module_zz:Ghost\nbadref = not-a-reference\n"
        "load = myplugins:Plain\n")
    monkeypatch.syspath_prepend(str(site))
    registry.available.cache_clear()
    try:
        found = registry.available()
        assert found["ghost"] == ("ghost_module_zz:Ghost", "plugin (brokenplug)")
        assert found["load"][1] == "built-in"                  # a plugin cannot take it over
        assert found["brokenplug.load"][1] == "plugin (brokenplug)"
        with pytest.raises(SpecError) as e1:
            plan(workdir, {"type": "ghost"})
        assert "'ghost' from plugin (brokenplug)" in str(e1.value)
        assert "module 'ghost_module_zz' not found" in str(e1.value)
        with pytest.raises(SpecError) as e2:
            plan(workdir, {"type": "badref"})
        assert "'badref' from plugin (brokenplug)" in str(e2.value)
        assert "package.module:Class" in str(e2.value)
    finally:
        registry.available.cache_clear()


def test_option_schema_renders(workdir):
    cls = registry.resolve("load")
    opts = {k: o.to_json() for k, o in cls.options.items()}
    assert opts["destination"]["choices"][:3] == ["sqlite", "parquet", "csv"]
    assert "postgres" in opts["destination"]["choices"]
    # path or url, by kind: the load checks which one its destination needs
    assert opts["path"]["required"] is False and opts["table"]["required"] is False
    assert {"url", "service", "schema", "password_env"} <= set(opts)
