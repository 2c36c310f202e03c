"""Typed records (etlconsole.records): the status enum keeps the stored text, each record
gives the JSON and the text the CLI printed from dicts before, and there is one rejects
CSV writer."""

import csv
import json

from etlconsole.records import (ACTIVE, UNFINISHED, CleanupAction, Job, JobStatus, PhaseLine,
                                Reject, RunSummary, write_rejects_csv)
from etlconsole.store import StateStore


def test_status_is_its_stored_text():
    assert JobStatus.ROLLED_BACK == "rolled_back"
    assert json.dumps({"status": JobStatus.SUCCEEDED}) == '{"status": "succeeded"}'
    assert f"{JobStatus.FAILED:<8}|" == "failed  |"
    assert "running" in ACTIVE and "pending" in ACTIVE and "failed" not in ACTIVE
    assert set(UNFINISHED) == {"failed", "interrupted"}
    assert [s.exit_code for s in JobStatus] == [1, 1, 0, 1, 1, 1]


def test_a_status_written_as_the_enum_is_read_back_as_text(tmp_path):
    store = StateStore(tmp_path / "s.db")
    store.create_job("j1", pipeline_name="p")
    store.update_job("j1", status=JobStatus.INTERRUPTED)
    row = store.job("j1")
    assert type(row["status"]) is str and row["status"] == "interrupted"
    assert Job.from_row(row).status is JobStatus.INTERRUPTED
    store.close()


def summary(**extra):
    return {"job_id": "ab12", "status": "failed", "rows_read": 1200, "rows_loaded": 1000,
            "rows_rejected": 200, "rows_warned": 0, "elapsed_s": 1.5, "rows_per_s": 800.0,
            "peak_rss_mb": 120.4, "retries": 2, "error": "disk full",
            "destination": {"kind": "sqlite", "path": "w.db", "table": "orders"}, **extra}


def test_run_summary_lines_json_and_exit():
    s = RunSummary.from_dict(summary(rows_staged=1000))
    assert s.to_json() == summary(rows_staged=1000)
    assert s.lines() == [
        "job ab12 failed in 1.50s",
        "  rows read             1,200",
        "  rows loaded           1,000  -> w.db (table orders)",
        "  rows staged           1,000  (not published: resume to publish them)",
        "  rows rejected           200",
        "  throughput              800 rows/s, peak RSS 120 MB, retries 2"]
    assert s.exit_code == 1 and s.error_line() == "error: job ab12 failed: disk full"
    ok = RunSummary.from_dict(summary(status="succeeded", error=None))
    assert ok.exit_code == 0 and ok.error_line() is None


def test_nothing_to_resume_is_its_message():
    s = RunSummary.from_dict({"job_id": "ab12", "status": "succeeded", "nothing_to_do": True,
                              "message": "job ab12 already succeeded; nothing to resume"})
    assert s.nothing_to_do and s.lines() == ["job ab12 already succeeded; nothing to resume"]


def test_job_json_keeps_columns_it_does_not_know():
    row = {"id": "j", "status": "succeeded", "pipeline_name": "p", "created_at": "t",
           "pipeline_toml": "[source]", "a_later_column": 7}
    j = Job.from_row(row)
    assert j.to_json() == {"id": "j", "status": "succeeded", "pipeline_name": "p",
                           "created_at": "t", "a_later_column": 7}


def test_a_branch_line_shows_what_its_destination_loaded():
    p = PhaseLine.from_json({"label": "x > all > load", "branch": "all", "rows_in": 9,
                             "filtered": 1, "rejected": 1, "refused": 2, "loaded": 6})
    assert (p.label, p.rows_out, p.rejected, p.filtered, p.seconds) == ("branch all", 6, 3, 1, 0)


def test_one_rejects_csv_writer(tmp_path):
    rows = [Reject(3, "validate", "required", "id", "missing", {"id": ""}),
            Reject(None, "extract", "shape", None, "too many fields", ["a", "b"])]
    path = tmp_path / "r.csv"
    assert write_rejects_csv(rows, path) == 2
    with path.open(newline="", encoding="utf-8") as f:
        back = list(csv.reader(f))
    assert back == [["row", "phase", "rule", "column", "message", "values"],
                    ["3", "validate", "required", "id", "missing", '{"id": ""}'],
                    ["", "extract", "shape", "", "too many fields", '["a", "b"]']]
    assert rows[0].line() == "row 3: validate/required/id: missing"
    assert rows[1].resolved(2, "t").line() == \
        "row None: extract/shape: too many fields  [resolved by replay 2]"


def test_cleanup_action_json_has_only_what_the_action_has():
    assert CleanupAction("j", "remove workspace", path="/w/j").to_json() == {
        "job_id": "j", "action": "remove workspace", "path": "/w/j"}
    assert CleanupAction("j", "roll back", rows=5, tables=("t",)).to_json() == {
        "job_id": "j", "action": "roll back", "rows": 5, "tables": ["t"]}
    assert CleanupAction("j", "drop orphaned table", path="w.db", table="t").line() == \
        "drop orphaned table: job j w.db t"
