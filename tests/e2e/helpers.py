"""Helpers of the end-to-end suite: run the CLI in a subprocess, write pipelines, read SQLite.

Every CLI call is a real ``python -m etlconsole`` subprocess with its own ``cwd``, an
explicit ``--state`` and a timeout, in an environment scrubbed of ``PIPELINE_*`` settings
(and ``ETLCONSOLE_DEBUG``) the developer may have exported.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa

DEFAULT_TIMEOUT = 60


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIPELINE_") and k != "ETLCONSOLE_DEBUG"}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra or {})
    return env


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def stdout_lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.strip()]

    def last_json(self) -> dict[str, Any]:
        lines = self.stdout_lines
        assert lines, f"no stdout from {self.args}\nstderr:\n{self.stderr}"
        try:
            obj = json.loads(lines[-1])
        except json.JSONDecodeError as exc:
            raise AssertionError(f"last stdout line is not JSON: {lines[-1]!r} ({exc})") from None
        assert isinstance(obj, dict), lines[-1]
        return obj

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout_lines]

    def __str__(self) -> str:
        return (f"$ {' '.join(self.args)}\nexit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}"
                f"\n--- stderr\n{self.stderr[-3000:]}")


class Cli:
    """``cli("run", "p.toml", "--no-ui", "--json")`` -> Result, in ``cwd`` with ``--state``."""

    def __init__(self, cwd: Path, state: Path):
        self.cwd, self.state = Path(cwd), Path(state)

    def __call__(self, *args: str | os.PathLike, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
                 state: Path | None = None) -> Result:
        cmd = [sys.executable, "-m", "etlconsole", "--state", str(state or self.state),
               *map(str, args)]
        proc = subprocess.run(cmd, cwd=str(cwd or self.cwd), env=clean_env(env),
                              capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=timeout)
        return Result(cmd[2:], proc.returncode, proc.stdout, proc.stderr)


def toml_str(value: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(value, ensure_ascii=False)


def write_pipeline(path: Path, *, source: str = "data.csv", phases: str = "",
                   dest: str = "out.db", table: str = "t", name: str = "e2e",
                   source_extra: str = "") -> Path:
    """A pipeline file: [source], the given [[phases]] TOML, then one sqlite load phase."""
    text = (f"name = {toml_str(name)}\n\n[source]\npath = {toml_str(source)}\n{source_extra}\n"
            f"{phases.strip()}\n\n[[phases]]\ntype = \"load\"\ndestination = \"sqlite\"\n"
            f"path = {toml_str(dest)}\ntable = {toml_str(table)}\nmode = \"append\"\n")
    path.write_text(text, encoding="utf-8")
    return path


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(str(db))
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def tables(db: Path) -> list[str]:
    return [r[0] for r in query(db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


def qident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def assert_user_error(res: Result, *needles: str) -> str:
    """Exit 2, exactly one stderr line starting with 'error:', no traceback anywhere."""
    assert res.returncode == 2, str(res)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, str(res)
    lines = res.stderr_lines
    assert len(lines) == 1, f"expected exactly one stderr line, got {len(lines)}\n{res}"
    line = lines[0]
    assert line.startswith("error:"), str(res)
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def assert_summary(summary: dict[str, Any]) -> None:
    """The run/resume --json contract: the keys, and conservation."""
    for key in ("job_id", "status", "rows_read", "rows_loaded", "rows_rejected", "elapsed_s",
                "peak_rss_mb"):
        assert key in summary, f"summary lacks {key!r}: {summary}"
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert isinstance(summary[key], int) and summary[key] >= 0, summary
    assert isinstance(summary["elapsed_s"], (int, float)) and summary["elapsed_s"] >= 0, summary
    assert isinstance(summary["peak_rss_mb"], (int, float)) and summary["peak_rss_mb"] > 0, summary
    assert summary["rows_read"] == summary["rows_loaded"] + summary["rows_rejected"], summary


def compress(data: bytes, name: str) -> bytes:
    """``data`` compressed as the name's extension says (a plain name: as it is)."""
    if name.endswith(".gz"):
        return gzip.compress(data)
    if name.endswith(".bz2"):
        return bz2.compress(data)
    codec = {".zst": "zstd", ".lz4": "lz4"}.get(Path(name).suffix)
    if codec is None:
        return data
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, codec) as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


def records_of(data: bytes) -> list[bytes]:
    """The file's records as bytes, a record with a quoted newline in one piece (an even
    number of quote characters closes it)."""
    out, open_record = [], b""
    for line in data.splitlines(keepends=True):
        open_record += line
        if open_record.count(b'"') % 2 == 0:
            out.append(open_record)
            open_record = b""
    assert not open_record, "a quote is never closed"
    return out


# A plugin phase that sleeps on every chunk (a slow phase keeps chunks in flight), as
# module source: tests write it next to their pipeline and put that folder on PYTHONPATH.
SLOW_PHASE = '''
import time

class Slow:
    def __init__(self, seconds):
        self.seconds = seconds
    def process(self, batch):
        time.sleep(self.seconds)
        return batch
'''
