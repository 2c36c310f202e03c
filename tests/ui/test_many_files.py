"""The console on what issue 15 added: a job of many files (each reject's file and record
within it, the job's files in its details, each batch's file) and a Dask job (its
workers' table on the monitor, each batch's part). Real jobs of a real drop, run by the
engine; the Dask workers' event is recorded in the store as the driver records it."""

from __future__ import annotations


import pytest
from textual.widgets import DataTable

from etlconsole import api
from etlconsole.store import StateStore
from etlconsole.ui.screens.jobs import JobsScreen
from etlconsole.ui.screens.modals import DetailsModal, RejectModal
from etlconsole.ui.screens.monitor import MonitorScreen
from etlconsole.ui.screens.rejects import RejectsScreen

from .helpers import cells, column, polled, split_into_drop, static_text, wait_for

SIZES = [(80, 24), (140, 45)]


def drop_job(ws) -> dict:
    """orders.csv split into a drop of two files (the second gzipped), the sample pipeline
    pointed at the drop, run by the engine: a job of many files with rejects in both."""
    half = split_into_drop(ws.csv, ws.root / "drop")
    text = ws.pipeline.read_text()
    ws.pipeline.write_text(text.replace('path = "orders.csv"', 'path = "drop"', 1))
    summary = ws.run()
    assert summary["status"] == "succeeded" and summary["rows_rejected"] > 0
    return {"job": summary, "half": half}


def one_reject_in(ws, job_id: str, name: str) -> dict:
    """A reject of the job whose record is in file ``name``, with where it is."""
    store = StateStore(ws.state)
    try:
        j = api.find(store, job_id)
        locate = api.file_locator(j)
        for r in api.rejects(store, job_id):
            found = locate(r.row)
            if found and found["file"].endswith(name):
                return {"row": r.row, **found}
    finally:
        store.close()
    raise AssertionError(f"no reject in {name}")


@pytest.mark.parametrize("size", SIZES)
async def test_rejects_of_a_job_of_many_files_say_their_file_and_record(ws, size):
    made = drop_job(ws)
    job_id = made["job"]["job_id"]
    second = one_reject_in(ws, job_id, "b.csv.gz")
    assert second["row"] > made["half"] and second["file_record"] == second["row"] - made["half"]
    async with ws.app(start="rejects").run_test(size=size) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, RejectsScreen)
        await polled(pilot, screen)
        rows = screen.query_one("#reject-rows", DataTable)
        await wait_for(pilot, lambda: rows.row_count > 0, what="the reject rows")
        labels = [str(c.label) for c in rows.columns.values()]
        if size[0] >= 120:            # room for a column: each row's file and record
            assert labels[:2] == ["row", "file"]
            files = column(rows, 1)
            assert any(f.startswith("a.csv:") for f in files)
            assert f"b.csv.gz:{second['file_record']:,}" in files
        else:                         # 80 columns: the columns of one file, unchanged
            assert labels == ["row", "state", "column", "value", "rule", "message"]
        # the highlighted reject's line under the table says its file at every size
        first = screen.query_one("#reject-rows").highlighted_reject()
        assert first["file"].endswith("a.csv")
        assert f"(a.csv:{first['file_record']:,})" in static_text(pilot.app, "#reject-values")
        # Enter on a reject of the second file: its file and its record within it
        index = column(rows, 0).index(f"{second['row']:,}")
        rows.focus()
        rows.move_cursor(row=index)
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RejectModal))
        body = static_text(pilot.app, "#reject-body")
        assert f"b.csv.gz, record {second['file_record']:,}" in body
        await pilot.press("escape")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        # the column comes and goes with the width; the cursor stays on its reject
        other = (80, 24) if size[0] >= 120 else (140, 45)
        await pilot.resize_terminal(*other)
        await wait_for(pilot, lambda: ("file" in [str(c.label) for c in rows.columns.values()])
                       == (other[0] >= 120), what="the file column to follow the width")
        await pilot.pause()
        assert screen.query_one("#reject-rows").highlighted_reject()["row"] == second["row"]
        assert f"(b.csv.gz:{second['file_record']:,})" in static_text(pilot.app, "#reject-values")


