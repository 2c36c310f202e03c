"""Plain formatting of store data for the console (no Textual here: easy to test)."""

from __future__ import annotations

from rich.text import Text

from ..progress import fmt_duration
from ..records import JobStatus

STATUS_STYLE: dict[str, str] = {
    JobStatus.SUCCEEDED: "green", JobStatus.RUNNING: "bold cyan", JobStatus.PENDING: "cyan",
    JobStatus.FAILED: "bold red", JobStatus.INTERRUPTED: "yellow", JobStatus.ROLLED_BACK: "magenta",
}


def text(value, style: str = "") -> Text:
    """A cell or line from data: a Text is never parsed as markup (``[/x]`` stays ``[/x]``)."""
    return Text("" if value is None else str(value), style=style, no_wrap=True, end="")


def status(value: str | None) -> Text:
    return text(value or "?", STATUS_STYLE.get(value or "", ""))


def stamp(iso: str | None) -> str:
    """'2025-03-01T12:00:00.123+00:00' -> '2025-03-01 12:00:00' (UTC, as stored)."""
    return (iso or "")[:19].replace("T", " ")


def num(value) -> str:
    return f"{value or 0:,}"


def duration(seconds) -> str:
    return fmt_duration(seconds) if seconds is not None else ""


def mib(nbytes) -> str:
    value = (nbytes or 0) / 2**20
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def rate(value) -> str:
    return f"{value or 0:,.0f}"


def bar(fraction: float, width: int) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(fraction * width)
    return "█" * full + "░" * (width - full)
