"""Progress of a Dask job while its parts run (ADR 0026).

Workers log Dask events of the job's topic (``parts._reporter``: part, records done and the
bytes read for them, rows/s since the part began, the worker's RSS); the driver's client
subscribes, and a watcher thread of the driver, through a store connection of its own,
writes the job's metrics about every second (records and bytes done = the parts recorded
plus what the parts not yet recorded say, so the progress bar moves as the rows are read,
not a part at a time) and, every few seconds, an event ``workers`` with each worker's
part, rows/s and memory. The driver remains the only writer of the state store; a failure
here never fails the job (progress is a view).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

SAMPLE_S = 1.0          # a metrics sample of the job
WORKERS_S = 2.0         # an event with every worker's figures (and one at the end)


class Watcher:
    """Reads the workers' reports; ``run`` is the ``DaskRun`` (its recorded parts and
    committed counters are read, never written)."""

    def __init__(self, client: Any, topic: str, run: Any,
                 progress: Callable[[dict | None], None] | None = None):
        self.run, self.progress = run, progress
        self.client, self.topic = client, topic
        self.inbox: deque[dict] = deque()      # filled on the client's event loop
        client.subscribe_topic(topic, lambda event: self.inbox.append(event[1]))
        self.latest: dict[str, dict] = {}       # worker -> its last report
        # part -> the most (records, bytes) a report said of it: a part stays counted, and
        # never less, while it waits to be recorded after its worker moved on (parts are
        # recorded in file order) or while a worker lost halfway reads it again
        self.parts: dict[int, tuple[int, int]] = {}
        self.rates: dict[str, float] = {}       # worker -> rows/s of its part so far
        self.stop = threading.Event()
        self._last_workers: list[dict] = []
        # What this run segment started from (the parts an earlier segment recorded): its
        # figures are the segment's, as the local executor's sampler gives them.
        committed, _, self._start_bytes = run.recorded
        self._start_rows = committed.rows_read
        self._thread = threading.Thread(target=self._loop, name="dask-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        self._thread.join(timeout=5)
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:
            pass

    def _take(self, msg: dict) -> None:
        self.rates[msg["worker"]] = msg["rows_per_s"]
        self.latest[msg["worker"]] = msg
        records, size = self.parts.get(msg["part"], (0, 0))
        self.parts[msg["part"]] = (max(records, msg["records"]), max(size, msg.get("bytes", 0)))

    def _loop(self) -> None:
        job = self.run.job
        try:
            store = job.store.clone()
        except Exception:
            return
        try:
            last_sample = last_event = time.monotonic()
            while not self.stop.wait(0.25):
                while self.inbox:
                    self._take(self.inbox.popleft())
                now = time.monotonic()
                if now - last_sample >= SAMPLE_S and self.latest:
                    self._sample(store)
                    last_sample = now
                if now - last_event >= WORKERS_S and self.latest:
                    self._workers_event(store)
                    last_event = now
            while self.inbox:
                self._take(self.inbox.popleft())
            if self.latest:     # the last figures: the job's and each worker's
                self._sample(store)
                self._workers_event(store)
        except Exception:       # a view: the job goes on without it
            pass
        finally:
            store.close()

    def _workers_event(self, store: Any) -> None:
        """The workers' figures as an event, unless they did not change since the last."""
        workers = self.workers()
        if workers != self._last_workers:
            store.add_event(self.run.job.job_id, "workers", workers=workers)
            self._last_workers = workers

    def workers(self) -> list[dict]:
        return [{"worker": w, "pid": m["pid"], "part": m["part"], "records": m["records"],
                 "rows_per_s": round(self.rates.get(w, 0.0), 1), "rss_mb": m["rss_mb"]}
                for w, m in sorted(self.latest.items())]

    def _sample(self, store: Any) -> None:
        run, job = self.run, self.run.job
        c, done, recorded_bytes = run.recorded
        running = {part: seen for part, seen in self.parts.items() if part not in done}
        now = time.time()
        seg = time.monotonic() - job.started
        rows = c.rows_read + sum(records for records, _ in running.values())
        size = recorded_bytes + sum(read for _, read in running.values())
        # rows/s now: what the workers that reported in the last two samples' time say of
        # their parts, a part just recorded included. (Counted among running parts only, it
        # read 0 whenever every report was of a part the driver had recorded; rows since
        # the previous sample over the time since it jumped with the reports' lag: workers
        # report twice a second, so 125K then 2.1M rows/s for workers doing 1.2M.)
        rate = sum(self.rates.get(w, 0.0) for w, m in self.latest.items()
                   if now - m.get("at", now) <= 2 * SAMPLE_S)
        sample = {"elapsed_s": round(job.elapsed_before + seg, 3), "rows_read": rows,
                  "rows_loaded": c.rows_loaded, "rows_rejected": c.rows_rejected,
                  "rows_per_s": round(rate, 1),
                  "rss_mb": max(m["rss_mb"] for m in self.latest.values()),
                  "batch_size": job.settings.batch_size_max,
                  "queue_depth": len({m["part"] for m in self.latest.values()} - done),
                  "retries": 0, "bytes_read": size, "segment": job.segment,
                  "segment_elapsed_s": round(seg, 3), "segment_rows": rows - self._start_rows,
                  "segment_bytes": max(0, size - self._start_bytes)}
        store.add_metric(job.job_id, sample)
        if self.progress:
            self.progress(sample | {"bytes_total": job.fingerprint["size"]})
