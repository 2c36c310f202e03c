"""Fixtures of the console suite: real jobs made by the real engine on small CSV files,
and a store with fixed data (ids, times) for snapshots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from etlconsole.config import Settings
from etlconsole import api
from etlconsole.sample import write_orders_csv

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TOML = ROOT / "sample_data" / "orders.toml"


class Workspace:
    """A folder with orders.csv, orders.toml (the sample pipeline) and a state store."""

    def __init__(self, root: Path, rows: int = 2_000, **settings):
        self.root = root
        self.csv = root / "orders.csv"
        self.pipeline = root / "orders.toml"
        self.state = root / "state" / "state.db"
        self.dest = root / "warehouse.db"
        write_orders_csv(self.csv, rows)
        shutil.copy(SAMPLE_TOML, self.pipeline)
        # small batches and checkpoints, so a small file has several of each
        self.settings = Settings(state_db=str(self.state), **{
            "batch_size_min": 100, "batch_size_max": 500, "chunk_size": 500,
            "checkpoint_interval": 500, **settings})

    def run(self) -> dict:
        """One job by the real engine (in this process); returns its summary."""
        return api.run(self.pipeline, self.settings).to_json()

    def app(self, **options):
        from etlconsole.ui.app import ConsoleApp
        options.setdefault("poll_interval", 0.2)
        options.setdefault("export_dir", self.root)
        options.setdefault("cwd", self.root)
        return ConsoleApp(self.state, settings=self.settings, **options)


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    for k in list(os.environ):
        if k.startswith("PIPELINE_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    return Workspace(tmp_path)
