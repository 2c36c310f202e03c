"""How the workers that run parts are set up (executors/cluster.py): the job's own
LocalCluster gets WORKER_CONFIG, and the config file for a cluster of your own says the
same to Dask."""

from __future__ import annotations

import dask

from etlconsole.engine.executors.cluster import WORKER_CONFIG, cluster, worker_config_yaml


def test_the_jobs_own_workers_run_without_malloc_trimming_profiler_or_pausing():
    def setup() -> dict:
        import os

        import dask
        get = dask.config.get
        return {"trim": os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset"),
                "profile": get("distributed.worker.profile.enabled"),
                "memory": [get(f"distributed.worker.memory.{k}") for k in ("target", "spill", "pause")]}

    with cluster(1, None, 512) as client:
        [seen] = client.run(setup).values()
        assert client.direct_to_workers is True     # results from the workers, not the scheduler
    # Dask's default would be "65536", True and [0.6, 0.7, 0.8]
    assert seen == {"trim": "unset", "profile": False, "memory": [False, False, False]}


def test_the_config_file_for_your_own_workers_is_worker_config(tmp_path):
    (tmp_path / "etlconsole.yaml").write_text(worker_config_yaml(), encoding="utf-8")
    collected = dask.config.collect(paths=[str(tmp_path)], env={})
    with dask.config.set(collected):
        assert {key: dask.config.get(key) for key in WORKER_CONFIG} == WORKER_CONFIG
        # what the nanny reads: a None in pre-spawn-environ is a variable it does not set
        assert dask.config.get("distributed.nanny.pre-spawn-environ")["MALLOC_TRIM_THRESHOLD_"] is None


def test_a_driver_told_to_keep_the_scheduler_in_between_does(tmp_path):
    from etlconsole.engine.executors.cluster import _direct
    assert _direct() is True
    with dask.config.set({"distributed.client.direct-to-workers": False}):
        assert _direct() is False


def test_the_config_file_in_the_docs_is_worker_config():
    """docs/scale-out.md shows operators the file to give their workers: it must be the one
    the job's own cluster gets."""
    import re
    from pathlib import Path

    import yaml
    doc = (Path(__file__).resolve().parents[2] / "docs" / "scale-out.md").read_text(encoding="utf-8")
    [shown] = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    assert yaml.safe_load(shown) == yaml.safe_load(worker_config_yaml())


def test_a_part_in_its_tail_still_counts_as_running_for_a_resume(cluster, tmp_path):
    """A part's task leaves the worker's thread pool for its last commit (parts._leave_pool):
    the worker starts another task meanwhile, and a resume waiting for the tasks a killed
    driver left (wait_for_orphans) must still see it, or two writers would cut the part."""
    import os
    import time

    import pytest

    from etlconsole.engine.executors.cluster import _executing, wait_for_orphans
    from etlconsole.errors import JobFailed

    gate = tmp_path / "gate"

    def in_its_tail(gate: str) -> int:
        import os
        import time

        from etlconsole.engine.executors.parts import _leave_pool
        _leave_pool()
        while not os.path.exists(gate):
            time.sleep(0.01)
        return os.getpid()

    tail = cluster.submit(in_its_tail, str(gate), key="part-3-tailjob", pure=False)
    deadline = time.monotonic() + 30
    while "part-3-tailjob" not in [k for keys in cluster.run(_executing).values() for k in keys]:
        assert time.monotonic() < deadline, "the part never showed as running"
        time.sleep(0.05)
    # it left the pool: its worker runs another task while it waits
    [worker] = [w for w, keys in cluster.run(_executing).items() if "part-3-tailjob" in keys]
    assert cluster.submit(lambda: 7, workers=[worker], pure=False).result(timeout=30) == 7
    with pytest.raises(JobFailed, match="part-3-tailjob"):
        wait_for_orphans(cluster, "tailjob", timeout_s=0.3)
    gate.touch()
    assert tail.result(timeout=30) != os.getpid()
    wait_for_orphans(cluster, "tailjob", timeout_s=30)
