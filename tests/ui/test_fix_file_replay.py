"""The fix-and-replay loop of issue 16 in the console, keys only: f writes the job's fix
file (as ``etlconsole rejects JOB --fix``) to the export folder, a script outside the
console fixes 380 of its 400 rows, F replays it after the dry-run confirmation: 380
resolved, 20 rejected again. A real demo-sized job by the real engine; the replays run as
``etlconsole replay`` subprocesses, as the console launches them."""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from etlconsole.engine.fixes import write_fix_file
from etlconsole.sample import write_orders_csv
from etlconsole.store import StateStore
from etlconsole.store.replays import open_rejects
from etlconsole.ui.screens.modals import ConfirmModal
from etlconsole.ui.screens.rejects import RejectsScreen
from etlconsole.ui.screens.replay import FixFileModal

from .conftest import Workspace
from .helpers import polled, static_text, wait_for

FIX_SCRIPT = Path(__file__).resolve().parents[1] / "e2e" / "fix_demo_rejects.py"
SLOW_S = 120.0       # a subprocess (or a 20,000-row file) on a shared machine: never asserted


@pytest.fixture
def demo(tmp_path, monkeypatch) -> Workspace:
    """The demo's size: 20,000 rows, 400 rejects."""
    for k in list(os.environ):
        if k.startswith("PIPELINE_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    return Workspace(tmp_path, rows=20_000)


def warehouse(ws) -> tuple[int, int]:
    con = sqlite3.connect(ws.dest)
    try:
        return con.execute("SELECT count(*), count(DISTINCT id) FROM orders").fetchone()
    finally:
        con.close()


def job_row(ws, job_id: str) -> dict:
    store = StateStore(ws.state)
    try:
        j = store.job(job_id)
        opened = open_rejects(store, job_id)
    finally:
        store.close()
    assert j["rows_read"] == j["rows_loaded"] + j["rows_rejected"], j    # conservation
    assert j["rows_rejected"] == len(opened)
    return {**j, "open": opened}


def said(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def confirmation(pilot) -> str:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal)
                   and pilot.app.screen.query("#confirm-body"), SLOW_S,
                   what="the dry-run confirmation")
    return static_text(pilot.app, "#confirm-body")


