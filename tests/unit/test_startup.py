"""The program's start: its imports run with the cyclic collector paused (startup.py)."""

from __future__ import annotations

import gc
import subprocess
import sys

from etlconsole.startup import collector_paused

# Counts the collections a process runs, one byte on stderr per collection begun (the
# program leaves through os._exit, so nothing can be printed at its end).
COUNTING = ("import gc, os; gc.callbacks.append(lambda phase, info: "
            "os.write(2, b'@') if phase == 'start' else None); ")


def _collections(code: str) -> int:
    out = subprocess.run([sys.executable, "-c", COUNTING + code, "--version"],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert b"etlconsole, version" in out.stdout
    return out.stderr.count(b"@")


def test_the_program_imports_its_cli_without_collecting():
    """Tens of thousands of objects allocated by the imports, each collection walking them to
    free nothing: the program (``etlconsole.__main__``) runs a few (its own start, then
    the command), where importing the CLI with the collector on runs dozens."""
    program = _collections("import sys; sys.argv[0] = 'etlconsole'; "
                           "from etlconsole.__main__ import entry; entry()")
    bare = _collections("import sys; sys.argv[0] = 'etlconsole'; "
                        "from etlconsole.cli import entry; entry()")
    assert bare >= 20 and program <= bare // 4, (program, bare)     # measured: 7 against 57


def test_collector_paused_restores_the_collector_and_freezes_only_when_asked():
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with collector_paused():
        assert not gc.isenabled()
        kept = [[] for _ in range(100)]
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    with collector_paused(freeze=True):
        kept += [[] for _ in range(100)]
    assert gc.isenabled() and gc.get_freeze_count() >= frozen + 200
    gc.unfreeze()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()       # as it was: off
    finally:
        gc.enable()


def test_a_dask_job_freezes_distributeds_objects_once():
    """``require_dask`` imports dask.distributed with the collector paused and, the first
    time, moves what the import made out of every later collection's walk (gc.freeze): the
    driver's collections went from ~23 ms to ~4 ms of a job's CPU. A second call, in a
    process that keeps running jobs, freezes nothing more (what is alive then is not all
    the program's)."""
    code = ("import gc\n"
            "from etlconsole.engine.executors.cluster import require_dask\n"
            "before = gc.get_freeze_count(); require_dask(); first = gc.get_freeze_count() - before\n"
            "junk = [[] for _ in range(1000)]\n"
            "before = gc.get_freeze_count(); require_dask(); again = gc.get_freeze_count() - before\n"
            "print(first, again)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first, again = map(int, out.stdout.split())
    assert first > 10_000 and again == 0, (first, again)
