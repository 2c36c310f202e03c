"""Issue 17: a failed atomic job published nothing, and its summary says so: rows_loaded
is what the target holds (0); the rows waiting in staging are rows_staged."""

from __future__ import annotations

from .faultkit import TABLE, Lab, count_rows, digest, stage_tables, tables


def test_a_failed_atomic_job_reports_nothing_loaded_and_its_staged_rows(orders_csv, tmp_path):
    lab = Lab(tmp_path, orders_csv, mode="atomic")
    # fails once the first batches are staged: the sample file rejects ~5% of its rows
    text = lab.pipeline.read_text(encoding="utf-8")
    lab.pipeline.write_text(text.replace('name = "orders"\n', 'name = "orders"\n'
                                         'max_reject_rate = 0.001\n', 1), encoding="utf-8")
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json")
    assert res.returncode == 1, str(res)
    failed = res.last_json()
    assert failed["status"] == "failed", failed
    assert TABLE not in tables(lab.dest) or digest(lab.dest).rows == 0
    assert failed["rows_loaded"] == 0, failed
    [stage] = stage_tables(lab.dest)
    assert "max_reject_rate" in failed["error"], failed
    assert failed["rows_staged"] == count_rows(lab.dest, stage) > 0, failed
    assert failed["rows_read"] == failed["rows_staged"] + failed["rows_rejected"]
    text = lab.cli("run", lab.pipeline, "--no-ui")
    assert text.returncode == 1
    assert "rows loaded               0" in text.stdout and "rows staged" in text.stdout, text.stdout