async def test_write_the_fix_file_fix_it_outside_and_replay_it(demo):
    ws = demo
    job = ws.run()
    assert (job["rows_read"], job["rows_loaded"], job["rows_rejected"]) == (20_000, 19_600, 400)
    assert warehouse(ws) == (19_600, 19_600)
    fix_file = ws.root / f"fix-{job['job_id']}.csv"
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, RejectsScreen)
        await polled(pilot, screen)
        # f: the fix file, in the export folder, said in a notification
        await pilot.press("f")
        await wait_for(pilot, lambda: any(str(fix_file) in m for m in said(pilot.app)), SLOW_S,
                       what="the fix file written")
        assert any(m.startswith("wrote 400 open rejects") for m in said(pilot.app))
        with fix_file.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        opened = job_row(ws, job["job_id"])["open"]
        assert [int(r["_etl_row"]) for r in rows] == [r["row"] for r in opened]   # the open ones
        assert len(rows) == 400
        # the same file as `etlconsole rejects JOB --fix` writes
        cli_file = ws.root / "cli-fix.csv"
        store = StateStore(ws.state)
        try:
            write_fix_file(store.job(job["job_id"]), open_rejects(store, job["job_id"]), cli_file)
        finally:
            store.close()
        assert cli_file.read_bytes() == fix_file.read_bytes()
        # outside the console: a script fixes all but 20, in place
        subprocess.run([sys.executable, str(FIX_SCRIPT), str(fix_file), str(fix_file), "20"],
                       check=True)
        # F: the path, pre-filled with the fix file; Enter: the dry run's confirmation
        await pilot.press("F")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, FixFileModal),
                       what="the fix-file form")
        assert pilot.app.screen.query_one("#fix-path").value == str(fix_file)
        await pilot.press("enter")
        body = await confirmation(pilot)
        assert "would load 380" in body and "would reject 20" in body
        assert "validate/min/quantity" in body
        assert warehouse(ws) == (19_600, 19_600)                  # a dry run writes nothing
        await pilot.press("y")
        await wait_for(pilot, lambda: "380 resolved" in static_text(pilot.app, "#rejects-title"),
                       SLOW_S, what="the screen's counts updated")
        assert "400 rejects: 20 open, 380 resolved" in static_text(pilot.app, "#rejects-title")
        assert not screen.replaying
        assert any("loaded 380, rejected again 20" in m for m in said(pilot.app))
        assert warehouse(ws) == (19_980, 19_980)                  # each row once
        j = job_row(ws, job["job_id"])
        assert (j["rows_read"], j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (
            20_000, 19_980, 20, 380)
        assert all(r["rule"] == "min" and r["column"] == "quantity" for r in j["open"])
        # u: undo that replay (rollback JOB --replay 1), after its dry run's confirmation
        await pilot.press("u")
        body = await confirmation(pilot)
        assert pilot.app.screen.title_text == f"Undo replay 1 of job {job['job_id']}?"
        assert "This removes 380 rows" in body and "open again" in body
        assert warehouse(ws) == (19_980, 19_980)                  # a dry run removes nothing
        await pilot.press("y")
        await wait_for(pilot, lambda: "400 open" in static_text(pilot.app, "#rejects-title"),
                       SLOW_S, what="the screen's counts back")
        assert "400 rejects: 400 open, 0 resolved" in static_text(pilot.app, "#rejects-title")
        # the poll may show the store's counts a moment before the undo's own callback
        await wait_for(pilot, lambda: any("undone: removed 380 rows" in m for m in said(pilot.app)),
                       SLOW_S, what="the undo said")
        assert not screen.replaying
    assert warehouse(ws) == (19_600, 19_600)
    j = job_row(ws, job["job_id"])
    assert (j["rows_read"], j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (
        20_000, 19_600, 400, 0)


async def test_undo_without_a_replay_says_why(ws):
    ws.run()
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        await pilot.press("u")
        await wait_for(pilot, lambda: not screen.replaying
                       and any("nothing to undo" in m for m in said(pilot.app)), SLOW_S,
                       what="the refusal")
        assert pilot.app.screen is screen


async def test_a_fix_file_of_another_job_is_refused(ws):
    first = ws.run()
    other = ws.root / "other-fix.csv"
    store = StateStore(ws.state)
    try:
        write_fix_file(store.job(first["job_id"]), open_rejects(store, first["job_id"]), other)
    finally:
        store.close()
    write_orders_csv(ws.csv, 2_000, seed=11)        # another source: rejects elsewhere
    job = ws.run()
    assert job["status"] == "succeeded" and job["job_id"] != first["job_id"]
    before = warehouse(ws)
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        assert screen.data.job["id"] == job["job_id"]
        await pilot.press("F")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, FixFileModal))
        field = pilot.app.screen.query_one("#fix-path")
        field.value = ""
        await pilot.press(*str(other), "enter")
        await wait_for(pilot, lambda: not screen.replaying and pilot.app.screen is screen
                       and any(m.startswith("error:") for m in said(pilot.app)), SLOW_S,
                       what="the refusal")
        error = next(m for m in said(pilot.app) if m.startswith("error:"))
        assert "not rejects of" in error and job["job_id"] in error and "\n" not in error
        assert not any(isinstance(s, ConfirmModal) for s in pilot.app.screen_stack)
    assert warehouse(ws) == before
    j = job_row(ws, job["job_id"])
    assert (j["rows_rejected"], j["rows_resolved"]) == (job["rows_rejected"], 0)


async def test_a_missing_file_is_said_in_the_form(ws):
    ws.run()
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        await pilot.press("F")                      # fix-JOB.csv not written yet
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, FixFileModal))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(pilot.app.screen, FixFileModal)
        assert "no file" in static_text(pilot.app, "#fix-error")
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert not screen.replaying


async def test_palette_offers_fix_file_and_replay_file(ws):
    ws.run()
    async with ws.app(start="rejects").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        commands = {c.title: c.help for c in pilot.app.screen_action_commands(screen)}
        assert "fix-JOB.csv" in commands["Fix file (f)"]
        assert "fix file" in commands["Replay file (F)"]
        assert "rollback JOB --replay N" in commands["Undo replay (u)"]
