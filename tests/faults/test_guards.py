"""What resume and rollback refuse or skip: a succeeded job, a running job."""

from __future__ import annotations

import json

from .faultkit import (Lab, TIMEOUT, assert_conservation, digest, file_sha, ledger,
                       wait_for)


def test_resume_of_a_succeeded_job_does_nothing(small_csv, tmp_path):
    lab = Lab(tmp_path, small_csv)
    job = lab.run()["job_id"]
    before, record = file_sha(lab.dest), lab.store_job(job)
    res = lab.cli("resume", job)
    assert res.returncode == 0, str(res)
    assert "nothing" in res.stdout.lower(), res.stdout
    res = lab.cli("resume", "last", "--json")
    assert res.returncode == 0, str(res)
    out = res.last_json()
    assert out["nothing_to_do"] is True and out["status"] == "succeeded", out
    assert file_sha(lab.dest) == before
    after = lab.store_job(job)
    for key in ("status", "rows_read", "rows_loaded", "rows_rejected", "finished_at", "resumes"):
        assert after[key] == record[key], key


SLOW = {"PIPELINE_BATCH_SIZE_MAX": "150", "PIPELINE_BATCH_SIZE_MIN": "100",
        "PIPELINE_CHUNK_SIZE": "150"}


def test_rollback_of_a_running_job_is_refused(reference, orders_csv, tmp_path):
    lab = Lab(tmp_path, orders_csv)
    proc = lab.spawn("run", lab.pipeline, "--no-ui", "--json", env=SLOW)

    def running():
        assert proc.poll() is None, "the job ended before it showed as running"
        jobs = lab.jobs() if lab.state.exists() else []
        return jobs and jobs[0]["status"] == "running" and jobs[0]
    job = wait_for(running, timeout=TIMEOUT, every=0.05)["id"]

    res = lab.cli("rollback", job, "--yes")
    refused_while_running = proc.poll() is None
    assert res.returncode == 2, str(res)
    assert len(res.stderr_lines) == 1 and "running" in res.stderr_lines[0], res.stderr
    assert "Traceback" not in res.stderr
    res = lab.cli("resume", job)
    assert res.returncode == 2 and "running" in res.stderr, str(res)
    assert refused_while_running and proc.poll() is None, \
        "inconclusive: the job finished before the refusal (make it slower)"

    assert proc.wait(timeout=TIMEOUT) == 0, proc.err_path.read_text()
    summary = json.loads(proc.out_path.read_text().strip().splitlines()[-1])
    assert summary["status"] == "succeeded"
    assert_conservation(summary)
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert summary[key] == reference.summary[key]
    assert digest(lab.dest) == reference.digest
    assert sum(e[4] for e in ledger(lab.dest, job)) == summary["rows_loaded"]
    assert lab.store_rejects(job) == reference.rejects
