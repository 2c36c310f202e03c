"""Honest figures at the unit level: the busy clock, the phase table from the store, the
schema migration of an old store, run segments and per-job checkpoint numbers."""

from __future__ import annotations

import sqlite3

import pytest

from etlconsole.engine import figures
from etlconsole.engine.figures import BusyClock, PhaseStats, committed_phase_stats
from etlconsole.store import StateStore
from etlconsole.store.schema import MIGRATIONS, _statements


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_busy_clock_counts_overlapping_work_once(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(figures.time, "perf_counter", clock)
    st = PhaseStats("phase 2 (validate)")
    busy = BusyClock(st)
    busy.__enter__()            # t=0: one half of the phase starts on chunk i
    clock.t = 1.0
    busy.__enter__()            # t=1: the other half starts on chunk i-1
    clock.t = 2.0
    busy.__exit__(None, None, None)
    clock.t = 3.0
    busy.__exit__(None, None, None)
    assert st.seconds == 3.0    # wall time at work; each thread's time would add to 4
    clock.t = 10.0              # idle from 3 to 10: not counted
    with busy:
        clock.t = 10.5
    assert st.seconds == 3.5


def test_phase_table_from_the_committed_rejects():
    stats = [PhaseStats("extract"), PhaseStats("phase 1 (clean)"),
             PhaseStats("phase 2 (validate)"), PhaseStats("phase 3 (load)")]
    committed_phase_stats(stats, 1_000, {"extract": 4, "phase 2 (validate)": 30,
                                         "phase 3 (load)": 2, "phase 4 (branch) > b > x": 7})
    assert [(s.rows_in, s.rows_out, s.rejected) for s in stats] == [
        (1_000, 996, 4), (996, 996, 0), (996, 966, 30), (966, 964, 2)]


def test_rejects_of_unknown_phases_count_at_the_start():
    # a rerun's rejects carried from the first job's earlier phases
    stats = [PhaseStats("replay of job x"), PhaseStats("phase 3 (map)")]
    committed_phase_stats(stats, 100, {"extract": 1, "phase 2 (validate)": 9})
    assert (stats[0].rejected, stats[1].rows_in) == (10, 90)


def old_store(path) -> None:
    """A state store as etlconsole made it before schema 3, with two jobs' checkpoints."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:2], start=1):
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    for job in ("aaaa0001", "bbbb0002"):
        conn.execute("INSERT INTO import_jobs (id, pipeline_name, status, created_at, started_at,"
                     " finished_at, elapsed_s, rows_read) VALUES (?, 'p', 'interrupted', "
                     "'2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00', "
                     "'2025-01-01T00:01:00+00:00', 60.0, 500)", (job,))
        for k in range(3):
            conn.execute("INSERT INTO pipeline_checkpoints (job_id, phase, checkpoint_data, "
                         "row_count, created_at) VALUES (?, 'load', '{\"batch\": 1}', ?, 'x')",
                         (job, (k + 1) * 100))
        conn.execute("INSERT INTO pipeline_metrics (job_id, at, elapsed_s, rows_per_s) "
                     "VALUES (?, 'x', 1.0, 10.0)", (job,))
    conn.close()


def test_an_old_store_is_migrated_and_stays_readable(tmp_path):
    path = tmp_path / "state.db"
    old_store(path)
    store = StateStore(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    second = store.checkpoints("bbbb0002")
    assert [c["number"] for c in second] == [1, 2, 3] and [c["id"] for c in second] == [4, 5, 6]
    assert store.checkpoint("bbbb0002", 2)["id"] == 5            # by number
    assert store.checkpoint("bbbb0002", 6)["number"] == 3         # an old id, not a number
    assert store.checkpoint("bbbb0002", 9) is None
    assert store.metrics("aaaa0001")[0]["segment_elapsed_s"] is None
    assert store.add_checkpoint("bbbb0002", "load", {"batch": 2}, 400) == 4
    # a job from before segments: its earlier run becomes segment 1 when it is resumed
    assert store.begin_segment("aaaa0001", "resume", 500) == 2
    assert store.end_segment("aaaa0001", 2, elapsed_s=5.0, rows_at_end=900,
                             status="succeeded") == 65.0
    assert [g["kind"] for g in store.segments("aaaa0001")] == ["before", "resume"]
    store.close()


def test_a_killed_segment_lasts_until_the_last_heartbeat(tmp_path):
    store = StateStore(tmp_path / "state.db")
    store.create_job("cccc0003", pipeline_name="p")
    assert store.begin_segment("cccc0003", "run", 0) == 1
    started = store.segments("cccc0003")[0]["started_at"]
    from datetime import datetime, timedelta
    beat = (datetime.fromisoformat(started) + timedelta(seconds=42)).isoformat()
    store.update_job("cccc0003", heartbeat_at=beat)        # then kill -9: no end recorded
    assert store.begin_segment("cccc0003", "resume", 100) == 2
    first = store.segments("cccc0003")[0]
    assert first["status"] == "killed" and first["elapsed_s"] == pytest.approx(42.0, abs=0.01)
    assert store.duration("cccc0003") == pytest.approx(42.0, abs=0.01)
    store.close()


def test_checkpoint_numbers_start_again_after_a_rollback_to_one(tmp_path):
    store = StateStore(tmp_path / "state.db")
    store.create_job("dddd0004", pipeline_name="p")
    assert [store.add_checkpoint("dddd0004", "load", {"batch": b}, b * 10)
            for b in (1, 2, 3)] == [1, 2, 3]
    store.reconcile("dddd0004", [{"batch": 1, "rows": 10, "row_start": 1, "row_end": 10}])
    assert [c["number"] for c in store.checkpoints("dddd0004")] == [1]
    assert store.add_checkpoint("dddd0004", "load", {"batch": 2}, 20) == 2
    store.close()


def test_the_headless_progress_line_estimates_at_the_pace_of_the_segment():
    import io
    from etlconsole.progress import ProgressLine
    out = io.StringIO()
    # resumed at 90% of the bytes after 90 s; this segment read 10 bytes in 10 s
    ProgressLine(out)({"bytes_total": 1_000, "bytes_read": 910, "elapsed_s": 100.0,
                       "segment_elapsed_s": 10.0, "segment_bytes": 10, "rows_read": 910_000,
                       "rows_per_s": 1_000.0, "rss_mb": 120.0, "rows_rejected": 0})
    assert "ETA 1m30s" in out.getvalue(), out.getvalue()
