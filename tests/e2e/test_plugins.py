"""Plugins with no change to etlconsole: the example package installed with pip (entry
point), a phase referenced by module path, and broken plugins as one exit-2 line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import assert_summary, assert_user_error, query, write_pipeline

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "etlconsole-example-plugin"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """pip install the example into a folder of its own (offline: no deps, no isolation)."""
    work = tmp_path_factory.mktemp("plugin")
    src = work / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = work / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target", str(site), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(site.glob("etlconsole_example_plugin-*.dist-info")), list(site.iterdir())
    return site


DATA = "order_id,customer_email,status\n1,David@Example.org,new\n2,bad-address,paid\n3,e@f.io,new\n"


def test_installed_plugin_is_listed_with_its_options(cli, plugin_site):
    res = cli("phases", "--json", env={"PYTHONPATH": str(plugin_site)})
    assert res.returncode == 0, str(res)
    phases = {p["name"]: p for p in res.json_lines()}
    mask = phases["mask_email"]
    assert mask["source"] == "plugin (etlconsole-example-plugin)"
    assert mask["ref"] == "etlconsole_example_plugin:MaskEmail"
    assert mask["options"]["column"] == {"kind": "string", "help": "the e-mail column",
                                         "required": True}
    assert mask["options"]["keep_domain"]["default"] is True
    assert phases["clean"]["source"] == "built-in"
    # without the plugin on the path it is simply not there
    assert "mask_email" not in {p["name"] for p in cli("phases", "--json").json_lines()}


def test_installed_plugin_runs_by_entry_point_name(cli, tmp_path, plugin_site):
    (tmp_path / "data.csv").write_text(DATA, encoding="utf-8")
    write_pipeline(tmp_path / "p.toml", phases='''
[[phases]]
type = "mask_email"
column = "customer_email"
when = "etlconsole_example_plugin:has_email_column"
''')
    env = {"PYTHONPATH": str(plugin_site)}
    res = cli("run", "p.toml", "--no-ui", "--json", env=env)
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert_summary(s)
    assert (s["rows_loaded"], s["rows_rejected"]) == (2, 1)
    assert query(tmp_path / "out.db", "SELECT order_id, customer_email FROM t ORDER BY 1") == [
        ("1", "D***@Example.org"), ("3", "e***@f.io")]
    rej = cli("rejects", s["job_id"], "--json").json_lines()
    assert [(r["row"], r["phase"], r["rule"]) for r in rej] == [(2, "mask_email", "mask_email")]
    check = cli("check", "p.toml", "--json", env=env).last_json()
    assert check["phases"][0]["source"] == "plugin (etlconsole-example-plugin)"
    assert check["phases"][0]["condition"]["holds"] is True


def test_plugin_by_module_path_and_a_raising_row(cli, tmp_path, plugin_site):
    (tmp_path / "data.csv").write_text(DATA, encoding="utf-8")
    (tmp_path / "mine.py").write_text('''
class Fussy:
    def process(self, batch):
        if "2" in batch.column("order_id").to_pylist():
            raise ValueError("order 2 is cursed")
        return batch
''', encoding="utf-8")
    write_pipeline(tmp_path / "p.toml", phases='''
[[phases]]
type = "etlconsole_example_plugin.plain:Shout"
column = "status"

[[phases]]
type = "mine:Fussy"
''')
    env = {"PYTHONPATH": f"{plugin_site}:{tmp_path}"}
    res = cli("run", "p.toml", "--no-ui", "--json", env=env)
    assert res.returncode == 0, str(res)
    assert query(tmp_path / "out.db", "SELECT order_id, status FROM t ORDER BY 1") == [
        ("1", "NEW!"), ("3", "NEW!")]
    rej = cli("rejects", res.last_json()["job_id"], "--json").json_lines()
    assert [(r["row"], r["phase"], r["rule"], r["message"]) for r in rej] == [
        (2, "mine:Fussy", "exception", "ValueError: order 2 is cursed")]


@pytest.mark.parametrize("ptype, needle", [
    ("no_such_plugin_mod:Thing", "module 'no_such_plugin_mod' not found"),
    ("etlconsole_example_plugin:NoSuchClass", "has no 'NoSuchClass'"),
    ("exploding:Thing", "importing it raised RuntimeError: boom"),
    ("etlconsole_example_plugin:has_email_column", "not a phase"),
    ("mask_emails", "unknown phase type 'mask_emails'"),
])
def test_broken_plugin_is_one_exit_2_line(cli, tmp_path, plugin_site, ptype, needle):
    (tmp_path / "data.csv").write_text(DATA, encoding="utf-8")
    (tmp_path / "exploding.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml", phases=f'[[phases]]\ntype = "{ptype}"\n')
    res = cli("run", "p.toml", "--no-ui", env={"PYTHONPATH": f"{plugin_site}:{tmp_path}"})
    assert_user_error(res, "p.toml", f"phase 1 ({ptype})", needle)
    assert not (tmp_path / "out.db").exists()


def test_broken_entry_point_in_phases_and_run(cli, tmp_path):
    site = tmp_path / "site"
    info = site / "brokenplug-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[etlconsole.phases]\nghost = ghost_mod_zz:Ghost\n")
    env = {"PYTHONPATH": str(site)}
    res = cli("phases", "--json", env=env)
    assert_user_error(res, "ghost [plugin (brokenplug)]", "module 'ghost_mod_zz' not found")
    listed = {p["name"]: p for p in res.json_lines()}
    assert "error" in listed["ghost"] and "options" in listed["clean"]
    (tmp_path / "data.csv").write_text(DATA, encoding="utf-8")
    write_pipeline(tmp_path / "p.toml", phases='[[phases]]\ntype = "ghost"\n')
    assert_user_error(cli("run", "p.toml", "--no-ui", env=env),
                      "phase 'ghost' from plugin (brokenplug)", "ghost_mod_zz")
