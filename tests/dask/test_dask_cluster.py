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
