"""cleanup removes what failed and interrupted jobs left behind (staging tables,
workspaces) and never touches the rows of a succeeded job (invariant 4)."""

from __future__ import annotations


from .faultkit import (TABLE, Lab, digest, exact_state, ledger, run_and_kill, stage_tables,
                       user_tables)


def test_cleanup_drops_staging_and_workspaces_of_failed_and_interrupted_jobs(
        orders_csv, small_csv, tmp_path):
    lab = Lab(tmp_path, orders_csv, mode="atomic")
    ok = lab.run(lab.write_pipeline("ok.toml", small_csv, mode="append"))
    failing = lab.write_pipeline("failing.toml", orders_csv, mode="atomic", on_error="fail")
    failed = lab.run(failing, expect=1)
    assert failed["status"] == "failed", failed
    killed = run_and_kill(lab, batches=5)
    assert lab.job(failed["job_id"])["status"] == "failed"

    stages = {t.split("_")[3]: t for t in stage_tables(lab.dest)}   # _etl_stage_<job>_<table>
    assert set(stages) == {failed["job_id"], killed}, stages
    assert digest(lab.dest, table=stages[killed]).rows > 0
    workspaces = lab.state.parent / "jobs"
    for job in (failed["job_id"], killed):
        assert (workspaces / job).is_dir()
    target = exact_state(lab.dest)[TABLE]
    ok_ledger = ledger(lab.dest, ok["job_id"])

    # default retention (PIPELINE_ROLLBACK_RETENTION_HOURS): too young to be cleaned up
    res = lab.cli("cleanup", "--dry-run", "--json")
    assert res.returncode == 0, str(res)
    assert not [a for a in res.json_lines() if a["job_id"] in stages], res.stdout

    res = lab.cli("cleanup", "--older-than", "0", "--dry-run", "--json")
    assert res.returncode == 0, str(res)
    # a failed atomic job is rolled back: its staging table goes (the target never saw it)
    listed = {(a["job_id"], t) for a in res.json_lines() if a["action"] == "roll back"
              for t in a["tables"]}
    assert listed == {(j, t) for j, t in stages.items()}, res.stdout
    assert set(stage_tables(lab.dest)) == set(stages.values()), "a dry run dropped something"
    assert all((workspaces / j).is_dir() for j in stages)

    res = lab.cli("cleanup", "--older-than", "0", "--json")
    assert res.returncode == 0, str(res)
    assert not stage_tables(lab.dest)
    assert not any((workspaces / j).exists() for j in stages)
    assert exact_state(lab.dest)[TABLE] == target, "cleanup touched a succeeded job's rows"
    assert ledger(lab.dest, ok["job_id"]) == ok_ledger
    assert user_tables(lab.dest) == [TABLE]
    assert digest(lab.dest).rows == ok["rows_loaded"]


def test_resume_after_cleanup_never_loses_rows(reference, orders_csv, tmp_path):
    lab = Lab(tmp_path, orders_csv, mode="atomic")
    job = run_and_kill(lab, batches=6)
    res = lab.cli("cleanup", "--older-than", "0", "--json")
    assert res.returncode == 0, str(res)
    res = lab.cli("resume", job, "--json")
    if res.returncode != 0:          # refusing is fine, if nothing was published
        assert TABLE not in user_tables(lab.dest), "refused, but something was published"
        return
    summary = res.last_json()
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert summary[key] == reference.summary[key], (key, summary[key])
    assert digest(lab.dest) == reference.digest
