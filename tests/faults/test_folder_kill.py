"""kill -9 a job loading a parquet or csv dataset folder, then resume: the folder holds
exactly the rows of an uninterrupted run (invariant 2), one part file per ledger batch;
rollback of a killed job leaves nothing (invariants 3 and 4)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from .faultkit import Lab, pipeline_text, run_and_kill

SCENARIOS = [("parquet", "append", 2), ("parquet", "append", 7), ("parquet", "atomic", 4),
             ("csv", "append", 3), ("csv", "replace", 5)]


def folder_pipeline(lab: Lab, source: Path, kind: str, mode: str) -> Path:
    text = pipeline_text(source, mode=mode)
    text = text.replace('destination = "sqlite"', f'destination = "{kind}"')
    text = text.replace('path = "warehouse.db"', 'path = "dataset"')
    text = text.replace('table = "orders"\n', "")
    path = lab.folder / f"{kind}-{mode}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def content(folder: Path, kind: str) -> list[tuple]:
    files = sorted(str(p) for p in folder.glob(f"*.{kind}"))
    if not files:
        return []
    table = ds.dataset(files, format=kind).to_table()
    return sorted(tuple(map(str, r.values())) for r in table.to_pylist())


def ledger_batches(folder: Path, job: str) -> list[int]:
    entries = [json.loads(p.read_text()) for p in (folder / "_etl_loads").glob(f"{job}-*.json")]
    return sorted(e["batch"] for e in entries
                  if (folder / e["file"]).exists() or (folder / f"_etl_stage_{job}" / e["file"]).exists())


@pytest.fixture(scope="module")
def references(tmp_path_factory, orders_csv) -> dict[str, dict]:
    refs = {}
    for kind in ("parquet", "csv"):
        lab = Lab(tmp_path_factory.mktemp(f"ref-{kind}"), orders_csv)
        pipe = folder_pipeline(lab, orders_csv, kind, "append")
        summary = lab.run(pipe)
        rows = content(lab.folder / "dataset", kind)
        assert len(rows) == summary["rows_loaded"] > 0
        assert len({r[0] for r in rows}) == len(rows)      # ids unique
        refs[kind] = {"summary": summary, "rows": rows}
    return refs


@pytest.mark.parametrize("kind, mode, batches", SCENARIOS)
def test_kill_then_resume_is_exactly_once(tmp_path, orders_csv, references, kind, mode, batches):
    lab = Lab(tmp_path, orders_csv)
    pipe = folder_pipeline(lab, orders_csv, kind, mode)
    rng = random.Random(f"{kind}{mode}{batches}")
    job = run_and_kill(lab, pipe, batches=batches, extra_delay=rng.uniform(0, 0.05),
                       check_status=True)
    folder = lab.folder / "dataset"
    done = ledger_batches(folder, job)
    assert done == list(range(1, len(done) + 1)), done
    if mode == "append":         # visible: exactly the parts of the committed batches
        parts = sorted(p.name for p in folder.glob(f"part-*.{kind}"))
        assert parts == [f"part-{job}-{b:08d}.{kind}" for b in done]
    else:                        # nothing visible before the publish
        assert content(folder, kind) == []
    summary = lab.resume(job)
    assert summary["status"] == "succeeded", summary
    ref = references[kind]
    assert summary["rows_loaded"] == ref["summary"]["rows_loaded"]
    assert summary["rows_rejected"] == ref["summary"]["rows_rejected"]
    assert content(folder, kind) == ref["rows"]
    parts = sorted(p.name for p in folder.glob(f"part-*.{kind}"))
    assert parts == [f"part-{job}-{b:08d}.{kind}" for b in ledger_batches(folder, job)]
    assert not list(folder.glob(".*.tmp")) and not list(folder.glob("_etl_stage_*"))


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_rollback_of_a_killed_job_leaves_nothing(tmp_path, orders_csv, kind):
    lab = Lab(tmp_path, orders_csv)
    pipe = folder_pipeline(lab, orders_csv, kind, "append")
    job = run_and_kill(lab, pipe, batches=3)
    assert content(lab.folder / "dataset", kind)
    res = lab.rollback(job)
    assert res.last_json()["status"] == "rolled_back"
    assert not (lab.folder / "dataset").exists()
