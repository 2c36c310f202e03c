"""structlog setup: human-readable on a terminal, JSON lines when asked.

With ``--log-format json`` every event a job records in the state store (the sniff's
notes, ``when`` decisions, start, resume, retries, the end, rollback, cleanup, replays)
is also a JSON line on stderr (``job_event``, installed by the CLI as the store's
``on_event``), with the headless progress as ``job.progress``: a machine follows a job
from its stderr without reading the store (ADR 0019)."""

from __future__ import annotations

import logging
import sys


def _import_structlog_without_rich():
    """structlog's ``dev`` module imports rich, when installed (Textual brings it), only to
    draw exceptions in ``ConsoleRenderer``. etlconsole logs no exception (a failure is one
    line), and that import was ~55 ms of every command's start, a fifth of it: structlog
    is imported while rich is marked absent, and finds plain tracebacks instead. Rich
    itself stays importable (the console imports it later, unaffected)."""
    if "rich" in sys.modules:       # already paid for (the console imported it)
        import structlog
        return structlog
    sys.modules["rich"] = None      # "import rich" now fails at once (ImportError)
    try:
        import structlog
    finally:
        del sys.modules["rich"]
    return structlog


structlog = _import_structlog_without_rich()


def configure(fmt: str = "text", level: str = "info") -> None:
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get():
    return structlog.get_logger("etlconsole")


def job_event(job_id: str | None, event: str, level: str, details: dict) -> None:
    """Log one recorded job event (the state store's ``on_event``)."""
    log = get()
    emit = getattr(log, level if level in ("debug", "info", "warning", "error") else "info")
    # keys structlog itself uses are kept under another name
    fields = {(f"{k}_" if k in ("event", "level", "timestamp") else k): v
              for k, v in details.items()}
    emit(event, job=job_id, **fields)
