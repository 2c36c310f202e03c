"""Snapshots of the console's dialogs added with the rejects detail and the quit paths
(fixed data; 80x24 and 140x45). Update with --snapshot-update and review the SVGs."""

from __future__ import annotations

import pytest

from etlconsole.ui.screens.modals import QuitModal, RejectModal

from .helpers import settled, wait_for
from .test_snapshots import SIZES, fixed, polled  # noqa: F401 (fixture)


@pytest.mark.parametrize("size", SIZES)
def test_one_reject_in_full(snap_compare, fixed, size):  # noqa: F811
    async def run_before(pilot):
        pilot.app.selected_job_id = "a1b2c3d4"
        await polled(pilot)
        pilot.app.screen.poll_now()
        await polled(pilot, 2)
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RejectModal))
        await settled(pilot)
    assert snap_compare(fixed(start="rejects"), terminal_size=size, run_before=run_before)


def test_quit_dialog_after_the_job_ended(snap_compare, fixed):  # noqa: F811
    async def run_before(pilot):
        await polled(pilot)
        modal = QuitModal(["feedf00d"], lambda: [],
                          lambda: "job feedf00d interrupted — resume: etlconsole resume feedf00d")
        pilot.app.push_screen(modal)
        await wait_for(pilot, lambda: modal.ended is not None, what="the re-check")
        await settled(pilot)
    assert snap_compare(fixed(start="monitor"), terminal_size=(80, 24), run_before=run_before)
