"""Honest figures (issue 12): what `show`, `jobs`, `checkpoints` and the metrics say about a
job is what happened: samples at the start and end of every run segment, every reject on
the phase table, rates and durations per segment, per-job checkpoint numbers, and the
status after rollbacks. Every command is a real CLI subprocess on a real state store."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from etlconsole.sample import SAMPLE_PIPELINE_TOML, write_orders_csv

from .helpers import SLOW_PHASE, Cli, assert_summary

SMALL = {"PIPELINE_BATCH_SIZE_MIN": "500", "PIPELINE_BATCH_SIZE_MAX": "500",
         "PIPELINE_CHUNK_SIZE": "500", "PIPELINE_CHECKPOINT_INTERVAL": "1000"}

# A phase that presses Ctrl-C on its own engine once, at the chunk holding record `at`,
# after a pause (so the stopped segment lasts a measurable time): a real operator stop
# at a known place, without timing races.
STOPPER = '''
import os, signal, time
from pathlib import Path

class Stopper:
    def __init__(self, at, flag, pause=0.3):
        self.at, self.flag, self.pause = at, Path(flag), pause
    def process(self, batch):
        rows = batch.column("_etl_row").to_pylist()
        if rows and max(rows) >= self.at and not self.flag.exists():
            self.flag.write_text("stopped")
            time.sleep(self.pause)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)          # the interrupt lands while this phase still holds the chunk
        return batch
'''


def sample_pipeline(folder: Path, rows: int, *, extra_phase: str = "") -> Path:
    manifest = write_orders_csv(folder / "orders.csv", rows)
    text = SAMPLE_PIPELINE_TOML
    if extra_phase:
        load = '[[phases]]\ntype = "load"'
        assert text.count(load) == 1
        text = text.replace(load, extra_phase.strip() + "\n\n" + load)
    path = folder / "pipeline.toml"
    path.write_text(text, encoding="utf-8")
    return path, manifest


def store_rows(state: Path, sql: str, params: tuple = ()) -> list[dict]:
    conn = sqlite3.connect(str(state))
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def metrics(state: Path, job_id: str) -> list[dict]:
    return store_rows(state, "SELECT * FROM pipeline_metrics WHERE job_id = ? ORDER BY id",
                      (job_id,))


def show(cli: Cli, job_id: str) -> dict:
    res = cli("show", job_id, "--json")
    assert res.returncode == 0, str(res)
    return res.last_json()


def assert_phase_table_adds_up(job: dict) -> None:
    """Every reject is on the phase table (extract first), and each phase hands on what
    it kept to the next."""
    stats = [p for p in job["phase_stats"] if not p.get("branch")]
    assert stats[0]["label"] == "extract", stats
    assert stats[0]["rows_in"] == job["rows_read"], (stats[0], job["rows_read"])
    assert sum(p["rejected"] for p in stats) == job["rows_rejected"], stats
    for p in stats:
        assert p["rows_in"] == p["rows_out"] + p["rejected"], p
    for a, b in zip(stats, stats[1:], strict=False):
        assert b["rows_in"] == a["rows_out"], (a, b)
    assert stats[-1]["rows_out"] == job["rows_loaded"], stats


# -- a short job -----------------------------------------------------------------------
def test_a_20_row_job_has_its_figures_sampled_at_start_and_end(cli, tmp_path):
    pipeline, _ = sample_pipeline(tmp_path, 20)
    res = cli("run", pipeline, "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert_summary(s)
    samples = metrics(cli.state, s["job_id"])
    # the job ends long before the sampler's first half-second tick
    assert len(samples) >= 2, samples
    first, last = samples[0], samples[-1]
    assert first["rows_read"] == 0 and first["segment_rows"] == 0
    assert last["rows_read"] == s["rows_read"] == 20
    assert last["segment_rows"] == 20 and last["segment"] == 1
    assert all(m["rss_mb"] > 0 for m in samples), samples
    assert last["rows_per_s"] > 0, last
    j = show(cli, s["job_id"])
    assert j["metrics"]["samples"] == len(samples) and j["metrics"]["max_rss_mb"] > 0


# -- the phase table -------------------------------------------------------------------
def test_the_phase_table_accounts_for_every_reject_extract_included(cli, tmp_path):
    pipeline, manifest = sample_pipeline(tmp_path, 2_000)
    res = cli("run", pipeline, "--no-ui", "--json", env=SMALL)
    assert res.returncode == 0, str(res)
    s = res.last_json()
    j = show(cli, s["job_id"])
    extract = [r for r in cli("rejects", s["job_id"], "--json").json_lines()
               if r["phase"] == "extract"]
    assert extract, "the sample file has ragged rows, rejected on read"
    assert j["phase_stats"][0]["rejected"] == len(extract)
    assert j["rows_rejected"] == manifest.expected_rejected
    assert_phase_table_adds_up(j)
    text = cli("show", s["job_id"]).stdout
    assert "extract" in text and "busy" in text


def test_load_time_is_measured_and_no_phase_is_busier_than_the_job(cli, tmp_path):
    pipeline, _ = sample_pipeline(tmp_path, 5_000)
    res = cli("run", pipeline, "--no-ui", "--json", env=SMALL)
    assert res.returncode == 0, str(res)
    s = res.last_json()
    j = show(cli, s["job_id"])
    load = j["phase_stats"][-1]
    assert load["label"].endswith("(load)"), load
    # writing the batches is the load's work: its busy time covers every batch's write
    writes = sum(b["duration_ms"] for b in cli("batches", s["job_id"], "--json").json_lines())
    assert writes > 0 and load["seconds"] >= 0.95 * writes / 1000, (load, writes)
    for p in j["phase_stats"]:
        assert 0 <= p["seconds"] <= j["elapsed_s"], (p, j["elapsed_s"])


# -- stopped, then resumed ---------------------------------------------------------------
@pytest.fixture
def resumed(cli, tmp_path):
    """A 6,000-row job stopped with Ctrl-C at record 3,000, then resumed."""
    (tmp_path / "stopper.py").write_text(STOPPER, encoding="utf-8")
    flag = tmp_path / "stopped.flag"
    pipeline, manifest = sample_pipeline(tmp_path, 6_000, extra_phase=(
        f'[[phases]]\ntype = "stopper:Stopper"\nat = 3000\nflag = {json.dumps(str(flag))}\n'))
    env = {**SMALL, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(tmp_path), os.environ.get("PYTHONPATH")]))}
    first = cli("run", pipeline, "--no-ui", "--json", env=env)
    assert first.returncode == 1 and first.last_json()["status"] == "interrupted", str(first)
    stopped = first.last_json()
    job_id = stopped["job_id"]
    before = cli("jobs", "--json").json_lines()[0]
    second = cli("resume", job_id, "--no-ui", "--json", env=env)
    assert second.returncode == 0, str(second)
    return {"cli": cli, "job_id": job_id, "stopped": stopped, "before": before,
            "summary": second.last_json(), "manifest": manifest}


def test_a_resumed_job_keeps_its_start_and_adds_up_its_segments(resumed):
    cli, job_id, s = resumed["cli"], resumed["job_id"], resumed["summary"]
    j = show(cli, job_id)
    assert j["status"] == "succeeded" and j["resumes"] == 1
    assert j["started_at"] == resumed["before"]["started_at"]          # the first start
    segments = j["segments"]
    assert [g["kind"] for g in segments] == ["run", "resume"]
    assert [g["status"] for g in segments] == ["interrupted", "succeeded"]
    assert segments[0]["elapsed_s"] >= 0.3                              # the stopper's pause
    assert j["elapsed_s"] == pytest.approx(sum(g["elapsed_s"] for g in segments), abs=0.01)
    assert j["elapsed_s"] > segments[1]["elapsed_s"]
    assert s["elapsed_s"] == pytest.approx(j["elapsed_s"], abs=0.01)
    assert segments[1]["rows_at_start"] == resumed["stopped"]["rows_read"] > 0
    assert "2 segments: run" in cli("show", job_id).stdout


def test_a_resumed_jobs_rates_are_those_of_its_segment(resumed):
    cli, job_id, s = resumed["cli"], resumed["job_id"], resumed["summary"]
    after = resumed["stopped"]["rows_read"]
    done = s["rows_read"] - after
    assert s["rows_per_s"] == pytest.approx(done / s["segment_elapsed_s"], rel=0.01)
    samples = [m for m in metrics(cli.state, job_id) if m["segment"] == 2]
    assert len(samples) >= 2
    # the first sample of the resume counts none of the rows the first run did
    assert samples[0]["rows_per_s"] == 0 and samples[0]["segment_rows"] == 0
    assert samples[0]["rows_read"] == after
    # ... and starts from the bytes the first run had done, not from 0 (the monitor's
    # progress bar read "0.0 / 35 MiB" at the start of a resume)
    first_run = [m for m in metrics(cli.state, job_id) if m["segment"] == 1]
    assert samples[0]["bytes_read"] > 0 and samples[0]["segment_bytes"] == 0
    assert samples[0]["bytes_read"] >= min(m["bytes_read"] for m in first_run[-1:]) // 2
    assert samples[-1]["segment_rows"] == done
    assert samples[-1]["elapsed_s"] > samples[-1]["segment_elapsed_s"]


def test_a_resumed_jobs_phase_table_adds_up(resumed):
    j = show(resumed["cli"], resumed["job_id"])
    assert j["rows_rejected"] == resumed["manifest"].expected_rejected
    assert_phase_table_adds_up(j)


def test_a_stopped_jobs_phase_table_counts_only_what_was_committed(resumed):
    # the stopped run's record, as `jobs` showed it before the resume
    assert_phase_table_adds_up(resumed["before"])


# -- checkpoints and rollbacks -----------------------------------------------------------
def test_checkpoints_are_numbered_per_job_and_rollbacks_say_what_is_true(cli, tmp_path):
    pipeline, manifest = sample_pipeline(tmp_path, 4_000)
    for _ in range(2):      # the second job's checkpoints follow the first's in the store
        res = cli("run", pipeline, "--no-ui", "--json", env=SMALL)
        assert res.returncode == 0, str(res)
    job = res.last_json()["job_id"]
    cps = cli("checkpoints", job, "--json").json_lines()
    assert [c["number"] for c in cps] == list(range(1, len(cps) + 1)) and len(cps) >= 3
    assert cps[0]["id"] > len(cps)                      # its store-wide ids are others
    listed = cli("checkpoints", job).stdout_lines[1:]      # after the header line
    assert [int(line.split()[0]) for line in listed] == [c["number"] for c in cps]

    # the old store-wide id is still understood, and reported by its number
    res = cli("rollback", job, "--to", str(cps[1]["id"]), "--dry-run", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["to_checkpoint"] == 2

    res = cli("rollback", job, "--to", "1", "--yes")
    assert res.returncode == 0, str(res)
    assert "back to checkpoint 1" in res.stdout and "job status: interrupted" in res.stdout
    j = show(cli, job)
    kept = cps[0]["checkpoint_data"]["last_row"]
    assert j["rows_read"] == kept and "rolled back to checkpoint 1" in j["error"]
    assert j["bytes_read"] == cps[0]["checkpoint_data"]["bytes_read"]
    assert [c["number"] for c in j["checkpoints"]] == [1]
    assert_phase_table_adds_up(j)

    res = cli("rollback", job, "--yes")
    assert res.returncode == 0, str(res)
    j = show(cli, job)
    assert j["status"] == "rolled_back"
    assert j["error"] is None                 # the checkpoint note is no longer true
    assert "rolled back to checkpoint" not in cli("show", job).stdout
    # the job's figures stay: what it had read, loaded and rejected
    listed = {x["id"]: x for x in cli("jobs", "--json").json_lines()}
    assert listed[job]["rows_read"] == kept > 0
    assert listed[job]["rows_loaded"] + listed[job]["rows_rejected"] == kept


def test_a_full_rollback_keeps_the_jobs_figures(cli, tmp_path):
    pipeline, manifest = sample_pipeline(tmp_path, 2_000)
    s = cli("run", pipeline, "--no-ui", "--json", env=SMALL).last_json()
    res = cli("rollback", s["job_id"], "--yes")
    assert res.returncode == 0, str(res)
    j = show(cli, s["job_id"])
    assert j["status"] == "rolled_back"
    assert (j["rows_read"], j["rows_loaded"], j["rows_rejected"]) == (
        s["rows_read"], s["rows_loaded"], s["rows_rejected"]) == (
        2_000, manifest.expected_loaded, manifest.expected_rejected)
    assert_phase_table_adds_up(j)
    line = next(x for x in cli("jobs").stdout_lines if x.startswith(s["job_id"]))
    assert "rolled_back" in line and "2,000" in line


def test_a_branched_jobs_phase_table_shows_each_branch(cli, tmp_path):
    from .test_extensible import branched
    branched(tmp_path)
    res = cli("run", "b.toml", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    j = show(cli, s["job_id"])
    assert_phase_table_adds_up(j)           # the main line, up to the branches
    lines = {p["branch"]: p for p in j["phase_stats"] if p.get("branch")}
    assert set(lines) == {"cancelled", "all"}
    assert lines["all"]["loaded"] == s["rows_loaded"] and lines["all"]["seconds"] > 0
    text = cli("show", s["job_id"])
    assert text.returncode == 0, str(text)
    assert "branch all" in text.stdout and "branch cancelled" in text.stdout


def test_show_of_a_running_job_gives_its_time_and_memory_so_far(cli, tmp_path):
    """A job still running (this test's process stands in for its engine)."""
    import psutil

    from etlconsole.store import StateStore
    cli.state.parent.mkdir(parents=True, exist_ok=True)
    store = StateStore(cli.state)
    store.create_job("0000beef", pipeline_name="live", source_path="big.csv", bytes_total=100,
                     settings={"max_memory_mb": 512})
    store.begin_segment("0000beef", "run", 0)
    store.update_job("0000beef", status="running", pid=os.getpid(),
                     pid_started=psutil.Process().create_time(),
                     heartbeat_at="9999-01-01T00:00:00+00:00")
    for rss in (150.0, 180.0, 170.0):
        store.add_metric("0000beef", {"elapsed_s": 1.0, "rows_read": 10, "rss_mb": rss})
    store.close()
    res = cli("show", "0000beef")
    assert res.returncode == 0, str(res)
    assert "(running for " in res.stdout, res.stdout
    assert "RSS 170 MB last sampled, 180 MB at most" in res.stdout, res.stdout


def test_the_live_phase_table_never_shows_a_phase_ahead_of_its_source(cli, tmp_path):
    """While a job runs, each line of the phase table the store holds has passed on at
    least what the next line took in: chunks are counted as they leave the reader, and the
    table is read from its last line up. (The extract's line used to be counted when a
    chunk reached the end of the line, so with chunks in flight the console showed clean
    taking in more rows than the extract had read.)"""
    import threading

    (tmp_path / "slowmod.py").write_text(SLOW_PHASE, encoding="utf-8")
    pipeline, _ = sample_pipeline(tmp_path, 20_000, extra_phase=(
        '[[phases]]\ntype = "slowmod:Slow"\nseconds = 0.02\n'))
    env = {**SMALL, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(tmp_path), os.environ.get("PYTHONPATH")]))}
    seen: list[list[dict]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if cli.state.exists():
                try:
                    rows = store_rows(cli.state, "SELECT phase_stats FROM import_jobs")
                except sqlite3.OperationalError:       # the store being created
                    rows = []
                for r in rows:
                    if r["phase_stats"]:
                        seen.append([p for p in json.loads(r["phase_stats"]) if not p.get("branch")])
            done.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        res = cli("run", pipeline, "--no-ui", "--json", env=env)
    finally:
        done.set()
        watcher.join()
    assert res.returncode == 0, str(res)
    live = [t for t in seen if t[0]["rows_in"] < 20_000]
    assert len(live) >= 5, f"only {len(live)} live tables seen"
    for table in live:
        for a, b in zip(table, table[1:], strict=False):
            assert b["rows_in"] <= a["rows_out"], (a, b)