@pytest.mark.parametrize("size", SIZES)
async def test_job_details_list_the_files_and_batches_say_theirs(ws, size):
    made = drop_job(ws)
    job_id = made["job"]["job_id"]
    async with ws.app(start="jobs").run_test(size=size) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, JobsScreen)
        await polled(pilot, screen)
        batches = screen.query_one("#batches", DataTable)
        await wait_for(pilot, lambda: batches.row_count > 0, what="the batches")
        labels = [str(c.label) for c in batches.columns.values()]
        assert labels[-1] == "file"
        files = [row[-1] for row in cells(batches)]
        assert files[0] == "a.csv" and files[-1] == "b.csv.gz"
        assert files == sorted(files)           # a batch never spans files, in file order
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DetailsModal))
        shown = "\n".join(str(w.render()) for w in pilot.app.screen.query("Static"))
        assert "files      2, in this order:" in shown
        a_line = next(line for line in shown.splitlines() if "a.csv  (" in line)
        assert f"records 1-{made['half']:,}" in a_line
        assert "b.csv.gz  (" in shown and "gzip" in shown
        assert job_id in shown


def record_dask(ws, job_id: str) -> None:
    """What the Dask driver records of a job of two parts: its executor event and a
    ``workers`` event (as ``engine/executors/progress.py`` writes it)."""
    store = StateStore(ws.state)
    try:
        store.add_event(job_id, "executor", executor="dask", workers=2, scheduler=None, parts=2)
        store.add_event(job_id, "workers", workers=[
            {"worker": "tcp://127.0.0.1:40215", "pid": 4242, "part": 0, "records": 900,
             "rows_per_s": 81234.5, "rss_mb": 211.0},
            {"worker": "tcp://127.0.0.1:40217", "pid": 4243, "part": 1, "records": 700,
             "rows_per_s": 70999.0, "rss_mb": 198.4}])
    finally:
        store.close()


@pytest.mark.parametrize("size", SIZES)
async def test_monitor_draws_a_dask_jobs_workers(ws, size):
    made = drop_job(ws)
    job_id = made["job"]["job_id"]
    record_dask(ws, job_id)
    async with ws.app(start="monitor").run_test(size=size) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, MonitorScreen)
        await polled(pilot, screen)
        table = screen.query_one("#m-workers", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="the workers")
        assert table.display and table.region.height >= 3     # on screen, with its header
        assert [str(c.label) for c in table.columns.values()] == ["worker", "file", "rows/s",
                                                                   "memory"]
        assert cells(table) == [["127.0.0.1:40215", "p0 a.csv", "81,234", "211 MB"],
                                ["127.0.0.1:40217", "p1 b.csv.gz", "70,999", "198 MB"]]


async def test_monitor_of_a_local_job_has_no_workers_table(ws):
    ws.run()
    async with ws.app(start="monitor").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        table = screen.query_one("#m-workers", DataTable)
        assert table.row_count == 0 and not table.display


