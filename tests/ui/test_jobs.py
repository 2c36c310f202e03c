"""Jobs screen, keyboard only, against real jobs in a real state store and SQLite destination."""

from __future__ import annotations

import os
import sqlite3

import psutil

from etlconsole.store import StateStore
from etlconsole.ui.screens.jobs import JobsScreen
from etlconsole.ui.screens.modals import ConfirmModal, DetailsModal

from .helpers import cells, column, polled, static_text, wait_for


def dest_rows(ws, job_id=None) -> int:
    conn = sqlite3.connect(ws.dest)
    try:
        if job_id is None:
            return conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        return conn.execute("SELECT count(*) FROM orders WHERE _etl_job_id = ?", [job_id]).fetchone()[0]
    except sqlite3.OperationalError:       # the table was dropped
        return 0
    finally:
        conn.close()


def job_status(ws, job_id) -> str:
    store = StateStore(ws.state)
    try:
        return store.job(job_id)["status"]
    finally:
        store.close()


async def open_jobs(pilot):
    screen = pilot.app.screen
    assert isinstance(screen, JobsScreen)
    await polled(pilot, screen)
    return screen


async def test_lists_jobs_most_recent_first_with_checkpoints_and_batches(ws):
    first, second = ws.run(), ws.run()
    async with ws.app(start="jobs").run_test(size=(140, 45)) as pilot:
        screen = await open_jobs(pilot)
        jobs = screen.query_one("#jobs")
        assert column(jobs, 0) == [second["job_id"], first["job_id"]]
        assert column(jobs, 2) == ["succeeded", "succeeded"]
        assert column(jobs, 3) == ["2,000", "2,000"]
        assert screen.query_one("#checkpoints").row_count >= 2
        assert screen.query_one("#batches").row_count == second["batches"]
        # Down selects the older job: its details follow, the cursor stays on it
        await pilot.press("down")
        await polled(pilot, screen, 2)
        assert pilot.app.selected_job_id == first["job_id"]
        assert jobs.cursor_key == first["job_id"]
        assert column(screen.query_one("#batches"), 1) == ["COMMITTED"] * first["batches"]


async def test_keyboard_rollback_end_to_end(ws):
    job = ws.run()
    assert dest_rows(ws, job["job_id"]) == job["rows_loaded"] > 0
    async with ws.app(start="jobs").run_test(size=(140, 45)) as pilot:
        screen = await open_jobs(pilot)
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal), what="confirm")
        body = str(pilot.app.screen.query_one("#confirm-body").content)
        assert f"removes {job['rows_loaded']:,} rows" in body
        assert "table orders" in body and str(ws.dest) in body
        assert dest_rows(ws, job["job_id"]) == job["rows_loaded"]      # nothing yet
        await pilot.press("y")
        await wait_for(pilot, lambda: column(screen.query_one("#jobs"), 2) == ["rolled_back"],
                       what="rolled_back in the table")
        assert job_status(ws, job["job_id"]) == "rolled_back"
        assert dest_rows(ws) == 0
        # a rolled-back job cannot be rolled back again: the key is disabled
        assert screen.check_action("rollback", ()) is None


async def test_rollback_cancelled_with_n_or_escape(ws):
    job = ws.run()
    async with ws.app(start="jobs").run_test(size=(100, 30)) as pilot:
        screen = await open_jobs(pilot)
        for key in ("n", "escape"):
            await pilot.press("b")
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal))
            await pilot.press(key)
            await wait_for(pilot, lambda: pilot.app.screen is screen and not screen.busy)
        assert job_status(ws, job["job_id"]) == "succeeded"
        assert dest_rows(ws, job["job_id"]) == job["rows_loaded"]


