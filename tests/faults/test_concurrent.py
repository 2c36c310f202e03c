"""Two jobs load different files into the same table at the same time; rolling one back
leaves exactly the other's rows (its digest equals a solo run of its file)."""

from __future__ import annotations

import json

import pytest

from .faultkit import (TABLE, Lab, assert_conservation, digest, ledger, stage_tables,
                       stamp_epoch, user_tables, TIMEOUT)


@pytest.fixture(scope="module")
def solo_b(b_csv, tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("solo-b"), b_csv)
    summary = lab.run()
    return {"summary": summary, "digest": digest(lab.dest),
            "rejects": lab.store_rejects(summary["job_id"])}


@pytest.mark.parametrize("rolled_back", ["b", "a"])
def test_concurrent_jobs_same_table_then_one_rolled_back(rolled_back, reference, solo_b,
                                                        orders_csv, b_csv, tmp_path):
    lab = Lab(tmp_path, orders_csv)
    # Small pieces, so each job commits for a second or more: at full size they take a
    # few tenths of a second, and one could finish before the other has begun.
    lab.env = {"PIPELINE_CHUNK_SIZE": "500", "PIPELINE_BATCH_SIZE_MIN": "500",
               "PIPELINE_BATCH_SIZE_MAX": "500"}
    procs = {"a": lab.spawn("run", lab.pipeline, "--no-ui", "--json"),
             "b": lab.spawn("run", lab.pipeline, "--no-ui", "--json", "--source", b_csv)}
    summaries = {}
    for name, proc in procs.items():
        assert proc.wait(timeout=TIMEOUT) == 0, proc.err_path.read_text()
        summaries[name] = json.loads(proc.out_path.read_text().strip().splitlines()[-1])
        assert_conservation(summaries[name])
    ids = {k: s["job_id"] for k, s in summaries.items()}
    solo = {"a": {"summary": reference.summary, "digest": reference.digest,
                  "rejects": reference.rejects}, "b": solo_b}

    # they really ran at the same time: each committed batches while the other did
    spans = {}
    for k, job in ids.items():
        stamps = [stamp_epoch(r[0]) for r in lab.store_query(
            "SELECT processed_at FROM pipeline_batches WHERE job_id = ?", (job,))]
        spans[k] = (min(stamps), max(stamps))
    assert spans["a"][0] < spans["b"][1] and spans["b"][0] < spans["a"][1], spans

    for k, job in ids.items():
        for key in ("rows_read", "rows_loaded", "rows_rejected"):
            assert summaries[k][key] == solo[k]["summary"][key], (k, key)
        assert digest(lab.dest, where=f"WHERE _etl_job_id = '{job}'") == solo[k]["digest"]
        assert lab.store_rejects(job) == solo[k]["rejects"]
    assert digest(lab.dest).rows == sum(s["rows_loaded"] for s in summaries.values())

    kept = "a" if rolled_back == "b" else "b"
    kept_ledger = ledger(lab.dest, ids[kept])
    out = lab.rollback(ids[rolled_back]).last_json()
    assert out["status"] == "rolled_back"
    assert out["rows"] == summaries[rolled_back]["rows_loaded"]
    assert digest(lab.dest) == solo[kept]["digest"]
    assert ledger(lab.dest, ids[kept]) == kept_ledger
    assert ledger(lab.dest, ids[rolled_back]) == []
    assert user_tables(lab.dest) == [TABLE] and not stage_tables(lab.dest)
