"""The command line around the console: global options on either side of the command,
headers and --limit of the listings, option defaults in 'phases', and the one line the
console prints on stdout when it is quit (in a real terminal: a pty)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import clean_env

ETL = [sys.executable, "-m", "etlconsole"]


def etl(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI exactly as typed: no option added anywhere."""
    return subprocess.run([*ETL, *map(str, args)], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, encoding="utf-8", timeout=timeout)


@pytest.fixture
def demo(tmp_path) -> tuple[Path, str]:
    """A store with one finished demo job (several batches and checkpoints)."""
    state = tmp_path / "elsewhere" / "state.db"
    res = subprocess.run([*ETL, "--state", str(state), "demo", "--no-ui", "--json", "--rows", "3000"],
                         cwd=tmp_path, env=clean_env({"PIPELINE_BATCH_SIZE_MIN": "500",
                                                      "PIPELINE_BATCH_SIZE_MAX": "500",
                                                      "PIPELINE_CHUNK_SIZE": "500",
                                                      "PIPELINE_CHECKPOINT_INTERVAL": "500"}),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return state, json.loads(res.stdout.splitlines()[-1])["job_id"]


def test_global_options_before_or_after_the_command(tmp_path, demo):
    state, job = demo
    before = etl(tmp_path, "--state", state, "jobs")
    after = etl(tmp_path, "jobs", "--state", state)
    assert before.returncode == after.returncode == 0, after.stderr
    assert job in after.stdout and after.stdout == before.stdout
    assert not (tmp_path / ".etlconsole").exists()        # the default store was not used
    shown = etl(tmp_path, "show", job, "--json", "--state", state)
    assert shown.returncode == 0 and job in json.loads(shown.stdout).values()
    # --log-format after the command: the job's log lines on stderr are JSON
    run = etl(tmp_path, "run", "etlconsole-demo/pipeline.toml", "--no-ui",
              "--log-format", "json", "--state", state)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines and all(json.loads(line)["event"] for line in lines)
    # after the command wins over before it
    other = tmp_path / "other.db"
    res = etl(tmp_path, "--state", state, "jobs", "--state", other)
    assert res.returncode == 0 and job not in res.stdout and other.exists()


def test_json_logs_carry_every_event_the_job_records(tmp_path, demo):
    """--log-format json: stderr is the job's event stream (what the store's events table
    holds, in the same order), plus progress events — JSON Lines a machine can follow."""
    state, _ = demo
    run = etl(tmp_path, "run", "etlconsole-demo/pipeline.toml", "--no-ui", "--json",
              "--log-format", "json", "--state", state)
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout.splitlines()[-1])["job_id"]
    logged = [json.loads(line) for line in run.stderr.splitlines() if line.strip()]
    recorded = json.loads(etl(tmp_path, "show", job, "--json", "--state", state).stdout)["events"]
    recorded = sorted(recorded, key=lambda e: e["id"])
    # every recorded event, in order (the runner also logs job.started, which the store
    # keeps as the job's status, not as an event)
    of_job = [e["event"] for e in logged if e.get("job") == job and e["event"] != "job.started"]
    assert of_job == [e["event"] for e in recorded], (of_job, recorded)
    assert {"sniff", "job.succeeded"} <= set(of_job) and len(recorded) >= 3
    assert all(e["level"] in ("info", "warning", "error") for e in logged)


def test_a_missing_value_is_a_usage_error_in_one_place(tmp_path):
    res = etl(tmp_path, "jobs", "--state")
    assert res.returncode == 2 and "--state" in res.stderr and "Traceback" not in res.stderr


def test_checkpoints_and_batches_print_a_header_and_take_a_limit(tmp_path, demo):
    state, job = demo
    every = etl(tmp_path, "batches", job, "--state", state)
    assert every.returncode == 0, every.stderr
    header, *rows = every.stdout.splitlines()
    assert header.startswith(f"batches of job {job}: {len(rows)} — number, status, records")
    assert len(rows) >= 5
    last2 = etl(tmp_path, "batches", job, "--limit", "2", "--state", state).stdout.splitlines()
    assert last2[0].startswith(f"batches of job {job}: the last 2 of {len(rows)} — ")
    assert last2[1:] == rows[-2:]
    cps = etl(tmp_path, "checkpoints", job, "--state", state).stdout.splitlines()
    assert cps[0].startswith(f"checkpoints of job {job}: {len(cps) - 1} — ") and len(cps) > 2
    one = etl(tmp_path, "checkpoints", job, "--limit", "1", "--state", state).stdout.splitlines()
    assert one[0].startswith(f"checkpoints of job {job}: the last 1 of {len(cps) - 1}")
    assert one[1:] == cps[-1:]
    as_json = etl(tmp_path, "batches", job, "--json", "--limit", "3", "--state", state)
    assert [json.loads(x)["batch_number"] for x in as_json.stdout.splitlines()] == \
        [int(r.split()[0]) for r in rows[-3:]]                 # JSON Lines: no header
    bad = etl(tmp_path, "batches", job, "--limit", "0", "--state", state)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_phases_shows_each_options_default(tmp_path):
    res = etl(tmp_path, "phases")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    options = [line for line in lines if line.startswith("    ") and "(declares" not in line]
    assert options and all(line.rstrip().endswith(")") for line in options)
    assert all("(default: " in line or "(required)" in line for line in options), options
    mode = next(line for line in lines if line.split()[:1] == ["mode"])
    assert '(default: "append")' in mode
    trim = next(line for line in lines if line.split()[:1] == ["trim"])
    assert "(default: false)" in trim


# -- the line printed on quit -------------------------------------------------------------
def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    out, end = b"", time.monotonic() + timeout
    while needle not in out and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")
def test_quitting_the_console_prints_one_line_on_stdout(tmp_path, demo):
    state, job = demo
    term_master, term_slave = pty.openpty()        # the terminal: keys in, screen out (stderr)
    out_master, out_slave = pty.openpty()          # stdout: a terminal too, read separately
    env = clean_env({"TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"})
    proc = subprocess.Popen([*ETL, "ui", "--watch", job, "--state", str(state)], cwd=tmp_path,
                            env=env, stdin=term_slave, stdout=out_slave, stderr=term_slave,
                            start_new_session=True)
    os.close(term_slave)
    os.close(out_slave)
    try:
        screen = read_until(term_master, b"finished", 60)      # the monitor shows the job
        assert b"finished" in screen, screen[-500:]
        os.write(term_master, b"q")
        proc.wait(30)
        stdout = read_until(out_master, b"\n", 5).decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(term_master)
        os.close(out_master)
    assert proc.returncode == 0
    lines = [line for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stdout).splitlines()
             if line.strip()]
    assert lines == [f"job {job} succeeded — details: etlconsole --state {state} show {job}"]
