"""Snapshots of fixing rejects in the console (issue 16; fixed data, 80x24 and 140x45): the
edit form of one reject, and the replay's confirmation with its dry run over the rejects
screen (one reject resolved by a replay, one edited). Update with --snapshot-update and
review the SVGs."""

from __future__ import annotations

import pytest

from etlconsole.sample import COLUMNS
from etlconsole.store import StateStore
from etlconsole.ui.screens.modals import ConfirmModal
from etlconsole.ui.screens.replay import EditRejectModal

from .helpers import settled, wait_for
from .test_snapshots import SIZES, fixed, polled  # noqa: F401 (fixture)

DRY_RUN = {"job_id": "a1b2c3d4", "replay": None, "dry_run": True, "status": "succeeded",
           "origin": "/data/state/jobs/a1b2c3d4/fixes/console.csv", "rows_in": 2,
           "rows_loaded": 1, "rows_rejected": 1, "rows_refused": 0, "refused": [],
           "rejected": [{"row": 201, "phase": "validate", "rule": "allowed", "column": "status",
                         "message": "'refundd' is not one of new, paid, shipped"}],
           "batches": [], "destination": {"kind": "sqlite", "path": "/data/warehouse.db",
                                          "table": "orders", "mode": "append"}, "error": None}


def prepare(state_dir) -> None:
    """The fixed job gets its source's dialect, and record 300 a replay that resolved it."""
    store = StateStore(state_dir / "state.db")
    store.update_job("a1b2c3d4", dialect={"encoding": "utf-8", "delimiter": ",", "quote": '"',
                                          "header": True, "names": list(COLUMNS)})
    store.conn.execute("UPDATE pipeline_rejects SET resolved_at = '2025-03-03T10:00:00.000+00:00', "
                          "resolved_by = 1 WHERE job_id = 'a1b2c3d4' AND row = 300")
    store.close()


async def open_edit_form(pilot):
    pilot.app.selected_job_id = "a1b2c3d4"
    await polled(pilot)
    pilot.app.screen.poll_now()
    await polled(pilot, 2)
    await pilot.press("tab", "enter", "e")      # row 100 (customer_email), its form
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, EditRejectModal))
    await settled(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_edit_one_reject(snap_compare, fixed, tmp_path, size):  # noqa: F811
    app = fixed(start="rejects")
    prepare(tmp_path / "state")
    assert snap_compare(app, terminal_size=size, run_before=open_edit_form)


@pytest.mark.parametrize("size", SIZES)
def test_replay_confirmation(snap_compare, fixed, tmp_path, size):  # noqa: F811
    app = fixed(start="rejects")
    prepare(tmp_path / "state")

    async def run_before(pilot):
        await open_edit_form(pilot)
        await pilot.press(*"x@y.org", "enter")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, EditRejectModal))
        rows = pilot.app.screen.query_one("#reject-rows")
        while rows.highlighted_reject()["row"] != 201:        # row 201 (status)
            await pilot.press("down")
        await pilot.press("enter", "e")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, EditRejectModal))
        await pilot.press(*"refundd", "enter")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, EditRejectModal))
        rejects = pilot.app.screen
        assert sorted(rejects.edits) == [100, 201]
        pilot.app.clear_notifications()
        await settled(pilot)
        rejects._confirm(rejects.data.job, "Replay 2 edited rejects of job a1b2c3d4?", DRY_RUN,
                         None, (), None, [])
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal))
        await settled(pilot)
    assert snap_compare(app, terminal_size=size, run_before=run_before)
