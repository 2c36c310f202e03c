"""Helpers of the Dask executor's tests: a drop of files with cross-file duplicates, labs
that run the real CLI, and what two runs are compared by (ADR 0026).

A drop is the sample orders data split into files at record boundaries, some gzipped, with
crafted rows that only a cross-file ``unique`` gets right: a key valid in file 0 and again
in file 3 (file 3's is rejected), one valid in file 0 and again in file 2 (both before the
half of the drop whose loads start on the first half's merge of keys: file 2's is
rejected), and a key whose first occurrence (file 1) fails another rule, so its first
*valid* occurrence (file 4) loads and file 5's is rejected.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sys

import pyarrow.dataset as ds

# tests/dask has no __init__.py: as a package named "dask" it would hide the real one.
# The suites it borrows from (faults, postgres) are found from the tests folder.
TESTS = str(Path(__file__).resolve().parents[1])
if TESTS not in sys.path:
    sys.path.append(TESTS)

from faults.faultkit import Lab, pipeline_text  # noqa: E402

TWICE_VALID = 9_000_001          # valid in file 0 and in file 3
FIRST_INVALID = 9_000_002        # bad email in file 1, valid in files 4 and 5
TWICE_EARLY = 9_000_003          # valid in file 0 and in file 2


def _row(order_id: int, email: str = "x@example.org") -> list[str]:
    return [str(order_id), "1", email, "X Y", "new", "1", "1.00", "EUR", "2024-01-01", "",
            "BE", "Ghent", "SKU-00001", ""]


CRAFTED = {0: [_row(TWICE_VALID), _row(TWICE_EARLY)], 2: [_row(TWICE_EARLY)], 3: [_row(TWICE_VALID)],
           1: [_row(FIRST_INVALID, "not-an-email")], 4: [_row(FIRST_INVALID)],
           5: [_row(FIRST_INVALID)]}


def write_drop(folder: Path, *, files: int = 6, rows: int = 2_000, gz: tuple[int, ...] = (1, 4),
               seed: int = 11) -> Path:
    """``files`` CSV files of ``rows`` sample records each (plus the crafted rows) in
    ``folder/drop``; those numbered in ``gz`` gzipped. Returns the drop's folder."""
    from etlconsole.sample import write_orders_csv
    whole = folder / "whole.csv"
    write_orders_csv(whole, files * rows, seed=seed)
    # latin-1 round-trips every byte, so undecodable sample rows stay undecodable
    with whole.open(newline="", encoding="latin-1") as f:
        records = list(csv.reader(f))
    whole.unlink()
    header, body = records[0], records[1:]
    drop = folder / "drop"
    drop.mkdir(parents=True)
    for k in range(files):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body[k * rows:(k + 1) * rows] + CRAFTED.get(k, []))
        data = buf.getvalue().encode("latin-1")
        name = drop / f"orders_{k:02d}.csv"
        if k in gz:
            name, data = name.with_name(name.name + ".gz"), gzip.compress(data)
        name.write_bytes(data)
    return drop


class DropLab(Lab):
    """A lab whose pipeline reads a drop (a glob) and loads into a Parquet folder."""

    def __init__(self, folder: Path, drop: Path, **kw):
        super().__init__(folder, drop / "orders_*.csv*", **kw)
        self.out = self.folder / "out"

    def write_pipeline(self, name: str, source: Path, **kw) -> Path:
        text = pipeline_text(Path(source), **kw)
        old = 'destination = "sqlite"\npath = "warehouse.db"\ntable = "orders"\n'
        assert text.count(old) == 1, "sample pipeline's load changed"
        path = self.folder / name
        path.write_text(text.replace(old, 'destination = "parquet"\npath = "out"\n'), encoding="utf-8")
        return path

    def run_with(self, *args: str, expect: int = 0, env: dict | None = None) -> dict[str, Any]:
        res = self.cli("run", self.pipeline, "--no-ui", "--json", *args, env=env)
        assert res.returncode == expect, str(res)
        return res.last_json()

    def digest(self) -> tuple[int, str]:
        return parquet_digest(self.out)

    def rejects_of(self, job_id: str) -> Counter:
        """(row, phase, rule, column, message) of every reject of the job."""
        return self.store_rejects(job_id)

    def phase_table(self, job_id: str) -> list[tuple]:
        """(label, rows in, rows out, rejected) of each line of the job's phase table."""
        [(stats,)] = self.store_query("SELECT phase_stats FROM import_jobs WHERE id = ?", (job_id,))
        return [(s["label"], s["rows_in"], s["rows_out"], s["rejected"]) for s in json.loads(stats)]


