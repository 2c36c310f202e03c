"""An idle console reads (almost) nothing: counted statements on the screens' own
connections over many polls, never a timing. A change is read incrementally: the job rows
written since the last poll, one page of rejects."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from etlconsole.store import StateStore
from etlconsole.ui.screens.jobs import JobsScreen
from etlconsole.ui.screens.monitor import MonitorScreen
from etlconsole.ui.screens.rejects import PAGE, RejectsScreen

from .helpers import polled, wait_for

IDLE_POLLS = 12
REJECTS = 5_000


class Statements:
    """Every SQL statement a connection runs (sqlite3's trace callback), thread-safe."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn, self.seen, self.lock = conn, [], threading.Lock()
        conn.set_trace_callback(self._add)

    def _add(self, sql: str) -> None:
        with self.lock:
            self.seen.append(" ".join(sql.split()))

    def take(self) -> list[str]:
        with self.lock:
            out, self.seen = self.seen, []
        return out

    def close(self) -> None:
        self.conn.set_trace_callback(None)


def many_rejects(ws, n: int = REJECTS) -> str:
    """The job's rejects copied until it has ``n`` (row numbers moved past the file's)."""
    job = ws.run()["job_id"]
    conn = sqlite3.connect(ws.state)
    have, k = 0, 1
    while have < n:
        conn.execute(
            'INSERT INTO pipeline_rejects (job_id, batch_number, row, phase, rule, column_name,'
            ' message, "values") SELECT job_id, batch_number, row + ? * 100000, phase, rule,'
            ' column_name, message, "values" FROM pipeline_rejects WHERE job_id = ? AND row < 100000',
            (k, job))
        k += 1
        have = conn.execute("SELECT count(*) FROM pipeline_rejects WHERE job_id = ?",
                            (job,)).fetchone()[0]
    conn.commit()
    conn.close()
    return job


async def idle_statements(pilot, screen) -> list[str]:
    await polled(pilot, screen, 2)                 # the first polls read everything
    trace = Statements(screen.store.conn)
    try:
        await polled(pilot, screen, IDLE_POLLS)
        return trace.take()
    finally:
        trace.close()


def reads_of(statements: list[str], table: str) -> list[str]:
    return [s for s in statements if f"FROM {table}" in s]


@pytest.mark.parametrize("size", [(80, 24), (140, 45)])
async def test_idle_rejects_screen_reads_one_pragma_per_poll(ws, size):
    many_rejects(ws)
    async with ws.app(start="rejects", poll_interval=0.05).run_test(size=size) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, RejectsScreen)
        statements = await idle_statements(pilot, screen)
        assert not reads_of(statements, "pipeline_rejects"), statements[:5]
        assert not reads_of(statements, "import_jobs"), statements[:5]
        assert len(statements) <= IDLE_POLLS, statements[:5]
        assert screen.idle_polls >= IDLE_POLLS        # ... and the polls slowed down
        assert screen.next_interval() == screen.interval * screen.idle_factor


async def test_idle_jobs_screen_reads_one_pragma_per_poll(ws):
    for _ in range(3):
        ws.run()
    async with ws.app(start="jobs", poll_interval=0.05).run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, JobsScreen)
        statements = await idle_statements(pilot, screen)
        assert not [s for s in statements if "FROM pipeline_" in s or "FROM import_jobs" in s]
        assert len(statements) <= IDLE_POLLS, statements[:5]


async def test_idle_monitor_reads_nothing_but_a_pragma_between_dead_engine_checks(ws):
    job = ws.run()["job_id"]
    async with ws.app(start="monitor", poll_interval=0.05).run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, MonitorScreen)
        await polled(pilot, screen, 2)
        assert screen.job_id == job
        screen._dead_check = float("inf")       # the 5 s dead-engine check is not idle cost
        statements = await idle_statements(pilot, screen)
        assert not [s for s in statements if "FROM pipeline_" in s or "FROM import_jobs" in s]
        assert len(statements) <= IDLE_POLLS, statements[:5]
        # another connection's write is drawn at the next poll
        trace = Statements(screen.store.conn)
        writer = StateStore(ws.state)
        writer.update_job(job, error="noted by a test")
        writer.close()
        await wait_for(pilot, lambda: any("FROM import_jobs" in s for s in trace.seen),
                       what="the monitor to read the changed job")
        trace.close()


async def test_a_change_reads_only_the_changed_job_rows(ws):
    jobs = [ws.run()["job_id"] for _ in range(3)]
    async with ws.app(start="jobs").run_test(size=(140, 45)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen, 2)
        trace = Statements(screen.store.conn)
        writer = StateStore(ws.state)                 # another process's write, in effect
        writer.update_job(jobs[0], error="noted by a test")
        writer.close()
        await wait_for(pilot, lambda: any("updated_at >=" in s for s in trace.seen),
                       what="the changed job to be read")
        await polled(pilot, screen, 2)
        statements = trace.take()
        trace.close()
        job_reads = reads_of(statements, "import_jobs")
        assert job_reads and all("updated_at >=" in s for s in job_reads), job_reads
        # the selected job (the newest) did not change: its batches are not read again
        assert not reads_of(statements, "pipeline_batches")
        assert not reads_of(statements, "pipeline_checkpoints")


async def test_a_change_reads_one_page_of_rejects(ws):
    job = many_rejects(ws)
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen, 2)
        rows = screen.query_one("#reject-rows")
        assert rows.row_count == PAGE
        trace = Statements(screen.store.conn)
        writer = StateStore(ws.state)
        writer.update_job(job, error="noted by a test")   # the job row changed
        writer.close()
        await wait_for(pilot, lambda: reads_of(list(trace.seen), "pipeline_rejects"),
                       what="the rejects to be read again")
        await polled(pilot, screen, 1)
        statements = trace.take()
        trace.close()
        page_reads = [s for s in reads_of(statements, "pipeline_rejects") if "GROUP BY" not in s]
        assert page_reads and all("LIMIT" in s for s in page_reads), page_reads
        assert rows.row_count == PAGE
