"""The monitor's figures are true (issue 12): a finished short job shows its figures, a job
being launched never shows another job's, rates and ETA are of the running segment, and
the charts start at zero in a bounded height that leaves the events their room."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from etlconsole.store import StateStore
from etlconsole.ui.launcher import Launched
from etlconsole.ui.screens.monitor import MonitorScreen
from etlconsole.ui.widgets.chart import Bars, Chart, axis_label, bar_rows

from .conftest import Workspace
from .helpers import polled, static_text, wait_for


@pytest.fixture
def sleeper(tmp_path):
    """A process that stands in for an engine that has not written its job yet."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def launched(proc, tmp_path, job_id=None) -> Launched:
    return Launched([sys.executable], proc, tmp_path / "launch.log", job_id=job_id)


async def test_a_finished_20_row_job_shows_its_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ws = Workspace(tmp_path, rows=20)
    job = ws.run()
    assert job["status"] == "succeeded" and job["rows_read"] == 20
    async with ws.app(start="monitor").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        rows, rss = screen.query_one("#chart-rows", Chart), screen.query_one("#chart-rss", Chart)
        assert len(rows.samples) >= 2 and len(rss.samples) >= 2
        assert rows.samples[0] == 0 and rows.samples[-1] > 0       # at start, at the end
        assert min(rss.samples) > 0
        speed = static_text(pilot.app, "#m-speed")
        assert "rows/s 0 avg" not in speed and "rows/s" in speed
        title = str(rss.query_one(".chart-title").content)
        assert "(max 0)" not in title and "RSS" in title
        assert "rows read 20 " in static_text(pilot.app, "#m-rows")


async def test_a_new_run_never_shows_the_previous_jobs_figures(ws, sleeper, tmp_path):
    ws.run()
    async with ws.app(start="monitor").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        assert "100.0%" in static_text(pilot.app, "#m-progress")
        pilot.app._follow(launched(sleeper, tmp_path))   # `r` in the builder, before the
        await polled(pilot, screen, 2)                    # engine has written its job
        assert "starting the engine" in static_text(pilot.app, "#m-final")
        for line in ("#m-progress", "#m-rows", "#m-speed", "#m-memory", "#m-events"):
            assert static_text(pilot.app, line) == "", line
        assert screen.query_one("#m-phases").row_count == 0
        assert not screen.query_one("#chart-rows", Chart).samples
        assert screen.job_id is None


async def test_a_resume_shows_starting_until_its_engine_takes_the_job(ws, sleeper, tmp_path):
    job = ws.run()
    async with ws.app(start="monitor").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        pilot.app._follow(launched(sleeper, tmp_path, job_id=job["job_id"]))
        await polled(pilot, screen, 2)
        assert f"to resume job {job['job_id']}" in static_text(pilot.app, "#m-final")
        assert static_text(pilot.app, "#m-progress") == ""
        # the engine takes the job over: its figures are shown
        store = StateStore(ws.state)
        store.update_job(job["job_id"], pid=sleeper.pid, status="running",
                         pid_started=psutil.Process(sleeper.pid).create_time(),
                         heartbeat_at="9999-01-01T00:00:00+00:00")
        store.close()
        await polled(pilot, screen, 2)
        assert screen.job_id == job["job_id"]
        assert "starting" not in static_text(pilot.app, "#m-final")


def resumed_job(ws) -> StateStore:
    """A job that read 900,000 rows in 90 s, was stopped, and now runs again: 10,000 rows
    in the 10 s of this segment (1,000 rows/s), 91% of the bytes done."""
    store = StateStore(ws.state)
    store.create_job("5e9a0001", pipeline_name="big", source_path=str(ws.csv),
                     bytes_total=1_000, settings={"max_memory_mb": 512})
    store.update_job("5e9a0001", status="running", heartbeat_at="9999-01-01T00:00:00+00:00",
                     pid=os.getpid(), pid_started=psutil.Process().create_time(),
                     rows_read=905_000, bytes_read=905)
    for i, t in enumerate((0.0, 5.0, 10.0)):
        store.add_metric("5e9a0001", {
            "elapsed_s": 90.0 + t, "rows_read": 900_000 + i * 5_000, "rows_loaded": 0,
            "rows_rejected": 0, "rows_per_s": 0.0 if i == 0 else 1_000.0, "rss_mb": 120.0,
            "batch_size": 500, "queue_depth": 1, "retries": 0, "bytes_read": 900 + i * 5,
            "segment": 2, "segment_elapsed_s": t, "segment_rows": i * 5_000,
            "segment_bytes": i * 5})
    return store


async def test_rates_and_eta_are_those_of_the_running_segment(ws):
    store = resumed_job(ws)
    async with ws.app(start="monitor").run_test(size=(140, 45)) as pilot:
        await polled(pilot, pilot.app.screen)
        speed = static_text(pilot.app, "#m-speed")
        # not 910,000 rows / 100 s: the first run's rows were not read in this segment
        assert "1,000 avg" in speed or "1.0K avg" in speed, speed
        assert "over 2 runs" in speed and "elapsed 1m40s" in speed, speed
        # 90 bytes left at this segment's 1 byte/s
        assert "ETA 1m30s" in static_text(pilot.app, "#m-progress")
    store.close()


async def test_a_figures_line_longer_than_the_terminal_wraps_whole(ws):
    """At 80 columns the live speed line of a resumed job (rates of hundreds of thousands,
    "over 2 runs") is longer than the terminal: it takes two lines, not cut at the edge."""
    store = resumed_job(ws)
    store.add_metric("5e9a0001", {
        "elapsed_s": 101.0, "rows_read": 1_300_000, "rows_loaded": 0, "rows_rejected": 0,
        "rows_per_s": 387_918.0, "rss_mb": 120.0, "batch_size": 50_000, "queue_depth": 1,
        "retries": 0, "bytes_read": 915, "segment": 2, "segment_elapsed_s": 11.0,
        "segment_rows": 400_000, "segment_bytes": 15})
    async with ws.app(start="monitor").run_test(size=(80, 24)) as pilot:
        await polled(pilot, pilot.app.screen)
        speed = static_text(pilot.app, "#m-speed")
        assert len(speed) > 80 and speed.endswith("over 2 runs"), speed
        line = pilot.app.screen.query_one("#m-speed")
        assert line.region.width <= 80 and line.region.height == 2
    store.close()


def test_bars_start_at_zero():
    top, bottom = bar_rows([100.0, 99.0, 0.0, 1.0], height=4, top=100.0)[0::3]
    assert top[:2] == "██"          # 99 of 100 is nearly full, not the chart's floor
    assert bottom == "██ ▁"         # nothing shows nothing; a little shows a sliver
    assert [axis_label(v) for v in (950, 12_345, 1_800_000)] == ["950", "12K", "1.8M"]


@pytest.mark.parametrize("size", [(80, 24), (140, 45)])
async def test_charts_are_bounded_and_the_events_keep_their_room(ws, size):
    ws.run()
    async with ws.app(start="monitor").run_test(size=size) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, MonitorScreen)
        await polled(pilot, screen)
        await wait_for(pilot, lambda: screen.query_one("#m-events").size.height > 0)
        charts = screen.query_one("#m-charts").region
        events = screen.query_one("#m-events").region
        assert 4 <= charts.height <= 12, charts
        assert events.height >= 3 and events.y >= charts.bottom, (charts, events)
        assert events.bottom <= size[1] - 1                     # above the footer
        bars = screen.query_one("#chart-rows").query_one(Bars)
        lines = [str(line) for line in bars.render().split("\n")]
        assert lines[-1].strip().startswith("0") and len(lines) == bars.size.height
