"""Memory governor: samples RSS with psutil and turns the budget into decisions.

Above the soft mark the runner halves its chunk and batch sizes and Arrow returns freed
memory to the OS; above the budget the job fails resumably with a clear message instead of
being killed by the OS. The soft mark is 70% of the way from the RSS at start (the
interpreter and pyarrow's libraries, 90-125 MB) to PIPELINE_MAX_MEMORY_MB: a fraction of
the budget alone would leave a tight budget under pressure all the time.
"""

from __future__ import annotations

import os
import resource

import psutil
import pyarrow as pa

SOFT = 0.7


def use_lean_allocator() -> None:
    """Prefer jemalloc for Arrow buffers: with the default mimalloc the process holds
    ~80 MB more RSS for the same work (measured in bench/), which the budget must pay."""
    try:
        pool = pa.jemalloc_memory_pool()
    except (NotImplementedError, AttributeError):
        return
    pa.set_memory_pool(pool)
    pa.jemalloc_set_decay_ms(int(os.environ.get("ETL_JEMALLOC_DECAY_MS", "1000")))


class Governor:
    def __init__(self, budget_mb: int):
        self.budget_mb = budget_mb
        self._proc = psutil.Process()
        self.rss_mb = self.start_mb = self.sample()
        self.soft_mb = self.start_mb + SOFT * (budget_mb - self.start_mb)
        self.over_budget = False
        self.pressure = False

    def sample(self) -> float:
        self.rss_mb = self._proc.memory_info().rss / 2**20
        return self.rss_mb

    def check(self) -> None:
        rss = self.sample()
        self.pressure = rss > self.soft_mb
        if self.pressure:
            pa.default_memory_pool().release_unused()
            rss = self.sample()
        self.over_budget = rss > self.budget_mb

    @staticmethod
    def reset_peak() -> None:
        """Start the peak (VmHWM) over from the current RSS (Linux 4.0 and later): a
        long-lived process that runs one piece of work after another — a Dask worker
        running the parts of many jobs — then tells each piece's own peak, not the highest
        of all it ran before. Elsewhere the peak stays the process's."""
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
        except OSError:
            pass

    @staticmethod
    def peak_mb() -> float:
        """Peak RSS of this process as the OS measured it: VmHWM on Linux (ru_maxrss there
        starts from the parent's peak at fork, so a big parent would inflate it)."""
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except (OSError, ValueError):
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
