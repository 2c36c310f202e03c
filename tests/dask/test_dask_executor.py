"""The Dask executor through the real CLI (against the module's LocalCluster, --scheduler):
same rows and same rejects as the local executor on the same drop, refusals before anything
is written."""

from __future__ import annotations

import json
from pathlib import Path

from daskkit import (FIRST_INVALID, SMALL_BATCHES, TWICE_EARLY, TWICE_VALID, DropLab, parquet_ids,
                     unique_rejects_by_file)
from etlconsole.engine.executors.parts import part_of
from faults.faultkit import Lab


def _scheduler_actions(cluster) -> list[str]:
    return [e.get("action") for _, e in cluster.get_events("all") if isinstance(e, dict)]


def test_a_drop_loads_the_same_rows_and_rejects_as_local(tmp_path, drop, cluster):
    local = DropLab(tmp_path / "local", drop)
    expected = local.run_with("--executor", "local")
    lab = DropLab(tmp_path / "dask", drop)
    before = len(_scheduler_actions(cluster))
    got = lab.run_with("--executor", "dask", "--scheduler", cluster.scheduler.address)
    # the unique rule's duplicates reach the load tasks as values: nothing is scattered or
    # replicated (Dask's replicate hangs for ever when a worker dies during it, ADR 0028)
    assert not {"scatter", "replicate"} & set(_scheduler_actions(cluster)[before:])
    assert got["status"] == "succeeded" and got["executor"] == "dask" and got["parts"] == 6
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert got[key] == expected[key], key
    assert lab.digest() == local.digest()
    assert lab.rejects_of(got["job_id"]) == local.rejects_of(expected["job_id"])
    # as the operator sees them: each reject's file and record within it
    told = [_by_file(x.cli("rejects", j, "--json").json_lines())
            for x, j in ((lab, got["job_id"]), (local, expected["job_id"]))]
    assert told[0] == told[1] and {f for f, *_ in told[0]} >= {"orders_01.csv.gz", "orders_05.csv"}
    # the crafted keys: file 3 loses its copy of file 0's key; file 1's is invalid, so
    # file 4's is the first valid one and loads, file 5's is a duplicate of it
    by_file = unique_rejects_by_file(lab, got["job_id"])
    assert 2_001 in by_file["orders_03.csv"] and 2_001 in by_file["orders_05.csv"]
    assert 2_001 not in by_file.get("orders_04.csv.gz", [])
    # file 2's copy of file 0's key: both in the first half of the drop, whose loads start
    # on the first half's merge of keys (the driver's _prepass)
    assert 2_001 in by_file["orders_02.csv"] and 2_002 not in by_file.get("orders_00.csv", [])
    assert len(parquet_ids(lab.out, TWICE_VALID)) == 1 == len(parquet_ids(lab.out, TWICE_EARLY))
    assert [r["email"] for r in parquet_ids(lab.out, FIRST_INVALID)] == ["x@example.org"]
    # one task per file: each file's batches in its own range, recorded as parts
    numbers = [n for (n,) in lab.store_query("SELECT batch_number FROM pipeline_batches "
                                             "WHERE job_id = ?", (got["job_id"],))]
    assert sorted({part_of(n) for n in numbers}) == list(range(6))
    parts = [json.loads(d) for (d,) in lab.store_query(
        "SELECT checkpoint_data FROM pipeline_checkpoints WHERE job_id = ? AND phase = 'part' "
        "ORDER BY id", (got["job_id"],))]
    assert [p["part"] for p in parts] == list(range(6))
    assert sum(p["records"] for p in parts) == got["rows_read"]
    # the phase table adds up as the local run's: the driver sums the rejects by phase that
    # each part counted as it packed them (not a count of the store's rejects at the end)
    table = lab.phase_table(got["job_id"])
    assert table == local.phase_table(expected["job_id"])
    assert sum(p["rejects_by_label"].get(label, 0) for p in parts for label, *_ in table) \
        == got["rows_rejected"] == sum(rejected for *_, rejected in table)



def _by_file(rejects_json: list[dict]) -> set[tuple]:
    return {(Path(r["file"]).name, r["file_record"], r["rule"], r["column"]) for r in rejects_json}