async def test_batches_of_a_dask_job_say_their_part(ws):
    made = drop_job(ws)
    job_id = made["job"]["job_id"]
    store = StateStore(ws.state)
    try:
        store.add_event(job_id, "executor", executor="dask", workers=2, scheduler=None, parts=2)
        # part 1's batches numbered from 1,000,001, as the Dask executor numbers them
        store.conn.execute("UPDATE pipeline_batches SET batch_number = batch_number + 1000000 "
                         "WHERE job_id = ? AND row_start > ?", [job_id, made["half"]])
        store.conn.commit()
        # the part checkpoint the driver records when part 1 completes (no "last_row" in
        # its data: the row's row_count is its last record)
        store.add_checkpoint(job_id, "part", {"part": 1, "file": str(ws.root / "drop" / "b.csv.gz"),
                                              "records": 999, "rows_loaded": 980, "batch": 1000003,
                                              "first_record": made["half"] + 1},
                             made["job"]["rows_read"])
    finally:
        store.close()
    async with ws.app(start="jobs").run_test(size=(140, 45)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        batches = screen.query_one("#batches", DataTable)
        await wait_for(pilot, lambda: batches.row_count > 0, what="the batches")
        rows = cells(batches)
        parts = {row[0]: row[-1] for row in rows}
        assert any(int(n.replace(",", "")) > 1_000_000 and f == "p1 b.csv.gz"
                   for n, f in parts.items())
        assert any(int(n.replace(",", "")) < 1_000_000 and f == "p0 a.csv"
                   for n, f in parts.items())
        checkpoints = screen.query_one("#checkpoints", DataTable)
        assert f"{made['job']['rows_read']:,}" in column(checkpoints, 1)


def renumber_as_parts(ws, job_id: str, split: list, part_of_row) -> None:
    """Record a Dask job of byte-range parts (ADR 0029) over a job the engine ran: its
    executor event with the split, each batch numbered in its part's range, and a
    ``workers`` event naming the last two parts."""
    store = StateStore(ws.state)
    try:
        store.add_event(job_id, "executor", executor="dask", workers=2, scheduler=None,
                        parts=len(split), split=split)
        for number, row_start in store.conn.execute(
                "SELECT batch_number, row_start FROM pipeline_batches WHERE job_id = ? "
                "ORDER BY batch_number DESC", [job_id]).fetchall():
            store.conn.execute("UPDATE pipeline_batches SET batch_number = ? WHERE job_id = ? "
                               "AND batch_number = ?",
                               [number + 1_000_000 * part_of_row(row_start), job_id, number])
        store.conn.commit()
        last = len(split) - 1
        store.add_event(job_id, "workers", workers=[
            {"worker": "tcp://127.0.0.1:40215", "pid": 4242, "part": last - 1, "records": 900,
             "rows_per_s": 81234.5, "rss_mb": 211.0},
            {"worker": "tcp://127.0.0.1:40217", "pid": 4243, "part": last, "records": 700,
             "rows_per_s": 70999.0, "rss_mb": 198.4}])
    finally:
        store.close()


async def shown_parts(ws) -> tuple[set[str], list[list[str]]]:
    """The jobs screen's batches' file column, and the monitor's workers' rows."""
    async with ws.app(start="jobs").run_test(size=(140, 45)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        batches = screen.query_one("#batches", DataTable)
        await wait_for(pilot, lambda: batches.row_count > 0, what="the batches")
        assert [str(c.label) for c in batches.columns.values()][-1] == "file"
        files = {row[-1] for row in cells(batches)}
    async with ws.app(start="monitor").run_test(size=(80, 24)) as pilot:
        screen = pilot.app.screen
        await polled(pilot, screen)
        table = screen.query_one("#m-workers", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="the workers")
        workers = [row[:2] for row in cells(table)]
    return files, workers


async def test_byte_range_parts_of_a_drop_say_their_file(ws):
    """A drop whose second file was cut into two byte ranges: part 2 is b.csv.gz's second
    range (the part number is no longer the file's index)."""
    made = drop_job(ws)
    half = made["half"]
    quarter = half + (made["job"]["rows_read"] - half) // 2
    renumber_as_parts(ws, made["job"]["job_id"], [[0, 0, None], [1, 0, 40_000], [1, 40_000, None]],
                      lambda row: 0 if row <= half else 1 if row <= quarter else 2)
    files, workers = await shown_parts(ws)
    assert {"p0 a.csv", "p1 b.csv.gz", "p2 b.csv.gz"} <= files
    assert workers == [["127.0.0.1:40215", "p1 b.csv.gz"], ["127.0.0.1:40217", "p2 b.csv.gz"]]


async def test_byte_range_parts_of_one_file_say_their_part(ws):
    """One plain file cut into three ranges: the batches say their part (and the file),
    though a job of one file has no file column otherwise."""
    summary = ws.run()
    rows = summary["rows_read"]
    renumber_as_parts(ws, summary["job_id"], [[0, 0, 30_000], [0, 30_000, 60_000], [0, 60_000, None]],
                      lambda row: min(2, (row - 1) * 3 // rows))
    files, workers = await shown_parts(ws)
    assert files == {"p0 orders.csv", "p1 orders.csv", "p2 orders.csv"}
    assert workers == [["127.0.0.1:40215", "p1 orders.csv"], ["127.0.0.1:40217", "p2 orders.csv"]]


@pytest.mark.parametrize("size", SIZES)
async def test_job_details_of_a_large_drop_show_its_ends_and_the_gap(ws, size):
    """A drop of 20 files: the details list the first and last five and count the ten
    between (they were every file, the job's figures after a screen of them per 20)."""
    lines = ws.csv.read_bytes().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    (ws.root / "drop").mkdir()
    step = len(body) // 20
    for k in range(20):
        chunk = body[k * step:(k + 1) * step if k < 19 else len(body)]
        (ws.root / "drop" / f"part_{k:02d}.csv").write_bytes(header + b"".join(chunk))
    ws.pipeline.write_text(ws.pipeline.read_text().replace('path = "orders.csv"', 'path = "drop"', 1))
    summary = ws.run()
    assert summary["status"] == "succeeded"
    job_id = summary["job_id"]
    async with ws.app(start="jobs").run_test(size=size) as pilot:
        screen = pilot.app.screen
        assert isinstance(screen, JobsScreen)
        await polled(pilot, screen)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DetailsModal))
        shown = "\n".join(str(w.render()) for w in pilot.app.screen.query("Static"))
        assert f"files      20, in this order (etlconsole show {job_id} --files lists them all):" in shown
        named = [k for k in range(20) if f"part_{k:02d}.csv  (" in shown]
        assert named == [0, 1, 2, 3, 4, 15, 16, 17, 18, 19]
        assert "… 10 more files" in shown
        assert f"read {summary['rows_read']:,}" in shown     # the figures after the list
