"""Jobs screen (issue 12): checkpoints by their number in the job, and rolling back to one
of a job that is not the store's first does what the confirmation said."""

from __future__ import annotations

from etlconsole.store import StateStore
from etlconsole.ui.screens.jobs import JobsScreen
from etlconsole.ui.screens.modals import ConfirmModal

from .helpers import cells, column, polled, wait_for


async def test_checkpoints_are_numbered_per_job_and_b_rolls_back_to_that_one(ws):
    ws.run()
    job = ws.run()                 # its checkpoints come after the first job's in the store
    async with ws.app(start="jobs").run_test(size=(140, 45)) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, JobsScreen)
        await polled(pilot, screen)
        checkpoints = screen.query_one("#checkpoints")
        numbers = column(checkpoints, 0)
        assert numbers == [str(n) for n in range(1, len(numbers) + 1)] and len(numbers) >= 3
        await pilot.press("tab", "down")                 # checkpoint 2
        assert checkpoints.cursor_key == "2"
        kept = int(cells(checkpoints)[1][1].replace(",", ""))   # its "last row"
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal), what="confirm")
        assert "back to checkpoint 2" in str(pilot.app.screen.title_text)
        await pilot.press("y")
        store = StateStore(ws.state)
        try:
            await wait_for(pilot, lambda: store.job(job["job_id"])["status"] == "interrupted",
                           what="the rollback")
            j = store.job(job["job_id"])
            assert j["rows_read"] == kept
            assert j["error"] == "rolled back to checkpoint 2; resume to continue"
            assert [c["number"] for c in store.checkpoints(job["job_id"])] == [1, 2]
        finally:
            store.close()


def test_details_of_a_branched_job_show_each_branch(tmp_path):
    from etlconsole.records import Job
    from etlconsole.ui.screens.jobs import job_details
    job = {"id": "b1", "created_at": "2026-01-01T00:00:00", "pipeline_name": "b",
           "pipeline_file": "b.toml", "source_path": "o.csv",
           "bytes_total": 10, "destinations": [], "status": "succeeded", "started_at": None,
           "finished_at": None, "elapsed_s": 1.0, "rows_read": 10, "rows_loaded": 9,
           "rows_rejected": 1, "rows_warned": 0, "settings": {}, "peak_rss_mb": 100.0,
           "retries": 0, "error": None, "phase_stats": [
               {"label": "extract", "rows_in": 10, "rows_out": 9, "rejected": 1, "warned": 0,
                "seconds": 0.01},
               {"label": "phase 2 (branch) > all > phase 1 (load)", "branch": "all",
                "rows_in": 9, "filtered": 0, "rejected": 0, "refused": 1, "loaded": 8,
                "seconds": 0.02}]}
    text = str(job_details(Job.from_row(job)))
    assert "branch all" in text and "loaded          8" in text and "rej       1" in text
