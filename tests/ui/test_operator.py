"""What an operator does with the keyboard: one reject in full, pages of rejects, the
command palette's actions and Quit, the quit dialog when the job ends, the line printed
on quit, screenshots, the batches list of another job."""

from __future__ import annotations

import dataclasses

import pytest
from textual.command import CommandPalette

from etlconsole.store import StateStore
from etlconsole.ui.app import job_line
from etlconsole.ui.screens.jobs import JobsScreen
from etlconsole.ui.screens.modals import ConfirmModal, QuitModal, RejectModal
from etlconsole.ui.screens.rejects import PAGE, RejectsScreen

from .helpers import polled, settled, static_text, wait_for
from .test_app import long_job, wait_running  # noqa: F401 (fixture)
from .test_idle import many_rejects

SIZES = [(80, 24), (140, 45)]


def store_rejects(ws, job_id: str) -> list[dict]:
    store = StateStore(ws.state)
    try:
        return list(store.rejects(job_id))
    finally:
        store.close()


async def open_rejects(pilot) -> RejectsScreen:
    screen = pilot.app.screen
    assert isinstance(screen, RejectsScreen)
    await polled(pilot, screen)
    await pilot.press("tab")                       # from the groups to the rows
    assert screen.focused is screen.query_one("#reject-rows")
    return screen


def on_screen(app, widget) -> bool:
    """The widget's region lies inside the terminal."""
    r, size = widget.region, app.size
    return r.width > 0 and r.height > 0 and r.right <= size.width and r.bottom <= size.height


# -- rejects ----------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
async def test_enter_opens_one_reject_in_full(ws, size):
    job = ws.run()
    first = store_rejects(ws, job["job_id"])[0]
    async with ws.app(start="rejects").run_test(size=size) as pilot:
        screen = await open_rejects(pilot)
        # the highlighted reject's values are on screen, under the table, at any size
        pane = screen.query_one("#reject-values")
        assert on_screen(pilot.app, pane)
        shown = static_text(pilot.app, "#reject-values")
        assert f"row {first['row']:,}" in shown
        for col in first["values"]:
            assert f"{col}=" in shown
        # the rejected value has a column of its own, inside the terminal's width
        rows = screen.query_one("#reject-rows")
        value_col = [c.label.plain for c in rows.columns.values()].index("value")
        left = sum(c.get_render_width(rows) for c in list(rows.columns.values())[:value_col + 1])
        assert left <= size[0]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RejectModal))
        body = str(pilot.app.screen.query_one("#reject-body").content)
        assert first["message"] in body and first["rule"] in body
        for col, value in first["values"].items():          # every value, none cut
            assert col in body and ("(null)" if value is None else str(value)) in body
        assert "record (CSV" in body
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is screen)


async def test_a_reject_the_extract_could_not_split_shows_its_raw_text(ws):
    job = ws.run()
    raw = next(r for r in store_rejects(ws, job["job_id"]) if r["phase"] == "extract")
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = await open_rejects(pilot)
        rows = screen.query_one("#reject-rows")
        target = next(k for k, r in rows.rejects.items() if r["phase"] == "extract")
        rows.move_cursor(row=rows.get_row_index(target))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RejectModal))
        body = str(pilot.app.screen.query_one("#reject-body").content)
        assert "raw record" in body and raw["values"]["raw"] in body


async def test_rejects_come_a_page_at_a_time(ws):
    job = many_rejects(ws, 1_000)
    every = store_rejects(ws, job)
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = await open_rejects(pilot)
        rows = screen.query_one("#reject-rows")
        assert rows.row_count == PAGE
        assert screen.check_action("page", (-1,)) is None          # no page before the first
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: screen.data.page == 1, what="page 2")
        assert f"rows {PAGE + 1:,}-{2 * PAGE:,} of {len(every):,}" in static_text(
            pilot.app, "#rejects-caption")
        assert [r["row"] for r in rows.rejects.values()] == [r["row"] for r in every[PAGE:2 * PAGE]]
        await pilot.press("left_square_bracket")
        await wait_for(pilot, lambda: screen.data.page == 0, what="page 1")


# -- command palette ----------------------------------------------------------------------
def palette_titles(app) -> list[str]:
    return [c.title for c in app.get_system_commands(app.screen)]


async def run_palette(pilot, text: str) -> None:
    """ctrl+p, type, Enter: the palette as an operator uses it."""
    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CommandPalette))
    await pilot.press(*text)
    await pilot.pause(0.3)
    await pilot.press("enter")


async def test_palette_offers_the_actions_of_the_screen(ws):
    job = ws.run()
    async with ws.app(start="jobs").run_test(size=(80, 24)) as pilot:
        await polled(pilot, pilot.app.screen)
        titles = palette_titles(pilot.app)
        for title in ("Rollback (b)", "Cleanup (c)", "Details (⏎)", "Monitor (m)"):
            assert title in titles, titles
        assert "Resume (r)" not in titles             # a succeeded job cannot be resumed
        await run_palette(pilot, "rollback")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal),
                       what="the rollback preview")
        assert job["job_id"] in pilot.app.screen.title_text
        await pilot.press("n")
        await pilot.press("x")
        await polled(pilot, pilot.app.screen)
        assert "Export (e)" in palette_titles(pilot.app)
        await run_palette(pilot, "export")
        out = ws.root / f"rejects-{job['job_id']}.csv"
        await wait_for(pilot, lambda: out.exists() and out.read_text().count("\n") > 1,
                       what="the export")


