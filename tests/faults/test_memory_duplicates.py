"""Issue 17: memory stays within PIPELINE_MAX_MEMORY_MB when most rows are rejected. A
file whose ``unique`` key repeats 9 times in 10 (a 60K-row file concatenated 10 times)
used to pile every reject record up until enough good rows came for a batch — the whole
rest of the file — and failed with "memory budget exceeded". Now a batch is also full at
a bounded number of rejects, and rejects stay in Arrow until a batch takes them."""

from __future__ import annotations

from .faultkit import Lab, digest, write_orders

BASE, COPIES, BUDGET = 60_000, 10, 256


def test_ninety_percent_duplicate_keys_hold_the_memory_budget(tmp_path):
    base = tmp_path / "base.csv"
    manifest = write_orders(base, BASE)
    head, body = base.read_bytes().split(b"\n", 1)
    source = tmp_path / "repeated.csv"
    source.write_bytes(head + b"\n" + body * COPIES)
    ref = Lab(tmp_path / "ref", base)
    ref.run()
    lab = Lab(tmp_path / "lab", source)
    lab.env = {"PIPELINE_MAX_MEMORY_MB": str(BUDGET), "PIPELINE_BATCH_SIZE_MIN": "1000",
               "PIPELINE_BATCH_SIZE_MAX": "50000", "PIPELINE_CHUNK_SIZE": "32768"}
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json", timeout=300)
    assert res.returncode == 0, str(res)
    summary = res.last_json()
    assert summary["status"] == "succeeded", summary
    assert summary["rows_read"] == BASE * COPIES
    assert summary["rows_loaded"] == manifest.expected_loaded
    assert summary["rows_rejected"] == BASE * COPIES - manifest.expected_loaded
    assert summary["peak_rss_mb"] <= BUDGET + 10, summary     # VmHWM, the kernel's peak
    assert digest(lab.dest) == digest(ref.dest)
    # every duplicate is a reject with its reason, in the store
    [(n,)] = lab.store_query("SELECT count(*) FROM pipeline_rejects WHERE job_id = ? AND "
                             "rule = 'unique'", (summary["job_id"],))
    assert n >= (COPIES - 1) * manifest.expected_loaded
