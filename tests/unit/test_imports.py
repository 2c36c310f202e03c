"""The headless path stays light: no non-UI module (nor the CLI) imports textual."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import importlib, json, pkgutil, sys

    import etlconsole

    def walk(package):
        # Recurse by hand: pkgutil.walk_packages would import etlconsole.ui to find its
        # children, and that import is exactly what must not happen.
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if info.name == "etlconsole.ui" or info.name.startswith("etlconsole.ui."):
                continue
            module = importlib.import_module(info.name)
            yield info.name
            if info.ispkg:
                yield from walk(module)

    names = list(walk(etlconsole))
    importlib.import_module("etlconsole.cli")
    print(json.dumps({
        "modules": names,
        "textual": sorted(m for m in sys.modules if m == "textual" or m.startswith("textual.")),
        "ui": sorted(m for m in sys.modules if m.startswith("etlconsole.ui")),
    }))
""")


def test_headless_modules_do_not_import_textual():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    modules = set(result["modules"])
    # the walk really covered the package
    assert {"etlconsole.cli", "etlconsole.config", "etlconsole.spec", "etlconsole.engine.plan",
            "etlconsole.engine.extract", "etlconsole.engine.runner", "etlconsole.engine.types",
            "etlconsole.engine.phases.validate", "etlconsole.store.store"} <= modules
    assert not any(m.startswith("etlconsole.ui") for m in modules)
    assert result["ui"] == []
    assert result["textual"] == []


def test_a_plain_run_does_not_scan_entry_points(tmp_path):
    """Planning a pipeline of built-in phases and a built-in destination never asks the
    installed packages for plugins (importlib.metadata scans every dist-info: ~30 ms of a
    short job). The load phase's ``destination`` choices used to be scanned to check
    that they were not empty."""
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    (tmp_path / "p.toml").write_text(
        'name = "p"\n[source]\npath = "d.csv"\n[[phases]]\ntype = "validate"\n'
        'rules = [{ column = "a", type = "int64" }]\n[[phases]]\ntype = "load"\n'
        'destination = "sqlite"\npath = "o.db"\ntable = "t"\n')
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from etlconsole.engine.plan import make_plan
        from etlconsole.spec import load_spec
        make_plan(load_spec(Path(sys.argv[1])))
        print(sorted(m for m in sys.modules if m.startswith("importlib.metadata")))
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "p.toml")],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_run_imports_neither_sqlite_utils_nor_rich(tmp_path):
    """A job writes and reads the state store through plain statements; sqlite-utils (the
    reads' query layer for jobs, show, rejects and the console) is imported on first use
    of ``StateStore.db`` only, which a run, with rejects, never makes. structlog is
    imported without rich (which it wants only to draw exceptions, and etlconsole logs
    none). Each import was ~30-60 ms of every run's start (ADR 0019, amended); rich stays
    importable for the console."""
    rows = "".join(f"{i},{'x' if i % 3 else 'bad'}\n" for i in range(50))
    (tmp_path / "d.csv").write_text("a,b\n" + rows)
    (tmp_path / "p.toml").write_text(
        'name = "p"\n[source]\npath = "d.csv"\n[[phases]]\ntype = "validate"\n'
        'rules = [{ column = "a", type = "int64", unique = true }, '
        '{ column = "b", allowed = ["x"] }]\n[[phases]]\ntype = "load"\n'
        'destination = "sqlite"\npath = "o.db"\ntable = "t"\n')
    script = textwrap.dedent("""
        import sys
        from etlconsole.cli import main
        try:
            main(["run", "--no-ui", "p.toml"])
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        print("sqlite_utils" in sys.modules, "rich" in sys.modules, file=sys.stderr)
        import rich.console, textual.app   # the console's imports still work afterwards
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "rows rejected            17" in out.stdout, out.stdout
    assert out.stderr.strip().splitlines()[-1] == "False False"