async def test_rollback_to_checkpoint_then_resume(ws):
    job = ws.run()
    async with ws.app(start="jobs").run_test(size=(140, 45)) as pilot:
        screen = await open_jobs(pilot)
        await pilot.press("tab")                      # to the checkpoints table
        checkpoints = screen.query_one("#checkpoints")
        assert screen.focused is checkpoints
        assert checkpoints.row_count >= 2
        cp_id = int(checkpoints.cursor_key)          # the first checkpoint
        kept = int(cells(checkpoints)[0][2].replace(",", ""))
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal))
        assert f"back to checkpoint {cp_id}" in str(pilot.app.screen.title_text)
        await pilot.press("y")
        await wait_for(pilot, lambda: column(screen.query_one("#jobs"), 2) == ["interrupted"])
        assert dest_rows(ws, job["job_id"]) == kept < job["rows_loaded"]
        # r resumes it in an engine process; the monitor shows it finish
        await pilot.press("shift+tab")
        assert screen.check_action("resume", ()) is True
        await pilot.press("r")
        await wait_for(pilot, lambda: pilot.app.current_mode == "monitor")
        await wait_for(pilot, lambda: job_status(ws, job["job_id"]) == "succeeded", timeout=60,
                       what="the resumed job")
        monitor = pilot.app.screen
        await wait_for(pilot, lambda: "finished: succeeded" in static_text(pilot.app, "#m-final"))
        assert dest_rows(ws, job["job_id"]) == job["rows_loaded"]
        assert monitor.job_id == job["job_id"]


async def test_keys_that_do_not_apply_are_disabled(ws):
    job = ws.run()
    store = StateStore(ws.state)
    store.create_job("0000beef", pipeline_name="elsewhere", status="running")
    store.update_job("0000beef", heartbeat_at="9999-01-01T00:00:00+00:00",
                     pid=os.getpid(), pid_started=psutil.Process().create_time())
    store.close()
    async with ws.app(start="jobs").run_test(size=(100, 30)) as pilot:
        screen = await open_jobs(pilot)
        jobs = screen.query_one("#jobs")
        assert jobs.cursor_key == "0000beef"           # the running one is the newest
        assert screen.check_action("rollback", ()) is None
        assert screen.check_action("resume", ()) is None
        assert screen.check_action("cleanup", ()) is True
        await pilot.press("b")
        await pilot.pause(0.3)
        assert pilot.app.screen is screen               # no confirmation: nothing happens
        await pilot.press("down")
        assert jobs.cursor_key == job["job_id"]
        assert screen.check_action("rollback", ()) is True
        assert screen.check_action("resume", ()) is None      # it succeeded


async def test_enter_shows_details_and_cleanup_asks_first(ws):
    job = ws.run()
    orphan = ws.state.parent / "jobs" / "deadbeef"
    orphan.mkdir(parents=True)
    async with ws.app(start="jobs").run_test(size=(140, 45)) as pilot:
        screen = await open_jobs(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DetailsModal))
        assert f"job {job['job_id']}" == pilot.app.screen.title_text
        assert "phase 2 (validate)" in str(pilot.app.screen.body)
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal))
        assert "remove workspace: job deadbeef" in str(pilot.app.screen.body)
        assert orphan.exists()
        await pilot.press("y")
        await wait_for(pilot, lambda: not orphan.exists() and not screen.busy)
        assert job_status(ws, job["job_id"]) == "succeeded"


def test_rollback_confirmation_shows_the_cli_lines():
    """The console and `etlconsole rollback --dry-run` describe a rollback with the same lines."""
    from etlconsole import api
    from etlconsole.ui.screens.jobs import rollback_text
    report = {"job_id": "j1", "dry_run": True, "to_checkpoint": None, "rows": 7,
              "destinations": [{"path": "out", "kind": "folder", "rows": {"out": 7}, "dropped": [],
                                "restored": ["out"]}]}
    text = rollback_text(report).plain
    assert text.startswith("This removes 7 rows:")
    assert all(f"  {line}\n" in text for line in api.rollback_summary(report).change_lines())
    assert "out: would restore out" in text        # a folder is not called a table
