"""Make sure the etlconsole a benchmark runs starts from compiled bytecode.

`pip install .` compiles every module when it installs, so an operator's runs never
compile. A checkout run through an editable install (or PYTHONPATH) under
PYTHONDONTWRITEBYTECODE=1 — as on this project's machines — compiles the ~90 modules a
run imports on every start (~0.1 s of CPU), and a version with more modules pays more:
the benchmarks compile once, first, so they time what a user runs."""

from __future__ import annotations

import os
import subprocess
import sys

_SCRIPT = ("import compileall, os, etlconsole; "
           "compileall.compile_dir(os.path.dirname(etlconsole.__file__), quiet=1)")


def interpreter_of(script: str) -> str:
    """The Python a console script runs with (its #! line), else this one."""
    try:
        with open(script, "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        return sys.executable
    return first[2:].split()[0] if first.startswith("#!") and "python" in first else sys.executable


def compile_package(python: str = sys.executable, pythonpath: str | None = None) -> None:
    """Compile the etlconsole package ``python`` imports: with this process's PYTHONPATH,
    or with ``pythonpath`` instead ("": none)."""
    env = dict(os.environ)
    if pythonpath is not None:
        env.pop("PYTHONPATH", None)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
    subprocess.run([python, "-c", _SCRIPT], env=env, check=True)
