"""Snapshots of every screen with fixed data (80x24 and 140x45).

Update after an intended change with ``pytest tests/ui --snapshot-update`` and review the SVGs.
"""

from __future__ import annotations

import shutil

import pytest

from etlconsole.config import Settings
from etlconsole.ui.app import ConsoleApp
from etlconsole.ui.screens.jobs import rollback_text
from etlconsole.ui.screens.modals import ConfirmModal, QuitModal

from .conftest import ROOT
from .fixed_data import fixed_store, short_job_store
from .helpers import settled, wait_for

SIZES = [(80, 24), (140, 45)]


@pytest.fixture
def fixed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "sample_data" / "orders.toml", tmp_path / "orders.toml")
    shutil.copy(ROOT / "sample_data" / "orders.csv", tmp_path / "orders.csv")
    state = fixed_store(tmp_path / "state" / "state.db")

    def make(**options) -> ConsoleApp:
        options.setdefault("poll_interval", 60)       # one poll, then a still picture
        return ConsoleApp(state, settings=Settings(state_db=str(state)), export_dir=tmp_path,
                          cwd=tmp_path, **options)
    return make


async def polled(pilot, n=1):
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.polls >= n)
    await settled(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_jobs(snap_compare, fixed, size):
    assert snap_compare(fixed(start="jobs"), terminal_size=size, run_before=polled)


def test_jobs_failed_job_selected(snap_compare, fixed):
    async def run_before(pilot):
        await polled(pilot)
        await pilot.press("down", "down")
        await polled(pilot, 2)
    assert snap_compare(fixed(start="jobs"), terminal_size=(80, 24), run_before=run_before)


def test_rollback_confirmation(snap_compare, fixed):
    report = {"job_id": "a1b2c3d4", "dry_run": True, "to_checkpoint": None, "rows": 98_000,
              "destinations": [{"path": "/data/warehouse.db", "rows": {"orders": 98_000},
                                "dropped": [], "restored": []}]}

    async def run_before(pilot):
        await polled(pilot)
        pilot.app.push_screen(ConfirmModal("Roll back job a1b2c3d4 entirely?",
                                           rollback_text(report)))
        await settled(pilot)
    assert snap_compare(fixed(start="jobs"), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_running(snap_compare, fixed, size):
    assert snap_compare(fixed(start="monitor"), terminal_size=size, run_before=polled)


def test_monitor_finished(snap_compare, fixed):
    assert snap_compare(fixed(watch="a1b2c3d4"), terminal_size=(80, 24), run_before=polled)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_finished_20_row_job(snap_compare, tmp_path, monkeypatch, size):
    """A job shorter than the sampling interval still shows its figures and charts."""
    monkeypatch.chdir(tmp_path)
    state = short_job_store(tmp_path / "state" / "state.db")
    app = ConsoleApp(state, settings=Settings(state_db=str(state)), export_dir=tmp_path,
                     cwd=tmp_path, watch="5407f00d", poll_interval=60)
    assert snap_compare(app, terminal_size=size, run_before=polled)


@pytest.mark.parametrize("size", SIZES)
def test_rejects(snap_compare, fixed, size):
    async def run_before(pilot):
        pilot.app.selected_job_id = "a1b2c3d4"
        await polled(pilot)
        pilot.app.screen.poll_now()
        await polled(pilot, 2)
    assert snap_compare(fixed(start="rejects"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_builder(snap_compare, fixed, size):
    async def run_before(pilot):
        await wait_for(pilot, lambda: pilot.app.screen.checks >= 1)
        await pilot.press("down", "space")          # validate off: modified, re-checked
        await wait_for(pilot, lambda: pilot.app.screen.checks >= 2)
        await settled(pilot)
    assert snap_compare(fixed(start="builder", pipeline="orders.toml"), terminal_size=size,
                        run_before=run_before)


def test_options_form(snap_compare, fixed):
    async def run_before(pilot):
        await wait_for(pilot, lambda: pilot.app.screen.checks >= 1)
        await pilot.press("e")
        await settled(pilot)
    assert snap_compare(fixed(start="builder", pipeline="orders.toml"), terminal_size=(80, 24),
                        run_before=run_before)


def test_quit_with_running_job(snap_compare, fixed):
    async def run_before(pilot):
        await polled(pilot)
        pilot.app.push_screen(QuitModal(["feedf00d"]))
        await settled(pilot)
    assert snap_compare(fixed(start="monitor"), terminal_size=(80, 24), run_before=run_before)
