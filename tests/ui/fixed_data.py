"""A state store with fixed ids, times and counts, for snapshot tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil

from etlconsole.store import StateStore

SETTINGS = {"max_memory_mb": 512}
PHASES = ["clean", "validate", "transform", "map", "load"]


def _phase_stats(rows: int, rejected: int) -> list[dict]:
    out, n = [], rows
    for i, name in enumerate(PHASES):
        rej = rejected if name == "validate" else 0
        out.append({"label": f"phase {i + 1} ({name})", "rows_in": n, "rows_out": n - rej,
                    "rejected": rej, "warned": 0, "seconds": round(0.4 + i * 0.37, 2)})
        n -= rej
    return out


def _job(store: StateStore, job_id: str, day: str, status: str, rows: int, rejected: int,
         elapsed: float | None, error: str | None = None) -> None:
    store.create_job(job_id, pipeline_name="orders", pipeline_file="/data/orders.toml",
                     source_path="/data/orders.csv", bytes_total=rows * 120, settings=SETTINGS,
                     destinations=[{"kind": "sqlite", "path": "/data/warehouse.db",
                                    "table": "orders", "mode": "append"}])
    store.update_job(job_id, status=status, started_at=f"{day}T09:00:00.000+00:00",
                     finished_at=None if elapsed is None else f"{day}T09:01:00.000+00:00",
                     elapsed_s=elapsed, rows_read=rows, rows_loaded=rows - rejected,
                     rows_rejected=rejected, bytes_read=rows * 120,
                     peak_rss_mb=None if elapsed is None else 131.5, error=error,
                     phase_stats=_phase_stats(rows, rejected), created_at=f"{day}T09:00:00.000+00:00")


def _event(store: StateStore, job_id: str, at: str, event: str, level: str = "info", **details):
    store.conn.execute("INSERT INTO pipeline_events (job_id, at, level, event, details) VALUES "
                          "(?, ?, ?, ?, ?)", [job_id, at, level, event, json.dumps(details)])


def fixed_store(path: Path) -> Path:
    store = StateStore(path)
    _job(store, "0badc0de", "2025-03-01", "rolled_back", 0, 0, 12.0)
    _job(store, "e5f6a7b8", "2025-03-02", "failed", 40_000, 812, 3.2,
         error="memory budget exceeded: RSS 530 MB > PIPELINE_MAX_MEMORY_MB=512; the job is resumable")
    _job(store, "a1b2c3d4", "2025-03-03", "succeeded", 100_000, 2_000, 4.1)
    for b in range(1, 5):
        rejects = [{"row": b * 100 + k, "phase": "validate", "rule": rule, "column": col,
                    "message": msg, "values": json.dumps({"order_id": str(b * 100 + k),
                                                          "customer_email": "[/x]" if k == 0 else "a@b"})}
                   for k, (rule, col, msg) in enumerate([
                       ("pattern", "customer_email", "does not match ^[^@ ]+@[^@ ]+$: '[/x]'"),
                       ("allowed", "status", "'refunded' is not one of new, paid, shipped"),
                       ("type", "quantity", "'ten' is not an int64")][: 1 + b % 3])]
        store.begin_batch("a1b2c3d4", b, row_start=(b - 1) * 25_000 + 1, row_end=b * 25_000,
                          rejects=rejects)
        store.commit_batch("a1b2c3d4", b, rows_loaded=24_500, attempts=1, duration_ms=120.0,
                           counters={})
        if b % 2 == 0:
            store.add_checkpoint("a1b2c3d4", "load", {"batch": b, "last_row": b * 25_000,
                                                      "rows_loaded": b * 24_500}, b * 25_000)
    for i, (event, details) in enumerate([("sniff", {"note": "delimiter ',' (sniffed)"}),
                                          ("job.succeeded", {})]):
        _event(store, "a1b2c3d4", f"2025-03-03T09:00:0{i}.000+00:00", event, **details)
    # the newest job is running (this process stands in for its engine)
    _job(store, "feedf00d", "2025-03-04", "running", 1_200_000, 24_000, None)
    store.update_job("feedf00d", heartbeat_at="9999-01-01T00:00:00+00:00", pid=os.getpid(),
                     pid_started=psutil.Process().create_time(), bytes_total=240_000_000)
    for i in range(1, 61):
        store.add_metric("feedf00d", {
            "elapsed_s": i * 0.5, "rows_read": i * 20_000, "rows_loaded": i * 19_600,
            "rows_rejected": i * 400, "rows_per_s": 40_000.0 + (i * 7919 % 13) * 1000,
            "rss_mb": 110.0 + (i * 31 % 17), "batch_size": 50_000, "queue_depth": 1,
            "retries": 0, "bytes_read": i * 2_400_000})
    _event(store, "feedf00d", "2025-03-04T09:00:00.000+00:00", "sniff",
           note="delimiter ',' (sniffed: 14 fields on 50 of the first 50 lines)")
    _event(store, "feedf00d", "2025-03-04T09:00:12.000+00:00", "batch.retry", level="warning",
           batch=7, error="database is locked [/x]")
    store.close()
    return path


def short_job_store(path: Path) -> Path:
    """One finished 20-row job (the size of a quick try), with the samples the engine takes
    at the start and at the end of its run, and the extract on its phase table."""
    store = StateStore(path)
    job_id = "5407f00d"
    store.create_job(job_id, pipeline_name="orders", pipeline_file="/data/orders.toml",
                     source_path="/data/orders.csv", bytes_total=2_431, settings=SETTINGS,
                     destinations=[{"kind": "sqlite", "path": "/data/warehouse.db",
                                    "table": "orders", "mode": "append"}])
    phases = [{"label": "extract", "rows_in": 20, "rows_out": 19, "rejected": 1, "warned": 0,
               "seconds": 0.004}]
    n = 19
    for i, name in enumerate(PHASES):
        rej = 1 if name == "validate" else 0
        phases.append({"label": f"phase {i + 1} ({name})", "rows_in": n, "rows_out": n - rej,
                       "rejected": rej, "warned": 0, "seconds": round(0.001 + i * 0.002, 4)})
        n -= rej
    store.update_job(job_id, status="succeeded", started_at="2025-03-05T09:00:00.000+00:00",
                     finished_at="2025-03-05T09:00:00.140+00:00", elapsed_s=0.14, rows_read=20,
                     rows_loaded=18, rows_rejected=2, bytes_read=2_431, peak_rss_mb=118.4,
                     phase_stats=phases, created_at="2025-03-05T09:00:00.000+00:00")
    for t, rows, rate, rss in [(0.002, 0, 0.0, 96.2), (0.139, 20, 144.0, 118.1)]:
        store.add_metric(job_id, {
            "elapsed_s": t, "rows_read": rows, "rows_loaded": 18 if rows else 0,
            "rows_rejected": 2 if rows else 0, "rows_per_s": rate, "rss_mb": rss,
            "batch_size": 20, "queue_depth": 0, "retries": 0, "bytes_read": 2_431 if rows else 0,
            "segment": 1, "segment_elapsed_s": t, "segment_rows": rows,
            "segment_bytes": 2_431 if rows else 0})
    for i, (event, details) in enumerate([("sniff", {"note": "delimiter ',' (sniffed)"}),
                                          ("job.succeeded", {})]):
        _event(store, job_id, f"2025-03-05T09:00:00.{i}00+00:00", event, **details)
    store.close()
    return path
