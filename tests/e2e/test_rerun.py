"""`checkpoint = true` and `rerun JOB --from PHASE`: the phases after the checkpoint run again
with the pipeline file as it is now, without reading the source, replacing the old load."""

from __future__ import annotations

import json
import sqlite3

from etlconsole.sample import SAMPLE_PIPELINE_TOML, write_orders_csv

from .helpers import assert_user_error


def _pipeline(tmp_path, factor: int) -> None:
    text = SAMPLE_PIPELINE_TOML.replace('type = "validate"', 'type = "validate"\ncheckpoint = true')
    text = text.replace('round(quantity * unit_price, 2)', f'round(quantity * unit_price * {factor}, 2)')
    (tmp_path / "pipeline.toml").write_text(text)


def _totals(db):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*), round(sum(total), 2), count(DISTINCT _etl_job_id) "
                           "FROM orders").fetchone()
    finally:
        con.close()


def test_rerun_from_a_checkpointed_phase_replaces_the_load(cli, tmp_path):
    manifest = write_orders_csv(tmp_path / "orders.csv", 6_000, seed=5)
    _pipeline(tmp_path, 1)
    first = cli("run", "pipeline.toml", "--no-ui", "--json").last_json()
    n, total, _ = _totals(tmp_path / "warehouse.db")
    assert n == manifest.expected_loaded
    # The source disappears: rerun must not need it.
    (tmp_path / "orders.csv").rename(tmp_path / "gone.csv")
    _pipeline(tmp_path, 3)                       # a fixed derivation
    second = cli("rerun", first["job_id"], "--from", "validate", "--no-ui", "--json").last_json()
    assert second["status"] == "succeeded"
    assert second["rows_read"] == manifest.rows
    assert second["rows_loaded"] == manifest.expected_loaded
    assert second["rows_rejected"] == manifest.expected_rejected   # carried from phase <= 2
    n2, total2, jobs = _totals(tmp_path / "warehouse.db")
    assert (n2, jobs) == (n, 1)
    assert abs(total2 - 3 * total) < 1.0
    states = {j["id"]: j["status"] for j in map(json.loads, cli("jobs", "--json").stdout.splitlines())}
    assert states[first["job_id"]] == "rolled_back" and states[second["job_id"]] == "succeeded"
    rejects = cli("rejects", second["job_id"], "--json").stdout.splitlines()
    assert len(rejects) == manifest.expected_rejected


def test_rerun_refuses_a_phase_without_checkpoint(cli, tmp_path):
    write_orders_csv(tmp_path / "orders.csv", 500, seed=5)
    _pipeline(tmp_path, 1)
    job = cli("run", "pipeline.toml", "--no-ui", "--json").last_json()
    assert_user_error(cli("rerun", job["job_id"], "--from", "transform"),
                      "no checkpoint of phase 'transform'")
