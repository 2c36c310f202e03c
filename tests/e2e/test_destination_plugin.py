"""A new destination is one module plus one entry point: the test distribution in
tests/plugins/etlconsole-arrow-destination (a folder of Arrow IPC files) is installed
with pip into a folder of its own and used by name, through the real CLI: a job, a
failure in the middle, resume, rollback to a checkpoint, resume again, and a full rollback.
Plus the registry's own hook (``destinations.register``), which the entry-point loader uses."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc
import pytest

from etlconsole.engine import destinations
from etlconsole.sample import SAMPLE_PIPELINE_TOML, write_orders_csv

from .helpers import assert_summary, assert_user_error, query

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "etlconsole-arrow-destination"
FAST = {"PIPELINE_CHUNK_SIZE": "500", "PIPELINE_BATCH_SIZE_MAX": "500",
        "PIPELINE_BATCH_SIZE_MIN": "500", "PIPELINE_CHECKPOINT_INTERVAL": "1000"}


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """pip install the test destination into a folder of its own (offline, no deps)."""
    work = tmp_path_factory.mktemp("arrow-plugin")
    src = work / "src"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = work / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target", str(site), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return site


def pipelines(tmp_path: Path) -> None:
    write_orders_csv(tmp_path / "orders.csv", 4000, seed=5)
    (tmp_path / "sqlite.toml").write_text(SAMPLE_PIPELINE_TOML, encoding="utf-8")
    arrow = (SAMPLE_PIPELINE_TOML.replace('destination = "sqlite"', 'destination = "arrow"')
             .replace('path = "warehouse.db"', 'path = "dataset"').replace('table = "orders"\n', ""))
    (tmp_path / "arrow.toml").write_text(arrow, encoding="utf-8")


def arrow_ids(folder: Path) -> list[int]:
    ids: list[int] = []
    for f in sorted(folder.glob("*.arrow")):
        ids += pa.ipc.open_file(str(f)).read_all().column("id").to_pylist()
    return sorted(ids)


def test_a_plugin_destination_runs_resumes_and_rolls_back(cli, tmp_path, plugin_site):
    pipelines(tmp_path)
    ref = cli("run", "sqlite.toml", "--no-ui", "--json", env=FAST)
    assert ref.returncode == 0, str(ref)
    want = [r[0] for r in query(tmp_path / "warehouse.db", "SELECT id FROM orders ORDER BY id")]
    env = FAST | {"PYTHONPATH": str(plugin_site)}

    failed = cli("run", "arrow.toml", "--no-ui", "--json", env=env | {"ARROW_DEST_FAIL_AT": "5"})
    assert failed.returncode == 1, str(failed)
    out = failed.last_json()
    assert out["status"] == "failed" and "failing as asked" in out["error"], out
    assert out["destination"]["kind"] == "arrow"
    job = out["job_id"]
    assert len(list((tmp_path / "dataset").glob("*.arrow"))) == 4      # batches 1-4 committed

    resumed = cli("resume", job, "--json", env=env)
    assert resumed.returncode == 0, str(resumed)
    summary = resumed.last_json()
    assert_summary(summary)
    assert summary["rows_loaded"] == ref.last_json()["rows_loaded"] == len(want)
    assert arrow_ids(tmp_path / "dataset") == want                     # no gap, no duplicate

    cps = cli("checkpoints", job, "--json", env=env).json_lines()
    cp = cps[len(cps) // 2]
    kept = cp["checkpoint_data"]["batch"]
    back = cli("rollback", job, "--to", str(cp["id"]), "--yes", "--json", env=env)
    assert back.returncode == 0, str(back)
    assert sorted(int(p.stem.split("-")[1]) for p in (tmp_path / "dataset").glob("*.arrow")) == \
        list(range(1, kept + 1))
    again = cli("resume", job, "--json", env=env)
    assert again.returncode == 0, str(again)
    assert arrow_ids(tmp_path / "dataset") == want

    dry = cli("rollback", job, "--dry-run", "--json", env=env)
    assert dry.last_json()["rows"] == len(want) and (tmp_path / "dataset").is_dir()
    gone = cli("rollback", job, "--yes", "--json", env=env)
    assert gone.returncode == 0, str(gone)
    assert gone.last_json()["rows"] == len(want)
    assert not (tmp_path / "dataset").exists()          # the job made the folder: it goes


def test_without_the_plugin_the_kind_is_one_error_line(cli, tmp_path):
    pipelines(tmp_path)
    res = cli("check", "arrow.toml")
    assert_user_error(res, "destination", "must be one of sqlite, parquet, csv, postgres, got 'arrow'")


class _Memory(destinations.Destination):
    kind = "memory"

    def check(self, schema): ...
    def open(self, schema): ...
    def write(self, batch_number, batch, row_start, row_end, *, before_commit=None):
        return destinations.WriteResult(1)
    def classify(self, exc): return destinations.DestinationFailed(str(exc))
    @classmethod
    def read_ledger(cls, path, job_id): return []
    @classmethod
    def rollback(cls, path, job_id, **kw): return destinations.RollbackReport(str(path), cls.kind)


def test_the_registry_hook(monkeypatch):
    # the registration is this test's alone: later tests see the registry as installed
    monkeypatch.setattr(destinations, "_registered", dict(destinations._registered))
    destinations.register("memory", _Memory)
    assert destinations.get("memory") is _Memory and "memory" in destinations.available()
    with pytest.raises(ValueError, match="built in"):
        destinations.register("sqlite", _Memory)          # no plugin replaces a built-in
    with pytest.raises(TypeError):
        destinations.register("thing", object)            # type: ignore[arg-type]
    assert destinations.get("sqlite").__name__ == "SqliteDestination"
