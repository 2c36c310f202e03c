"""The app: screen keys, command palette, quitting with a running job, the live table."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from etlconsole.sample import write_orders_csv
from etlconsole.store import StateStore
from etlconsole.ui.screens.modals import QuitModal
from etlconsole.ui.widgets.table import LiveTable

from .helpers import wait_for


async def test_screen_keys_and_command_palette(ws):
    ws.run()
    app = ws.app(start="jobs")
    async with app.run_test(size=(80, 24)) as pilot:
        for key, mode in (("p", "builder"), ("m", "monitor"), ("x", "rejects"), ("j", "jobs")):
            await pilot.press(key)
            assert app.current_mode == mode
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for label in ("Pipeline builder (p)", "Monitor (m)", "Jobs (j)", "Rejects (x)"):
            assert label in titles
        palette = next(c for c in app.get_system_commands(app.screen) if c.title == "Monitor (m)")
        palette.callback()
        await pilot.pause()
        assert app.current_mode == "monitor"
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0


@pytest.fixture
def long_job(ws, monkeypatch):
    """A pipeline that runs for several seconds in an engine process."""
    write_orders_csv(ws.csv, 120_000)
    monkeypatch.setenv("PIPELINE_BATCH_SIZE_MAX", "100")
    monkeypatch.setenv("PIPELINE_BATCH_SIZE_MIN", "100")
    monkeypatch.setenv("PIPELINE_CHUNK_SIZE", "100")
    return ws


def job_of(ws, job_id: str) -> dict:
    store = StateStore(ws.state)
    try:
        return store.job(job_id) | {"segments": store.segments(job_id)}
    finally:
        store.close()


async def wait_running(pilot, ws):
    launched = pilot.app.launched[-1]

    def running():
        return launched.job_id is not None and job_of(ws, launched.job_id)["status"] == "running"
    await wait_for(pilot, running, timeout=30, what="the job to run")
    return launched


async def quit_and_stop(pilot, launched) -> None:
    """``q``, then ``s`` in the quit dialog; waits for the job's process to end."""
    await pilot.press("q")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, QuitModal))
    await pilot.press("s")
    await wait_for(pilot, lambda: not launched.running, timeout=30)
    await pilot.pause(0.2)


async def test_quit_with_a_running_job_cancel_then_leave_it_running(long_job):
    ws = long_job
    app = ws.app(run={"pipeline": ws.pipeline})
    async with app.run_test(size=(80, 24)) as pilot:
        launched = await wait_running(pilot, ws)
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitModal))
        await pilot.press("c")                      # cancel: still here
        await wait_for(pilot, lambda: not isinstance(app.screen, QuitModal))
        assert app.current_mode == "monitor"
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitModal))
        await pilot.press("l")                      # leave it running
        await pilot.pause()
    assert launched.running                         # the console is gone, the job is not
    launched.stop()
    assert launched.wait(30) is not None
    assert job_of(ws, launched.job_id)["status"] == "interrupted"


async def test_quit_and_stop_the_job_resumably(long_job):
    ws = long_job
    app = ws.app(run={"pipeline": ws.pipeline})
    async with app.run_test(size=(80, 24)) as pilot:
        launched = await wait_running(pilot, ws)
        await quit_and_stop(pilot, launched)
    job = job_of(ws, launched.job_id)
    assert job["status"] == "interrupted" and job["resumable"]
    assert app.return_value == 1


async def test_quit_and_stop_a_resume_launched_from_the_jobs_screen(long_job):
    """The quit dialog's stop reaches a resume the console launched (``r`` on the jobs
    screen) as it reaches a run: the job is interrupted again, resumable, its second
    segment ended by the operator."""
    ws = long_job
    app = ws.app(run={"pipeline": ws.pipeline})
    async with app.run_test(size=(80, 24)) as pilot:
        first = await wait_running(pilot, ws)
        first.stop()
        assert first.wait(30) is not None
        await pilot.press("j")
        await wait_for(pilot, lambda: app.current_mode == "jobs")
        await wait_for(pilot, lambda: job_of(ws, first.job_id)["status"] == "interrupted",
                       timeout=30, what="the first run to be interrupted")
        await pilot.press("r")
        await wait_for(pilot, lambda: len(app.launched) == 2, what="the resume to launch")
        resumed = await wait_running(pilot, ws)
        assert resumed.args[resumed.args.index("resume") + 1] == first.job_id
        await quit_and_stop(pilot, resumed)
    job = job_of(ws, first.job_id)
    assert job["status"] == "interrupted" and job["resumable"]
    assert len(job["segments"]) == 2 and job["rows_read"] < 120_000
    assert app.return_value == 1


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield LiveTable([("name", "name"), ("value", "value")])


async def test_live_table_keeps_the_cursor_on_its_row():
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(LiveTable)
        table.sync([("a", ("a", 1)), ("b", ("b", 2)), ("c", ("c", 3))])
        await pilot.press("down")
        assert table.cursor_key == "b"
        table.sync([("a", ("a", 1)), ("b", ("b", 20)), ("c", ("c", 3))])   # in place
        assert table.cursor_key == "b" and str(table.get_cell("b", "value")) == "20"
        table.sync([("z", ("z", 0)), ("a", ("a", 1)), ("b", ("b", 2)), ("c", ("c", 3))])
        assert table.cursor_key == "b" and table.cursor_row == 2     # a new row on top
        table.sync([("z", ("z", 0)), ("b", ("b", 2))])                # rows removed
        assert table.cursor_key == "b" and table.row_count == 2
        table.sync([("z", ("z", "[/x] [bold]")), ("b", ("b", 2))])   # markup stays text
        assert str(table.get_cell("z", "value")) == "[/x] [bold]"
        await pilot.pause()
