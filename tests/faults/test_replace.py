"""replace mode: the old table stays untouched until the swap; rollback restores it exactly."""

from __future__ import annotations

from .faultkit import (TABLE, Lab, assert_conservation, digest, exact_state, ledger,
                       make_hand_table, run_and_kill, stage_tables, tables, user_tables)


def test_replace_killed_then_resumed_then_rolled_back(reference, orders_csv, tmp_path):
    lab = Lab(tmp_path, orders_csv, mode="replace")
    make_hand_table(lab.dest, rows=80, extra_column=True)   # old content, another schema
    old = exact_state(lab.dest)

    job = run_and_kill(lab, batches=6)
    assert exact_state(lab.dest)[TABLE] == old[TABLE], "a killed replace job touched the table"
    assert len(stage_tables(lab.dest)) == 1

    summary = lab.resume(job)
    assert summary["status"] == "succeeded"
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert summary[key] == reference.summary[key]
    assert digest(lab.dest) == reference.digest
    assert not stage_tables(lab.dest)
    assert [t for t in tables(lab.dest) if t.startswith("_etl_replaced_")]

    out = lab.rollback(job).last_json()
    assert out["status"] == "rolled_back"
    assert exact_state(lab.dest) == old
    assert ledger(lab.dest, job) == []


def test_replace_then_rollback_restores_a_table_loaded_before(reference, orders_csv, small_csv,
                                                             tmp_path):
    lab = Lab(tmp_path, orders_csv, mode="replace")
    first = lab.run(lab.write_pipeline("first.toml", small_csv, mode="append"))
    old = exact_state(lab.dest)
    old_ledger = ledger(lab.dest, first["job_id"])

    summary = lab.run()
    assert_conservation(summary)
    assert digest(lab.dest) == reference.digest      # the old rows are gone from the table
    out = lab.rollback(summary["job_id"]).last_json()
    assert out["status"] == "rolled_back"
    assert exact_state(lab.dest) == old
    assert ledger(lab.dest, first["job_id"]) == old_ledger
    # the first job is still exactly reversible: it created the table, so the table goes
    lab.rollback(first["job_id"])
    assert user_tables(lab.dest) == []
