"""The Textual operator console. The only package that imports textual; the CLI imports it
lazily. It reads the state store and launches engine processes (ADR 0008)."""

from __future__ import annotations

from pathlib import Path


def run_console(state_path: str | Path, **options) -> int:
    """Open the console; returns the exit code (see ``ConsoleApp.result_code``)."""
    from .app import ConsoleApp
    app = ConsoleApp(state_path, **options)
    code = app.run()
    line = app.exit_line()     # the job, its status, what to type next: one line on stdout
    if line:
        print(line, flush=True)
    return code if isinstance(code, int) else 0