def test_the_executor_key_of_the_pipeline_file_chooses_dask(tmp_path, drop, cluster):
    lab = DropLab(tmp_path / "lab", drop)
    text = lab.pipeline.read_text()
    lab.pipeline.write_text(text.replace('name = "orders"\n', 'name = "orders"\nexecutor = "dask"\n', 1))
    got = lab.run_with("--scheduler", cluster.scheduler.address)
    assert got["executor"] == "dask" and got["status"] == "succeeded"


def test_an_unknown_executor_in_the_pipeline_file_is_refused(tmp_path, drop):
    lab = DropLab(tmp_path / "lab", drop)
    text = lab.pipeline.read_text()
    lab.pipeline.write_text(text.replace('name = "orders"\n', 'name = "orders"\nexecutor = "spark"\n', 1))
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json")
    assert res.returncode == 2, str(res)
    assert len(res.stderr_lines) == 1 and "executor" in res.stderr and "local, dask" in res.stderr
    assert not lab.out.exists()


def test_sqlite_is_refused_for_the_dask_executor_before_anything_is_written(tmp_path, drop):
    lab = Lab(tmp_path / "lab", drop / "orders_*.csv*")     # the sample's SQLite load
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json", "--executor", "dask", "--workers", "2")
    assert res.returncode == 2, str(res)
    assert len(res.stderr_lines) == 1, str(res)
    assert "one writer" in res.stderr and "PostgreSQL or a Parquet/CSV folder" in res.stderr
    assert "Traceback" not in res.stderr
    assert not lab.dest.exists()
    assert lab.store_jobs() == []


def test_without_dask_installed_the_job_is_refused_with_the_extra_to_install(tmp_path, drop):
    # a `distributed` that cannot be imported, ahead of the real one on the path
    fake = tmp_path / "nodask"
    (fake / "distributed").mkdir(parents=True)
    (fake / "distributed" / "__init__.py").write_text("raise ImportError('no dask here')\n")
    lab = DropLab(tmp_path / "lab", drop)
    from faults.faultkit import SRC
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json", "--executor", "dask",
                  env={"PYTHONPATH": f"{fake}:{SRC}"})
    assert res.returncode == 2, str(res)
    assert res.stderr_lines == ["error: --executor dask needs dask.distributed, which is not "
                                "installed: pip install 'etlconsole[dask]'"], str(res)
    assert not lab.out.exists() and lab.store_jobs() == []
    # the local executor does not need it
    assert lab.run_with(env={"PYTHONPATH": f"{fake}:{SRC}"})["status"] == "succeeded"


def test_a_dask_job_is_not_resumed_locally(tmp_path, drop, cluster):
    lab = DropLab(tmp_path / "lab", drop)
    got = lab.run_with("--executor", "dask", "--scheduler", cluster.scheduler.address)
    res = lab.cli("resume", got["job_id"], "--json", "--executor", "local")
    assert res.returncode == 2 and "resume it with --executor dask" in res.stderr, str(res)




