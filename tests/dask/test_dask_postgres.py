"""The issue's acceptance: a drop of 6 files (2 gzipped) loads into PostgreSQL with
``--executor dask --workers 2`` with the same table digest and the same rejects as
``--executor local``; and again when one worker is SIGKILLed mid-job."""

from __future__ import annotations

import json
from pathlib import Path

from daskkit import SMALL_BATCHES, DropLab, kill_worker_mid_part, recorded_parts
from postgres.pg import PASSWORD
from postgres.pgkit import pg_digest, pg_pipeline_text


class PgDropLab(DropLab):
    def __init__(self, folder: Path, drop: Path, pg, db: str):
        self.pg, self.db = pg, db
        super().__init__(folder, drop)
        self.env = {"PGPASSWORD": PASSWORD}

    def write_pipeline(self, name: str, source: Path, **kw) -> Path:
        path = self.folder / name
        path.write_text(pg_pipeline_text(Path(source), self.pg.url(self.db)), encoding="utf-8")
        return path

    def digest(self) -> tuple[int, str]:
        return pg_digest(self.pg, self.db)

    def held(self) -> list[int]:
        """Batch numbers the database's ledger holds for the lab's job."""
        try:
            return [n for (n,) in self.pg.execute("SELECT batch FROM _etl_loads", db=self.db)]
        except Exception:       # the ledger is not made yet
            return []


def test_a_drop_into_postgres_with_two_dask_workers_matches_local(tmp_path, drop, pg_server):
    local = PgDropLab(tmp_path / "local", drop, pg_server, pg_server.new_database())
    expected = local.run_with("--executor", "local")
    lab = PgDropLab(tmp_path / "dask", drop, pg_server, pg_server.new_database())
    got = lab.run_with("--executor", "dask", "--workers", "2")
    assert got["status"] == "succeeded" and got["parts"] == 6
    assert got["rows_loaded"] == expected["rows_loaded"]
    assert lab.digest() == local.digest()
    assert lab.rejects_of(got["job_id"]) == local.rejects_of(expected["job_id"])
    files = lab.job_files(got["job_id"])
    assert sum(1 for f in files if f["compression"] == "gzip") == 2


def test_the_same_after_a_worker_is_killed_mid_job(tmp_path, big_drop, pg_server, cluster):
    local = PgDropLab(tmp_path / "local", big_drop, pg_server, pg_server.new_database())
    expected = local.run_with("--executor", "local")
    lab = PgDropLab(tmp_path / "dask", big_drop, pg_server, pg_server.new_database())
    lab.env.update(SMALL_BATCHES)
    proc = lab.spawn("run", lab.pipeline, "--no-ui", "--json", "--executor", "dask",
                     "--scheduler", cluster.scheduler.address)
    part = kill_worker_mid_part(cluster, proc, lab, lab.held)
    assert proc.wait(timeout=120) == 0, proc.err_path.read_text()[-3000:]
    got = json.loads(proc.out_path.read_text().strip().splitlines()[-1])
    assert got["status"] == "succeeded"
    assert lab.digest() == local.digest()
    assert lab.rejects_of(got["job_id"]) == local.rejects_of(expected["job_id"])
    parts = {p["part"]: p for p in recorded_parts(lab, got["job_id"])}
    assert len(parts[part]["skipped"]) >= 2
