"""A destination in one module: a folder of Arrow IPC files, one per committed batch.

Each file is its own ledger entry: ``<job>-<batch>.arrow`` carries the batch's source
records in its schema metadata and is committed by one rename, so what the folder holds is
exactly what the ledger says. Append only (``check`` refuses the other modes).

Set ``ARROW_DEST_FAIL_AT=N`` to make the write of batch N fail (a terminal error), for
the test of resume after a failure.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc

from etlconsole.engine.destinations import (Destination, DestinationError, DestinationFailed,
                                            DestinationUnusable, LedgerEntry, RollbackReport,
                                            WriteResult, probe_writable)

_NAME = re.compile(r"^(?P<job>[0-9A-Za-z]+)-(?P<batch>\d{8})\.arrow$")
CREATED = "_created-{job}"          # the job made the folder: a full rollback removes it


class ArrowDestination(Destination):
    kind = "arrow"
    title = "Arrow IPC"

    def check(self, schema: pa.Schema) -> None:
        if self.mode != "append":
            raise DestinationUnusable(f"{self.path}: the arrow destination only appends")
        if not self.path.parent.is_dir():
            raise DestinationUnusable(f"{self.path}: the folder's parent does not exist")
        probe_writable(self.path if self.path.is_dir() else self.path.parent, "destination")

    def open(self, schema: pa.Schema) -> None:
        try:
            if not self.path.exists():
                self.path.mkdir()
                (self.path / CREATED.format(job=self.job_id)).touch()
        except OSError as exc:
            raise self.classify(exc) from exc

    def classify(self, exc: Exception) -> DestinationError:
        return DestinationFailed(f"{self.path}: {exc}")

    def write(self, batch_number, batch, row_start, row_end, *, before_commit=None):
        return WriteResult(self.retrying(self._write, batch_number, batch, row_start, row_end,
                                         before_commit)[0])

    def _write(self, batch_number, batch, row_start, row_end, before_commit) -> None:
        if os.environ.get("ARROW_DEST_FAIL_AT") == str(batch_number):
            raise DestinationFailed(f"{self.path}: batch {batch_number}: failing as asked")
        name = f"{self.job_id}-{batch_number:08d}.arrow"
        tmp = self.path / f".{name}.tmp"
        meta = {"row_start": str(row_start), "row_end": str(row_end), "rows": str(batch.num_rows)}
        schema = batch.schema.with_metadata(meta)
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as w:
            w.write_batch(batch)
        if before_commit is not None:
            before_commit([])
        os.replace(tmp, self.path / name)               # the commit

    @classmethod
    def read_ledger(cls, path: Path, job_id: str) -> list[LedgerEntry]:
        out = []
        for f in sorted(Path(path).glob(f"{job_id}-*.arrow")) if Path(path).is_dir() else []:
            meta = pa.ipc.open_file(str(f)).schema.metadata
            out.append(LedgerEntry(int(_NAME.match(f.name)["batch"]), int(meta[b"row_start"]),
                                   int(meta[b"row_end"]), int(meta[b"rows"]), Path(path).name))
        return out

    @classmethod
    def rollback(cls, path: Path, job_id: str, *, after_batch=None, dry_run=False,
                 timeout_ms=30_000) -> RollbackReport:
        path = Path(path)
        report = RollbackReport(str(path), cls.kind)
        gone = [e for e in cls.read_ledger(path, job_id) if e.batch > (after_batch or 0)]
        report.batches, report.rows[path.name] = len(gone), sum(e.rows for e in gone)
        if not dry_run:
            for e in gone:
                (path / f"{job_id}-{e.batch:08d}.arrow").unlink(missing_ok=True)
        marker = path / CREATED.format(job=job_id)
        if after_batch is None and marker.exists() and [p for p in path.iterdir()] == [marker]:
            report.dropped.append(str(path))
            if not dry_run:
                marker.unlink()
                path.rmdir()
        return report