def test_the_driver_records_each_workers_progress_while_parts_run(tmp_path, big_drop, cluster):
    """Workers report through Dask (Pub/Sub); the driver writes the job's metrics and a
    per-worker sample (part, rows/s, memory) while the parts run, not only as they end."""
    lab = DropLab(tmp_path / "lab", big_drop)
    # Batches of 50 rows: the parts run for several of the watcher's 1 s samples, however
    # fast the machine (with 200-row batches they could end within the first second).
    lab.env.update({**SMALL_BATCHES, "PIPELINE_BATCH_SIZE_MIN": "50",
                    "PIPELINE_BATCH_SIZE_MAX": "50", "PIPELINE_CHUNK_SIZE": "50",
                    "PIPELINE_STREAM_HIGH_WATER_MARK": "16384"})     # bytes read a block at a time
    got = lab.run_with("--executor", "dask", "--scheduler", cluster.scheduler.address)
    workers = [json.loads(d)["workers"] for (d,) in lab.store_query(
        "SELECT details FROM pipeline_events WHERE job_id = ? AND event = 'workers'", (got["job_id"],))]
    assert workers, "no per-worker sample recorded"
    seen = {w["worker"] for sample in workers for w in sample}
    assert seen <= set(cluster.scheduler_info()["workers"]) and seen
    assert all(w["rss_mb"] > 0 and 0 <= w["part"] < 6 for sample in workers for w in sample)
    assert any(w["rows_per_s"] > 0 for sample in workers for w in sample)
    # the table as the job ends: each worker's part with all its records (each part's last
    # figures are reported whatever the reports' pace)
    records = {json.loads(d)["part"]: json.loads(d)["records"] for (d,) in lab.store_query(
        "SELECT checkpoint_data FROM pipeline_checkpoints WHERE job_id = ? AND phase = 'part'",
        (got["job_id"],))}
    assert [w["records"] for w in workers[-1]] == [records[w["part"]] for w in workers[-1]]
    # metrics while the parts run (rows read before the end), growing, ending at the total
    rows = [r for (r,) in lab.store_query("SELECT rows_read FROM pipeline_metrics WHERE job_id = ? "
                                          "ORDER BY id", (got["job_id"],))]
    assert any(0 < r < got["rows_read"] for r in rows), rows
    assert rows == sorted(rows) and rows[-1] == got["rows_read"]
    # the figures the console draws: the segment's own (a fresh job: its one segment holds
    # every row), and rows/s now from the workers' reports — never 0 while they report,
    # the last sample's included (taken when every part is recorded)
    samples = lab.store_query("SELECT rows_read, rows_per_s, elapsed_s, segment, segment_rows, "
                              "segment_elapsed_s FROM pipeline_metrics WHERE job_id = ? ORDER BY id",
                              (got["job_id"],))
    assert all(seg == 1 and seg_rows == r and seg_s <= e for r, _, e, seg, seg_rows, seg_s in samples)
    assert all(rate > 0 for _, rate, *_ in samples[1:]) and samples[-1][1] > 0, samples
    # the progress bar's bytes move as the workers read, not a part at a time: some sample
    # counts more bytes than the parts recorded by then hold
    parts = lab.store_query("SELECT created_at, checkpoint_data FROM pipeline_checkpoints "
                            "WHERE job_id = ? AND phase = 'part'", (got["job_id"],))
    sizes = lab.store_query("SELECT at, bytes_read FROM pipeline_metrics WHERE job_id = ? ORDER BY id",
                            (got["job_id"],))
    recorded = [sum(json.loads(d)["bytes_read"] for at_part, d in parts if at_part <= at)
                for at, _ in sizes]
    assert [b for _, b in sizes] == sorted(b for _, b in sizes)
    assert sizes[-1][1] == sum(json.loads(d)["bytes_read"] for _, d in parts)
    assert any(b > r for (_, b), r in zip(sizes, recorded, strict=True)), (sizes, recorded)
    # the job's peak memory is its workers' too (it was the driver's alone, ~120 MB against
    # workers' ~230 MB): at least every RSS a worker reported while it ran the job's parts,
    # each part's peak being its worker's while it ran (parts._PartsInFlight)
    [(peak, phase_stats)] = lab.store_query("SELECT peak_rss_mb, phase_stats FROM import_jobs "
                                            "WHERE id = ?", (got["job_id"],))
    peaks = [json.loads(d)["peak_rss_mb"] for _, d in parts]
    assert peak == got["peak_rss_mb"] >= max(peaks) >= max(w["rss_mb"] for s in workers for w in s)
    # the load's line is timed on writing the batches, as a local job's (it said 0.00 s)
    load = json.loads(phase_stats)[-1]
    assert load["label"].endswith("(load)") and load["seconds"] > 0, load


def test_executor_options_on_a_terminal_without_no_ui_are_refused(tmp_path, drop):
    """On a terminal `run` opens the console, which runs the pipeline file's executor: the
    options would be dropped, so they are refused (one line, exit 2) before anything."""
    import os
    import pty
    import subprocess
    lab = DropLab(tmp_path / "lab", drop)
    master, slave = pty.openpty()
    try:
        from faults.faultkit import make_env
        proc = subprocess.run(lab.argv("run", lab.pipeline, "--executor", "dask"), cwd=lab.folder,
                              env=make_env(), stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: --executor, --workers, --scheduler: run it with --no-ui "
                                   "(the console runs the pipeline file's executor)")
    assert not lab.out.exists() and lab.store_jobs() == []