async def test_palette_offers_the_builder_actions(ws):
    async with ws.app(start="builder", pipeline=ws.pipeline).run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        titles = palette_titles(pilot.app)
        for title in ("Run (r)", "Add (a)", "Edit (e)"):
            assert title in titles, titles
        assert not [t for t in titles if t.startswith("Save")]    # nothing to save yet
        await pilot.press("down", "space")                        # an edit
        await pilot.pause()
        assert [t for t in palette_titles(pilot.app) if t.startswith("Save")]


async def test_palette_quit_goes_through_the_running_job_dialog(long_job):  # noqa: F811
    ws = long_job
    app = ws.app(run={"pipeline": ws.pipeline})
    async with app.run_test(size=(80, 24)) as pilot:
        launched = await wait_running(pilot, ws)
        await run_palette(pilot, "quit")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitModal), what="the dialog")
        assert launched.running and "still running" in static_text(app, "#quit-body")
        # the job ends while the dialog is open: the dialog says so
        launched.stop()
        assert launched.wait(30) is not None
        await wait_for(pilot, lambda: "ended" in static_text(app, "#quit-body"),
                       what="the dialog to see the job ended")
        assert "still running" not in static_text(app, "#quit-body")
        assert f"job {launched.job_id} interrupted — resume" in static_text(app, "#quit-body")
        await pilot.press("s")                        # nothing to stop any more: not a key
        assert isinstance(app.screen, QuitModal)
        await pilot.press("q")
        await pilot.pause(0.2)
    assert app.return_value == 1
    line = app.exit_line()
    assert line == f"job {launched.job_id} interrupted — resume: etlconsole --state " \
                   f"{ws.state} resume {launched.job_id}"


def test_the_exit_line_says_what_to_type_next():
    from etlconsole.records import Job

    def job(**row) -> Job:
        return Job.from_row({"id": "3f2a1b2c", "status": "running", "resumable": 1,
                             "pipeline_name": "p", "created_at": "2026-01-01", **row})
    assert job_line(job()) == "job 3f2a1b2c running — watch: etlconsole ui --watch 3f2a1b2c"
    assert job_line(job(status="failed"), "--state s.db ") == \
        "job 3f2a1b2c failed — resume: etlconsole --state s.db resume 3f2a1b2c"
    assert job_line(job(status="succeeded")) == \
        "job 3f2a1b2c succeeded — details: etlconsole show 3f2a1b2c"
    assert job_line(job(status="failed", resumable=0)).endswith("show 3f2a1b2c")


# -- screenshots ----------------------------------------------------------------------------
async def test_palette_screenshot_without_a_downloads_folder(ws, monkeypatch, tmp_path):
    home = tmp_path / "home"                     # no Downloads folder, no XDG_DOWNLOAD_DIR
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DOWNLOAD_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    ws.run()
    async with ws.app(start="jobs").run_test(size=(80, 24)) as pilot:
        await polled(pilot, pilot.app.screen)
        await run_palette(pilot, "screenshot")
        await wait_for(pilot, lambda: list(ws.root.glob("*.svg")), what="the screenshot")
    svg = list(ws.root.glob("*.svg"))[0].read_text(encoding="utf-8")
    assert "jobs" in svg


# -- jobs: batches ----------------------------------------------------------------------------
async def test_another_jobs_batches_open_at_the_first_row(ws):
    ws.settings = dataclasses.replace(ws.settings, batch_size_max=100, batch_size_min=100,
                                      chunk_size=100)
    older, newer = ws.run(), ws.run()
    async with ws.app(start="jobs").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, JobsScreen)
        await polled(pilot, screen)
        batches = screen.query_one("#batches")
        await wait_for(pilot, lambda: batches.row_count == newer["batches"] > 10)
        batches.focus()
        await pilot.press(*["down"] * 19)                  # look at the last batches
        await wait_for(pilot, lambda: batches.scroll_y > 0 and batches.cursor_row > 10,
                       what="the last batches")
        screen.query_one("#jobs").focus()
        await pilot.press("down")                          # the older job
        await wait_for(pilot, lambda: pilot.app.selected_job_id == older["job_id"])
        await polled(pilot, screen, 2)
        await settled(pilot)
        assert batches.cursor_row == 0 and batches.scroll_y == 0
        assert str(batches.get_row_at(0)[0]) == "1"
        # at 80 columns every batch column is inside the table
        width = sum(c.get_render_width(batches) for c in batches.columns.values())
        assert width <= batches.size.width, (width, batches.size.width)
