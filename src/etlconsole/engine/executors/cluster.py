"""The cluster a Dask job runs on (ADR 0026): the job's own ``LocalCluster`` or a client of a
scheduler, Dask's presence checked, and the tasks a killed driver left running.

Dask is imported only inside these functions: the engine works without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...errors import JobFailed, UserError

INSTALL_HINT = "pip install 'etlconsole[dask]'"
# How a worker must be set up to run parts (the job's own LocalCluster gets it; a cluster of
# your own wants the same, as a Dask config file: ``worker_config_yaml``, docs/scale-out.md).
WORKER_CONFIG = {
    # A part holds its memory while it streams: there is nothing to spill, and a worker
    # Dask pauses at 80% of its limit never gets below it again (the job stalls; measured:
    # two paused workers at 420-460 MB of 512). Only the nanny's restart at 95% stays, and
    # the part restarted elsewhere skips what its ledger holds.
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
    "distributed.worker.memory.pause": False,
    # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's
    # moving mmap threshold: every allocation over 128 KB outside Arrow's pool is a fresh
    # mmap. A part then took 0.50 s of CPU against 0.46 s without (250,000 rows, measured
    # in one process); the engine's Arrow buffers are jemalloc's, which returns memory
    # itself (governor.use_lean_allocator). None: the variable is not set.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # The worker's statistical profiler walks the task thread's stack every 10 ms: ~3% of
    # a part's CPU (0.48 -> 0.46 s a part, measured), for a dashboard view jobs do not use.
    "distributed.worker.profile.enabled": False,
    # Every Dask server (worker, nanny, scheduler) wakes its event loop every 20 ms to
    # measure the loop's latency, the worker samples the machine for the dashboard every
    # 0.5 s and the nanny its memory every 0.1 s: 2.2% of an idle worker's pinned core,
    # taken from the part running there; 0.45% at these intervals (measured, nanny and
    # worker together). A loop blocked for seconds is still told; the nanny's restart at
    # 95% of the limit comes at most 0.5 s later.
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
}


def worker_config_yaml() -> str:
    """``WORKER_CONFIG`` as a Dask config file, for the workers of a cluster of your own
    (in ``~/.config/dask/`` or a folder ``DASK_CONFIG`` names, where ``dask worker`` runs)."""
    import yaml
    tree: dict[str, Any] = {}
    for key, value in WORKER_CONFIG.items():
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return yaml.safe_dump(tree, sort_keys=False)


def require_dask() -> None:
    """Refuse (exit 2, one line) a Dask job where dask.distributed is not installed."""
    import sys

    from ...startup import collector_paused
    try:
        # the first import: its ~33,000 objects live as long as the process, so they are
        # frozen out of later collections (~20 ms of a driver's CPU); a later call leaves
        # what is alive then (not all the program's) to the collector
        with collector_paused(freeze="distributed" not in sys.modules):
            import distributed  # noqa: F401
    except ImportError:
        raise UserError(f"--executor dask needs dask.distributed, which is not installed: "
                        f"{INSTALL_HINT}") from None


@contextmanager
def cluster(workers: int, scheduler: str | None, memory_mb: int) -> Iterator[Any]:
    """A client of ``scheduler``, or of a LocalCluster started for the job and stopped after
    it: ``workers`` processes of one thread each, each with the job's memory budget."""
    from distributed import Client, LocalCluster
    if scheduler:
        client = Client(scheduler, timeout="30s", direct_to_workers=_direct())
        try:
            yield client
        finally:
            client.close()
        return
    import dask
    with dask.config.set(WORKER_CONFIG):
        local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             memory_limit=f"{memory_mb}MB", dashboard_address=":0",
                             silence_logs=logging.ERROR)
    client = Client(local, direct_to_workers=_direct())
    try:
        # The job's own cluster dies with the driver: distributed's processes exit when
        # their parent goes (a pipe they watch), so a driver killed with -9 leaves no
        # worker writing behind the resume (tests/dask: the driver's kill).
        yield client
    finally:
        client.close()
        local.close()


def _direct() -> bool:
    """Whether the driver fetches each part's result from the worker that holds it. Dask's
    default for a client outside the cluster routes it through the scheduler, which then
    reads and forwards every part's rejects (a job of 8 parts: 2.58 -> 2.53 s direct,
    medians of 4). ``distributed.client.direct-to-workers: false`` in your Dask config
    keeps the scheduler in between, for a driver that cannot reach the workers."""
    import dask
    setting = dask.config.get("distributed.client.direct-to-workers", None)
    return True if setting is None else bool(setting)


def _executing(dask_worker: Any) -> list[str]:
    """Keys of the tasks a worker is running now (a task outlives its client), those that
    left its thread pool for their tail too (``parts._leave_pool``)."""
    return [str(ts.key) for ts in dask_worker.state.all_running_tasks]


def wait_for_orphans(client: Any, job_id: str, timeout_s: float = 600.0) -> None:
    """Before a resume on a shared cluster: the tasks of this job that a killed driver
    left running (they finish their part; Dask cannot stop a running function) must end
    first, or two writers would cut the same part."""
    deadline = time.monotonic() + timeout_s
    while True:
        running = [k for keys in client.run(_executing).values() for k in keys if k.endswith(job_id)]
        if not running:
            return
        if time.monotonic() > deadline:
            raise JobFailed(f"tasks of job {job_id} still run on the cluster ({', '.join(running)}); "
                            "resume it once they end")
        time.sleep(0.5)
