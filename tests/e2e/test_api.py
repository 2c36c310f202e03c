"""The library facade (etlconsole.api, ADR 0023): what the CLI prints is the records' own
JSON and text, so a program using the library and an operator at the CLI see the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etlconsole import api
from etlconsole.config import Settings
from etlconsole.records import JobStatus
from etlconsole.sample import SAMPLE_PIPELINE_TOML, write_orders_csv
from etlconsole.store import StateStore

from .helpers import Cli, assert_user_error


@pytest.fixture
def ran(cli: Cli, tmp_path: Path):
    """One sample job (1,000 rows, some rejected), run through the CLI."""
    write_orders_csv(tmp_path / "orders.csv", 1_000, seed=11)
    (tmp_path / "pipeline.toml").write_text(SAMPLE_PIPELINE_TOML, encoding="utf-8")
    res = cli("run", "pipeline.toml", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    store = StateStore(cli.state, readonly=True)
    yield cli, res.last_json()["job_id"], store
    store.close()


def test_cli_json_and_text_are_the_records(ran, tmp_path):
    cli, job, store = ran
    assert cli("show", job, "--json").last_json() == json.loads(
        json.dumps(api.show(store, job).to_json(), default=str))
    text = cli("show", job).stdout_lines
    assert text == api.show(store, job).lines()
    assert text[0].startswith(f"job {job}  succeeded  pipeline orders")
    jobs = cli("jobs").stdout_lines
    assert jobs[1] == api.jobs(store)[0].list_line() and jobs[1].startswith(job)
    lines = cli("rejects", job, "--json").json_lines()
    rejects = list(api.rejects(store, job))
    assert lines == [r.to_json() for r in rejects] and 0 < len(rejects) < 1_000
    assert cli("rejects", job).stdout_lines == [r.line() for r in rejects]
    _, batches = api.batches(store, job)
    assert cli("batches", job, "--json").json_lines() == [b.to_json() for b in batches]
    assert cli("batches", job).stdout_lines[1:] == [b.line() for b in batches]


def test_rollback_dry_run_is_one_description(ran):
    cli, job, store = ran
    writer = StateStore(cli.state)
    try:
        preview = api.rollback(writer, job, Settings(state_db=str(cli.state)), dry_run=True)
    finally:
        writer.close()
    assert preview.dry_run and preview.rows > 0 and preview.status is None
    res = cli("rollback", job, "--dry-run")
    assert res.returncode == 0, str(res)
    assert res.stdout_lines == preview.lines()
    assert res.stdout_lines[0] == f"rollback of job {job}: would remove {preview.rows:,} rows"
    assert api.job(store, job).status is JobStatus.SUCCEEDED     # a dry run changes nothing


def test_replay_and_checkpoint_are_exclusive_before_anything_happens(ran):
    cli, job, store = ran
    res = cli("rollback", job, "--replay", "1", "--to", "1", "--yes")
    assert_user_error(res, "--replay and --to are exclusive")
    assert api.job(store, job).status is JobStatus.SUCCEEDED


def test_a_run_through_the_library_gives_a_typed_summary(tmp_path):
    write_orders_csv(tmp_path / "orders.csv", 500, seed=2)
    (tmp_path / "pipeline.toml").write_text(SAMPLE_PIPELINE_TOML, encoding="utf-8")
    settings = Settings(state_db=str(tmp_path / "state.db"))
    summary = api.run(tmp_path / "pipeline.toml", settings)
    assert summary.status is JobStatus.SUCCEEDED and summary.exit_code == 0
    data = summary.to_json()
    assert data["rows_read"] == 500 == data["rows_loaded"] + data["rows_rejected"]
    assert summary.lines()[0].startswith(f"job {summary.job_id} succeeded in ")