def parquet_digest(folder: Path) -> tuple[int, str]:
    """(rows, sha256) over the folder's rows, sorted (part files in any order)."""
    table = ds.dataset(str(folder), format="parquet").to_table()
    lines = sorted(json.dumps(r, default=str, sort_keys=True) for r in table.to_pylist())
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


def parquet_ids(folder: Path, order_id: int) -> list[dict]:
    table = ds.dataset(str(folder), format="parquet").to_table()
    return [r for r in table.to_pylist() if r["id"] == order_id]


def unique_rejects_by_file(lab: Lab, job_id: str) -> dict[str, list[int]]:
    """The records each file lost to the unique rule (the job's files as recorded)."""
    files = lab.job_files(job_id)
    rows = [r for (r,) in lab.store_query(
        "SELECT row FROM pipeline_rejects WHERE job_id = ? AND rule = 'unique'", (job_id,))]
    out: dict[str, list[int]] = {}
    for row in rows:
        holder = max((f for f in files if f["first_record"] <= row), key=lambda f: f["first_record"])
        out.setdefault(Path(holder["path"]).name, []).append(row - holder["first_record"] + 1)
    return out


def worker_pids(client: Any) -> dict[str, int]:
    return client.run(os.getpid)


def wait_until(predicate, timeout: float = 90.0, every: float = 0.05, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(every)


def kill9_pid(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def ledger_batches(out: Path) -> list[int]:
    """Batch numbers the Parquet folder's ledger holds (committed part files)."""
    loads = out / "_etl_loads"
    if not loads.is_dir():
        return []
    found = []
    for entry in loads.glob("*.json"):
        stem = entry.stem
        if "-" in stem and not stem.startswith("."):
            number = stem.rsplit("-", 1)[1]
            if number.isdigit() and list(out.glob(f"part-*-{number}.parquet")):
                found.append(int(number))
    return sorted(found)


# -- killing a worker mid-part ---------------------------------------------------------
SMALL_BATCHES = {"PIPELINE_BATCH_SIZE_MIN": "200", "PIPELINE_BATCH_SIZE_MAX": "200",
                 "PIPELINE_CHUNK_SIZE": "200"}


def job_id_of(lab: Lab) -> str | None:
    ids = lab.job_ids()
    return next(iter(ids)) if ids else None


def recorded_parts(lab: Lab, job_id: str) -> list[dict]:
    return [json.loads(d) for (d,) in lab.store_query(
        "SELECT checkpoint_data FROM pipeline_checkpoints WHERE job_id = ? AND phase = 'part' "
        "ORDER BY id", (job_id,))]


def kill_worker_mid_part(client: Any, proc: Any, lab: Lab, held: Any) -> int:
    """SIGKILL the worker process running a part of the lab's job once that part has
    committed two batches (``held()``: the batch numbers the destination's ledger holds);
    returns the part. Fails if the job ends first."""
    from etlconsole.engine.executors.cluster import _executing
    from etlconsole.engine.executors.parts import part_of
    while proc.poll() is None:
        job_id = job_id_of(lab)
        if job_id is not None:
            counts = Counter(part_of(n) for n in held())
            for addr, keys in client.run(_executing).items():
                for key in keys:
                    if key.startswith("part-") and key.endswith(job_id):
                        part = int(key.split("-")[1])
                        if counts[part] >= 2:
                            pid = client.run(os.getpid, workers=[addr])[addr]
                            os.kill(pid, signal.SIGKILL)
                            return part
        time.sleep(0.02)
    raise AssertionError("the job ended before a worker could be killed mid-part")
