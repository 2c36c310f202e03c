"""Monitor and rejects screens: live polling, bounded charts, escaping, CSV export."""

from __future__ import annotations

import csv
import os

import psutil

from etlconsole.store import StateStore
from etlconsole.ui.screens.monitor import CHART_SAMPLES, MonitorScreen
from etlconsole.ui.screens.rejects import RejectsScreen
from etlconsole.ui.widgets.chart import Chart

from .helpers import cells, column, polled, static_text, wait_for


def running_job(ws, job_id="0000feed") -> StateStore:
    store = StateStore(ws.state)
    store.create_job(job_id, pipeline_name="live", source_path=str(ws.csv), bytes_total=1000,
                     settings={"max_memory_mb": 512})
    store.update_job(job_id, status="running", heartbeat_at="9999-01-01T00:00:00+00:00",
                     pid=os.getpid(), pid_started=psutil.Process().create_time())
    return store


def sample(i: int) -> dict:
    return {"elapsed_s": i * 0.5, "rows_read": i * 100, "rows_loaded": i * 90,
            "rows_rejected": i * 10, "rows_per_s": 200.0 + i, "rss_mb": 100.0 + i % 7,
            "batch_size": 500, "queue_depth": 1, "retries": 0, "bytes_read": min(i * 4, 1000)}


async def test_monitor_shows_the_last_job_finished(ws):
    job = ws.run()
    async with ws.app(start="monitor").run_test(size=(140, 45)) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, MonitorScreen)
        await polled(pilot, screen)
        assert screen.job_id == job["job_id"]
        assert "finished: succeeded" in static_text(pilot.app, "#m-final")
        assert "100.0%" in static_text(pilot.app, "#m-progress")
        assert f"loaded {job['rows_loaded']:,}" in static_text(pilot.app, "#m-rows")
        assert "peak" in static_text(pilot.app, "#m-memory")
        phases = screen.query_one("#m-phases")
        assert column(phases, 0)[:3] == ["extract", "phase 1 (clean)", "phase 2 (validate)"]
        assert "job.succeeded" in static_text(pilot.app, "#m-events")


async def test_monitor_follows_a_running_job_with_bounded_charts(ws):
    store = running_job(ws)
    for i in range(1, 201):
        store.add_metric("0000feed", sample(i))
    async with ws.app(start="monitor").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        assert screen.job_id == "0000feed"               # attaches to the running job
        chart = screen.query_one("#chart-rows", Chart)
        assert len(chart.samples) == CHART_SAMPLES
        assert chart.samples[-1] == 400.0
        assert "rows/s 400 now" in static_text(pilot.app, "#m-speed")
        assert "80.0%" in static_text(pilot.app, "#m-progress")
        assert "ETA" in static_text(pilot.app, "#m-progress")
        for i in range(201, 211):                        # new samples only are read
            store.add_metric("0000feed", sample(i))
        await polled(pilot, screen, 2)
        assert chart.samples[-1] == 410.0 and len(chart.samples) == CHART_SAMPLES
        store.update_job("0000feed", status="interrupted", error="stopped [/x] by test",
                         elapsed_s=105.0)
        await polled(pilot, screen, 2)
        final = static_text(pilot.app, "#m-final")
        assert "finished: interrupted" in final and "stopped [/x] by test" in final
    store.close()


async def test_rows_read_never_shows_less_than_the_committed_counters(ws):
    store = running_job(ws)
    store.add_metric("0000feed", sample(10))                   # read 1,000 half a second ago
    store.update_job("0000feed", rows_read=1_300, rows_loaded=1_250, rows_rejected=50)
    async with ws.app(start="monitor").run_test(size=(80, 24)) as pilot:
        await polled(pilot, pilot.app.screen)
        assert "rows read 1,300 · loaded 1,250 · rejected 50" in static_text(pilot.app, "#m-rows")
    store.close()


async def test_rejects_grouped_filtered_escaped_and_exported(ws):
    # a value that is also Rich markup must be shown as it is
    text = ws.csv.read_text(encoding="utf-8").splitlines()
    fields = text[5].split(",")
    fields[2] = "[/x]"                       # customer_email: fails the pattern rule
    text[5] = ",".join(fields)
    ws.csv.write_text("\n".join(text) + "\n", encoding="utf-8")
    job = ws.run()
    async with ws.app(start="rejects").run_test(size=(140, 45)) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, RejectsScreen)
        await polled(pilot, screen)
        groups = screen.query_one("#groups")
        rows = screen.query_one("#reject-rows")
        n = f"{job['rows_rejected']:,}"
        assert cells(groups)[0] == ["(all)", "", "", n, n, "0"]      # rows, open, resolved
        counts = [int(c.replace(",", "")) for c in column(groups, 3)[1:]]
        assert sum(counts) == job["rows_rejected"] and counts == sorted(counts, reverse=True)
        assert rows.row_count == job["rows_rejected"]
        assert any("[/x]" in r[3] for r in cells(rows))      # the rejected value
        assert set(column(rows, 1)) == {"open"}               # none resolved yet
        # selecting a group shows only its rows
        await pilot.press("down")
        await polled(pilot, screen, 2)
        assert rows.row_count == counts[0]
        assert set(column(rows, 4)) == {cells(groups)[1][1]}
        # e exports every reject to CSV
        await pilot.press("e")
        out = ws.root / f"rejects-{job['job_id']}.csv"
        await wait_for(pilot, out.exists)
        await wait_for(pilot, lambda: len(list(csv.reader(out.open()))) == job["rows_rejected"] + 1)
        header = next(csv.reader(out.open()))
        assert header == ["row", "phase", "rule", "column", "message", "values"]
        # the screen still renders (markup in data did not break it)
        pilot.app.save_screenshot(str(ws.root / "shot.svg"))
