"""Helpers of the console suite: wait for polls, read what a screen shows."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

from textual.widgets import DataTable, Static

DEADLINE_S = 20.0


async def wait_for(pilot, predicate, timeout: float = DEADLINE_S, what: str = "condition"):
    """Let the app run until ``predicate()`` is true."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def tables_settled(app) -> bool:
    """True when no DataTable still owes its idle-time re-measure of rows and widths.

    Pilot's pause() decides "idle" from CPU time, which a loaded machine fakes, so a
    picture taken right after it can show a table with stale column widths.
    (Private DataTable state; textual is pinned to 8.2.x.)
    """
    return not any(t._require_update_dimensions or t._updated_cells
                   for t in app.screen.query(DataTable))


async def settled(pilot):
    await wait_for(pilot, lambda: tables_settled(pilot.app), what="tables to settle")
    await pilot.pause()


async def polled(pilot, screen, n: int = 1):
    """Wait until ``screen`` completed ``n`` more polls (fresh data on screen)."""
    target = screen.polls + n
    await wait_for(pilot, lambda: screen.polls >= target, what=f"{type(screen).__name__} poll")


def static_text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


def cells(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def column(table: DataTable, index: int) -> list[str]:
    return [row[index] for row in cells(table)]


def split_into_drop(csv: Path, drop: Path) -> int:
    """``csv`` split into a drop of two files, a.csv and b.csv.gz (gzipped), each with the
    header; returns the records in the first."""
    drop.mkdir()
    lines = csv.read_bytes().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    half = len(body) // 2
    (drop / "a.csv").write_bytes(header + b"".join(body[:half]))
    (drop / "b.csv.gz").write_bytes(gzip.compress(header + b"".join(body[half:])))
    return half
