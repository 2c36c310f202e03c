"""Launch engine work as separate processes (``etlconsole … --no-ui --json``).

Each job runs in its own session (``start_new_session``) with its output in a log file,
so it survives the console: quitting can leave it running headless. Stopping sends
SIGTERM, which the engine turns into status ``interrupted`` (resumable).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass
class Launched:
    """One engine process started by the console."""

    args: list[str]
    proc: subprocess.Popen
    log_path: Path
    job_id: str | None = None          # known at once for resume; found by pid for run
    started: float = field(default_factory=time.monotonic)
    out_path: Path | None = None       # stdout apart (its --json object), when asked for

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def stop(self) -> None:
        """SIGTERM to the job's process group; the engine records it as interrupted."""
        if self.running:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, lines: int = 5) -> list[str]:
        """The last lines the engine wrote (stderr and stdout), e.g. a one-line user error."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in text.replace("\r", "\n").splitlines() if line.strip()][-lines:]

    def output_json(self) -> dict | None:
        """The JSON object the command printed last on stdout (``out_path``), if any."""
        if self.out_path is None:
            return None
        try:
            lines = self.out_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    return None
        return None

    def error_line(self) -> str | None:
        """The engine's one-line error, if it printed one."""
        errors = [line for line in self.log_tail(20) if line.startswith(("error:", "internal error:"))]
        return errors[-1] if errors else None


class Launcher:
    """Starts ``etlconsole --state STATE <command> … --no-ui --json`` in the background."""

    def __init__(self, state_path: Path, *, cwd: Path | None = None):
        self.state_path = Path(state_path).resolve()
        self.cwd = Path(cwd or Path.cwd())
        self.log_dir = self.state_path.parent / "console-logs"

    def command(self, *args: str, no_ui: bool = True) -> list[str]:
        return [sys.executable, "-m", "etlconsole", "--state", str(self.state_path),
                *args, *(["--no-ui"] if no_ui else []), "--json"]

    def start(self, *args: str, job_id: str | None = None, json_apart: bool = False,
              no_ui: bool = True) -> Launched:
        """``json_apart``: stdout (the --json object) to a file of its own, next to the log;
        ``no_ui=False`` for a command without that option (rollback)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        log_path = self.log_dir / f"{stamp}-{args[0]}.log"
        out_path = self.log_dir / f"{stamp}-{args[0]}.json" if json_apart else None
        cmd = self.command(*args, no_ui=no_ui)
        with log_path.open("wb") as log, \
                (out_path.open("wb") if out_path else open(os.devnull, "wb")) as out:
            proc = subprocess.Popen(cmd, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                    stdout=out if out_path else log,
                                    stderr=log if out_path else subprocess.STDOUT,
                                    start_new_session=True)
        return Launched(cmd, proc, log_path, job_id=job_id, out_path=out_path)

    def run(self, pipeline: Path, *, source: Path | None = None, dest: Path | None = None) -> Launched:
        args = ["run", str(Path(pipeline).resolve())]
        if source:
            args += ["--source", str(Path(source).resolve())]
        if dest:
            args += ["--dest", str(Path(dest).resolve())]
        return self.start(*args)

    def resume(self, job_id: str) -> Launched:
        return self.start("resume", job_id, job_id=job_id)

    def replay(self, job_id: str, fix_file: Path | None = None, *, sets: tuple[str, ...] = (),
               where: str | None = None, dry_run: bool = False) -> Launched:
        """``etlconsole replay JOB [FILE] [--set c=v …] [--where EXPR] [--dry-run]``, in its
        own session like a job (a replay left running when the console quits finishes)."""
        args = ["replay", job_id]
        if fix_file is not None:
            args.append(str(Path(fix_file).resolve()))
        for s in sets:
            args += ["--set", s]
        if where is not None:
            args += ["--where", where]
        if dry_run:
            args.append("--dry-run")
        return self.start(*args, job_id=job_id, json_apart=True)

    def rollback_replay(self, job_id: str, number: int, *, dry_run: bool = False) -> Launched:
        """``etlconsole rollback JOB --replay N --dry-run | --yes``: undo one replay, in its
        own session like a replay."""
        args = ["rollback", job_id, "--replay", str(number), "--dry-run" if dry_run else "--yes"]
        return self.start(*args, job_id=job_id, json_apart=True, no_ui=False)
