"""The sampler thread: a metrics sample in the state store about every half second, and
the memory governor's decisions (ADR 0011) every 0.1 s.

Who writes what (ADR 0020): the sampler is the only writer of the chunk size the reader
is given (``chunk_rows``) and of the governor's figures; memory pressure reaches the batch
sizer as a signal (``SizeSignals.shrink``), applied by the cutter. It reads the cutter's
``Progress`` and the loader's ``Committed`` snapshot; it writes nothing they own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import Settings
from ..errors import JobFailed, UserError
from ..store import StateStore
from .batching import BatchSizer
from .governor import Governor

if TYPE_CHECKING:
    from .cutter import Cutter
    from .job import Job
    from .loader import Loader

# The least room above the RSS at start the governor can work in (chunks and batches
# shrunk to their minimum). Measured: 2M rows under a 200 MB budget from a 122 MB start
# (shared libraries fully resident) peak at 189 MB. The RSS at start varies by 20-30 MB
# with how much of pyarrow's libraries the kernel maps (page cache), so it is measured.
STARTUP_HEADROOM_MB = 64
# Room above the start RSS the default chunk and batch sizes are fitted to: with less room,
# the job starts with proportionally smaller pieces. They use ~130 MB (bench/, chunks of a
# full 32K rows), but thread caches and Arrow's pool do not shrink with the pieces, so
# the room is set above that: measured, 2M rows under a 200 MB budget peak at 176-181 MB
# without the governor ever halving (at 160: 197-202 MB, halving all the way, twice as slow).
DEFAULT_ROOM_MB = 200


def fit_to_budget(settings: Settings, rss_mb: float, sizer: BatchSizer) -> int:
    """The chunk size to start with; a tight budget also lowers the sizer's maximum. A
    tight budget starts with smaller pieces instead of waiting for the governor to see the
    pressure (by then a burst may already be over the budget). Called before any thread."""
    room = settings.max_memory_mb - rss_mb
    share = min(1.0, room / DEFAULT_ROOM_MB)
    if share >= 1.0:
        return settings.chunk_size
    sizer.high = max(sizer.low, int(sizer.high * share))
    return max(1_000, int(settings.chunk_size * share))


class Sampler:
    """Metrics, progress and memory for one run segment.

    Writes (sampler thread; the main thread before it starts and after it is joined):
    ``chunk_rows``, the governor, the previous sample, ``error``, the metrics rows.
    Reads: the cutter's progress and sizer size, the loader's committed snapshot and
    queue depth, the destinations' retry counts, the job's segment figures."""

    def __init__(self, job: Job, governor: Governor,
                 progress: Callable[[dict | None], None] | None = None):
        self.job, self.governor, self.progress = job, governor, progress
        self.chunk_rows = self.chunk_cap = job.settings.chunk_size
        self.error: BaseException | None = None     # e.g. a full disk under the store
        self.stop = threading.Event()
        self._shrunk_at = 0.0
        self._last_rows, self._last_t = 0, 0.0     # the previous sample (rates)
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self.cutter: Cutter | None = None
        self.loader: Loader | None = None

    def refuse_impossible_budget(self) -> None:
        settings, rss = self.job.settings, self.governor.rss_mb
        need = rss + STARTUP_HEADROOM_MB
        if settings.max_memory_mb < need:
            raise UserError(f"PIPELINE_MAX_MEMORY_MB={settings.max_memory_mb} is below what the "
                            f"engine needs: it uses {rss:.0f} MB before reading a "
                            f"row; give it at least {need:.0f}")

    def fit(self, sizer: BatchSizer) -> None:
        self.chunk_rows = self.chunk_cap = fit_to_budget(self.job.settings, self.governor.rss_mb,
                                                         sizer)

    def check_budget(self) -> None:
        """Over the budget: the job fails, resumably (main thread, between chunks)."""
        if self.governor.over_budget:
            raise JobFailed(
                f"memory budget exceeded: RSS {self.governor.rss_mb:.0f} MB > "
                f"PIPELINE_MAX_MEMORY_MB={self.job.settings.max_memory_mb}; the job is "
                "resumable — raise the budget or lower PIPELINE_CHUNK_SIZE")

    def attach(self, cutter: Cutter, loader: Loader) -> None:
        """What it samples; the segment's rates count from here (``job.started``)."""
        self.cutter, self.loader = cutter, loader
        self._last_rows, self._last_t = cutter.progress.records_seen, self.job.started

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def _loop(self) -> None:
        """Every failure of this thread stops the job (the main thread raises it): a full
        disk under the state store is seen here first, and must not go on unseen."""
        try:
            self._sampling()
        except BaseException as exc:
            self.error = exc if isinstance(exc, JobFailed) else JobFailed(
                f"sampler: {type(exc).__name__}: {exc}")

    def _sampling(self) -> None:
        store = self.job.store.clone()
        try:
            # A sample at once: a job shorter than the interval still has its figures
            # (the last one is taken by the main thread when the segment ends).
            self.sample(store)
            ticks = 0
            # Memory is looked at every 0.1 s (a burst between looks must stay small);
            # metrics are written every 0.5 s.
            while not self.stop.wait(0.1):
                ticks += 1
                self._watch_memory()
                if ticks % 5 == 0:
                    self.sample(store)
        finally:
            store.close()

    def _watch_memory(self) -> None:
        self.governor.check()
        now = time.monotonic()
        if self.governor.pressure and now - self._shrunk_at >= 0.5:   # halve, then let it act
            self._shrunk_at = now
            self.chunk_rows = max(1_000, self.chunk_rows // 2)
            if self.cutter is not None:
                self.cutter.signals.shrink()
        elif not self.governor.pressure and self.chunk_rows < self.chunk_cap:
            self.chunk_rows = min(self.chunk_cap, self.chunk_rows + self.chunk_cap // 40)

    def sample(self, store: StateStore) -> dict:
        """One metrics sample. Rates are of this run segment: rows since the previous
        sample of the segment over the time since it (a resumed job's first sample does
        not count the rows of the earlier segments as just read)."""
        job, cutter, loader = self.job, self.cutter, self.loader
        assert cutter is not None and loader is not None
        p, c = cutter.progress, loader.committed
        t = time.monotonic()
        rows, seg_t = p.records_seen, t - job.started
        dt = t - self._last_t
        sample = {
            "elapsed_s": round(job.elapsed_before + seg_t, 3), "rows_read": rows,
            "rows_loaded": c.rows_loaded, "rows_rejected": c.rows_rejected,
            "rows_per_s": round((rows - self._last_rows) / dt, 1) if dt > 1e-3 else 0.0,
            "rss_mb": round(self.governor.sample(), 1),
            "batch_size": p.batch_size or cutter.sizer.size,
            "queue_depth": loader.queue.qsize(), "retries": job.retries,
            "bytes_read": p.bytes_read, "segment": job.segment,
            "segment_elapsed_s": round(seg_t, 3), "segment_rows": rows - job.start_after,
            "segment_bytes": max(0, p.bytes_read - job.bytes_before),
        }
        self._last_rows, self._last_t = rows, t
        store.add_metric(job.job_id, sample)
        if self.progress:
            self.progress(sample | {"bytes_total": job.fingerprint["size"]})
        return sample
