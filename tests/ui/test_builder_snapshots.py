"""Snapshots of the builder building a pipeline from nothing: a new file, its source form
with the sniff, the options form of a freshly added phase (80x24 and 140x45).

Update after an intended change with ``pytest tests/ui/test_builder_snapshots.py
--snapshot-update`` and review the SVGs."""

from __future__ import annotations

import shutil

import pytest

from etlconsole.config import Settings
from etlconsole.ui.app import ConsoleApp

from .conftest import ROOT
from .helpers import settled, wait_for

SIZES = [(80, 24), (140, 45)]


@pytest.fixture
def new_app(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "sample_data" / "orders.csv", tmp_path / "orders.csv")
    state = tmp_path / "state" / "state.db"

    def make() -> ConsoleApp:
        return ConsoleApp(state, settings=Settings(state_db=str(state)), start="builder",
                          pipeline="new.toml", poll_interval=60, export_dir=tmp_path,
                          cwd=tmp_path)
    return make


async def checked(pilot, n=1):
    await wait_for(pilot, lambda: pilot.app.screen.checks >= n)
    await settled(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_new_pipeline(snap_compare, new_app, size):
    assert snap_compare(new_app(), terminal_size=size, run_before=checked)


@pytest.mark.parametrize("size", SIZES)
def test_source_form(snap_compare, new_app, size):
    async def run_before(pilot):
        await checked(pilot)
        await pilot.press("s", *"orders.csv")
        await wait_for(pilot, lambda: "sniffed:" in str(
            pilot.app.screen.query_one("#src-sniff").content))
        await settled(pilot)
    assert snap_compare(new_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_options_form_of_a_new_load(snap_compare, new_app, size):
    async def run_before(pilot):
        await checked(pilot)
        screen = pilot.app.screen
        screen.editor.add(-1, "load")
        screen.changed(0)
        await pilot.press("e")
        await settled(pilot)
    assert snap_compare(new_app(), terminal_size=size, run_before=run_before)
