"""``show``'s text of a job of many files: its list of files (manyfiles.file_lines), whole
for a small drop, for a large one the first and last few and the file reading began last,
the gaps counted; and its events' long values (a Dask job's split of every file) cut."""

from __future__ import annotations

from etlconsole.engine.manyfiles import FILES_AT_EACH_END, FILES_SHOWN, file_lines
from etlconsole.records import event_detail


def _record(n: int, read: int, rows: int = 10) -> dict:
    """A job of ``n`` files of ``rows`` records each; the first ``read`` read whole, the
    next one begun (its count not known yet), the rest not read yet."""
    files = []
    for i in range(n):
        f = {"path": f"drop/f{i:04d}.csv", "size": 100 + i}
        if i < read:
            f |= {"first_record": i * rows + 1, "records": rows}
        elif i == read:
            f |= {"first_record": i * rows + 1}
        files.append(f)
    return {"source_fingerprint": {"files": files}}


def test_a_drop_of_up_to_the_limit_is_listed_whole():
    lines = file_lines(_record(FILES_SHOWN, read=3))
    assert len(lines) == FILES_SHOWN
    assert lines[0] == "drop/f0000.csv  (100 bytes)  records 1-10 (10)"
    assert lines[3] == "drop/f0003.csv  (103 bytes)  records from 31"
    assert lines[4] == "drop/f0004.csv  (104 bytes)  not read yet"


def test_a_large_drop_shows_its_ends_and_where_reading_is():
    n = 2_000
    lines = file_lines(_record(n, read=1_000))
    head, tail = lines[:FILES_AT_EACH_END], lines[-FILES_AT_EACH_END:]
    assert [x.split()[0] for x in head] == [f"drop/f{i:04d}.csv" for i in range(FILES_AT_EACH_END)]
    assert [x.split()[0] for x in tail] == [f"drop/f{i:04d}.csv" for i in range(n - FILES_AT_EACH_END, n)]
    middle = lines[FILES_AT_EACH_END:-FILES_AT_EACH_END]
    assert middle == [f"… {1_000 - FILES_AT_EACH_END:,} more files",
                      "drop/f1000.csv  (1,100 bytes)  records from 10,001",
                      f"… {n - FILES_AT_EACH_END - 1_001:,} more files"]
    # every file is either shown or counted in a gap
    counted = sum(int(x.split()[1].replace(",", "")) for x in lines if x.startswith("… "))
    assert counted + sum(not x.startswith("… ") for x in lines) == n


def test_a_large_drop_read_whole_or_not_begun_has_one_gap():
    for read in (30, 0):       # done: the last file began last; just begun: the first did
        lines = file_lines(_record(30, read=read))
        assert sum(x.startswith("… ") for x in lines) == 1
        assert f"… {30 - 2 * FILES_AT_EACH_END:,} more files" in lines
        assert len(lines) == 2 * FILES_AT_EACH_END + 1


def test_every_lists_each_file():
    lines = file_lines(_record(40, read=20), every=True)
    assert len(lines) == 40 and not any(x.startswith("… ") for x in lines)


def test_a_job_of_one_file_has_no_lines():
    assert file_lines({"source_fingerprint": {"size": 10}}) == []
    assert file_lines({"source_fingerprint": None}) == []



def test_an_events_long_value_is_cut_with_its_length():
    values = list(range(2_000))
    text = event_detail("note", {"values": values, "short": "yes", "none": None})
    assert text.startswith("values=[0, 1, 2, 3") and text.endswith(", short=yes")
    assert f"… ({len(str(values)):,} characters, 2,000 items; show --json has it whole)" in text


def test_a_dask_jobs_executor_event_says_its_ranges_not_its_split():
    whole = [[i, 0, None] for i in range(2_000)]
    assert event_detail("executor", {"executor": "dask", "workers": 2, "parts": 2_000,
                                     "split": whole}) == "executor=dask, workers=2, parts=2000"
    ranged = whole[:3] + [[3, 0, 1 << 25], [3, 1 << 25, None]]
    assert event_detail("executor", {"executor": "dask", "parts": 5, "split": ranged}) \
        == "executor=dask, parts=5, split=1 file in byte ranges"


def test_a_workers_event_says_each_workers_part_rate_and_memory():
    workers = [{"worker": "tcp://127.0.0.1:1", "pid": 1, "part": 7, "records": 250_000,
                "rows_per_s": 389_980.4, "rss_mb": 251.4},
               {"worker": "tcp://127.0.0.1:2", "pid": 2, "part": 6, "records": 1_200,
                "rows_per_s": 0.0, "rss_mb": 238.0}]
    assert event_detail("workers", {"workers": workers}) == (
        "2 workers: p7 250,000 records 389,980 rows/s 251 MB; p6 1,200 records 0 rows/s 238 MB")
