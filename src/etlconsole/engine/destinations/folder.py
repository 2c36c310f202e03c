"""Folder destinations (``parquet``, ``csv``): a dataset folder, one part file per batch.

The folder is its own ledger. Layout::

    <path>/part-<job>-<batch:08d>.<ext>     a committed batch (visible to readers)
    <path>/_etl_loads/<job>-<batch:08d>.json    its ledger entry: rows, source records
    <path>/_etl_loads/<job>.created         the job created the folder (rollback removes it)
    <path>/_etl_stage_<job>/part-…          atomic/replace: batches waiting for the publish
    <path>/_etl_replaced_<job>/…            replace: the data files the job replaced
    <path>/.part-<job>-<batch:08d>.<ext>.tmp    being written

Dataset readers (pyarrow.dataset, Spark, DuckDB globs on ``*.parquet``) skip names that
start with ``_`` or ``.``, so staging, ledger and temporary files are never read as data.

A batch commits in three steps: its data is written to a temporary name and fsynced;
its ledger entry is written (temporary name, then ``os.replace``); then ``os.replace``
gives the data file its part name — that rename is the commit. A ledger entry counts only
when its part file exists, so a kill -9 at any moment leaves the batch either committed
(part and entry) or not (at most a temporary file and an entry that does not count, both
overwritten when resume produces the batch again): exactly once.

Modes: ``append`` renames parts straight into the folder (visible as they commit).
``atomic`` commits them into ``_etl_stage_<job>/`` and publishes at the end by renaming
each into the folder (a publish cut short by a kill is finished by resume, or undone by
rollback). ``replace`` is atomic, and the publish first moves the folder's other data files
into ``_etl_replaced_<job>/`` (rollback moves them back; cleanup deletes them past the
retention period, like SQLite's ``_etl_replaced_`` tables).

Rollback deletes part files first, ledger entries second, so a rollback cut short is
finished by running it again.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from .base import (Destination, DestinationBusy, DestinationError, DestinationFailed,
                   DestinationUnusable, LedgerEntry, Leftover, RollbackReport, WriteResult,
                   probe_writable)

LOADS = "_etl_loads"
STAGE_PREFIX = "_etl_stage_"
REPLACED_PREFIX = "_etl_replaced_"


def _stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _fsync_file(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def part_name(job_id: str, batch: int, ext: str) -> str:
    return f"part-{job_id}-{batch:08d}.{ext}"


def _part_re(ext: str, job_id: str | None = None) -> re.Pattern:
    job = re.escape(job_id) if job_id else r"[0-9A-Za-z]+"
    return re.compile(rf"^part-({job})-(\d{{8}})\.{re.escape(ext)}$")


# A busy or interrupted file system call may work when tried again; nothing else will.
_TRANSIENT_ERRNO = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT}


class FolderDestination(Destination):
    """A dataset folder of part files; subclasses say how a part file is written."""

    kind = "folder"
    title = "a dataset folder"
    ext = "dat"
    parallel_writers = True     # a part file and a ledger entry per batch, renamed into place

    def __init__(self, path: Path, job_id: str, **kw):
        kw.pop("table", None)
        super().__init__(path, job_id, **kw)
        self.stage = self.path / f"{STAGE_PREFIX}{job_id}"
        self.write_dir = self.path if self.mode == "append" else self.stage
        self._schema: pa.Schema | None = None

    # -- format-specific ------------------------------------------------------------
    def _write_file(self, path: Path, batch: pa.RecordBatch, schema: pa.Schema) -> None:
        raise NotImplementedError

    def _read_columns(self, path: Path) -> list[tuple[str, str]]:
        """(name, type) of an existing data file, to refuse an incompatible append."""
        raise NotImplementedError

    def _columns(self, schema: pa.Schema) -> list[tuple[str, str]]:
        raise NotImplementedError

    # -- before anything is written ---------------------------------------------------
    def check(self, schema: pa.Schema) -> None:
        if not self.path.parent.is_dir():
            raise DestinationUnusable(f"{self.path}: destination folder's parent does not exist")
        if self.path.exists() and not self.path.is_dir():
            raise DestinationUnusable(f"{self.path}: exists and is not a folder; a {self.kind} "
                                      "destination is a dataset folder of part files")
        probe_writable(self.path if self.path.is_dir() else self.path.parent, "destination")
        if self.path.is_dir() and (self.path / LOADS).is_dir():
            probe_writable(self.path / LOADS, "destination's ledger")
        if self.mode == "replace" or not self.path.is_dir():
            return
        existing = sorted(p for p in self.path.iterdir()
                          if p.suffix == f".{self.ext}" and not p.name.startswith((".", "_")))
        if not existing:
            return
        try:
            have = self._read_columns(existing[-1])
        except Exception as exc:
            raise DestinationUnusable(f"{existing[-1]}: cannot read this {self.kind} file: "
                                      f"{exc}") from None
        want = self._columns(schema)
        if have != want:
            raise DestinationUnusable(
                f"{self.path}: the dataset's files have columns "
                f"{', '.join(f'{n} {t}' for n, t in have)}; this job would write "
                f"{', '.join(f'{n} {t}' for n, t in want)}. Use mode = \"replace\" or "
                "another folder")

    def open(self, schema: pa.Schema) -> None:
        self._schema = schema
        created = not self.path.exists()
        try:
            self.path.mkdir(exist_ok=True)
            (self.path / LOADS).mkdir(exist_ok=True)
            if created:
                (self.path / LOADS / f"{self.job_id}.created").write_text(_stamp())
            if self.mode != "append":
                self.stage.mkdir(exist_ok=True)
            _fsync_dir(self.path.parent)
            _fsync_dir(self.path)
        except OSError as exc:
            raise self.classify(exc) from exc

    def classify(self, exc: Exception) -> DestinationError:
        message = f"{self.path}: {exc}".splitlines()[0]
        if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNO:
            return DestinationBusy(message)
        return DestinationFailed(message)

    # -- per batch ------------------------------------------------------------------
    def write(self, batch_number: int, batch: pa.RecordBatch, row_start: int, row_end: int, *,
              before_commit=None) -> WriteResult:
        """Commit one batch (data file and ledger entry); returns the number of attempts.
        ``before_commit(refused)`` runs just before the commit rename (a folder refuses no
        row, so it gets [])."""
        # Every step overwrites what a failed attempt left: safe to retry.
        return WriteResult(self.retrying(self._write_once, batch_number, batch, row_start,
                                         row_end, before_commit)[0])

    def _write_once(self, batch_number: int, batch: pa.RecordBatch, row_start: int,
                    row_end: int, before_commit) -> None:
        name = part_name(self.job_id, batch_number, self.ext)
        tmp = self.write_dir / f".{name}.tmp"
        entry = {"job_id": self.job_id, "batch": batch_number, "row_start": row_start,
                 "row_end": row_end, "rows": batch.num_rows, "file": name,
                 "committed_at": _stamp()}
        loads = self.path / LOADS
        ledger_tmp = loads / f".{self.job_id}-{batch_number:08d}.json.tmp"
        self._write_file(tmp, batch, self._schema or batch.schema)
        _fsync_file(tmp)
        ledger_tmp.write_text(json.dumps(entry), encoding="utf-8")
        _fsync_file(ledger_tmp)
        os.replace(ledger_tmp, loads / f"{self.job_id}-{batch_number:08d}.json")
        _fsync_dir(loads)
        if before_commit is not None:
            before_commit([])
        os.replace(tmp, self.write_dir / name)          # the commit
        _fsync_dir(self.write_dir)

    # -- the end ----------------------------------------------------------------------
    def publish(self, schema: pa.Schema) -> None:
        if self.mode == "append" or not self.stage.is_dir():
            return                                   # nothing staged, or published already
        try:
            if self.mode == "replace":
                backup = self.path / f"{REPLACED_PREFIX}{self.job_id}"
                backup.mkdir(exist_ok=True)
                mine = _part_re(self.ext, self.job_id)
                for p in sorted(self.path.iterdir()):
                    if (p.is_file() and p.suffix == f".{self.ext}" and not mine.match(p.name)
                            and not p.name.startswith((".", "_"))):
                        os.replace(p, backup / p.name)
                _fsync_dir(backup)
            for p in sorted(self.stage.iterdir()):
                if _part_re(self.ext, self.job_id).match(p.name):
                    os.replace(p, self.path / p.name)
            _fsync_dir(self.path)
            shutil.rmtree(self.stage)
        except OSError as exc:
            raise DestinationFailed(f"{self.path}: publish of job {self.job_id}: {exc}") from exc

    # -- the recovery half ------------------------------------------------------------
    @classmethod
    def read_ledger(cls, path: Path, job_id: str,
                    batches: tuple[int, int] | None = None) -> list[LedgerEntry]:
        return [LedgerEntry(e["batch"], e["row_start"], e["row_end"], e["rows"], e["table_name"])
                for e in committed(Path(path), job_id, batches)]

    def ledger_of(self, first: int, last: int) -> list[LedgerEntry]:
        """Only the entries numbered ``first`` to ``last`` are read (their numbers are in
        their names): a part of a job of 2,000 files reads its own, not ~80 per file before it."""
        return self.read_ledger(self.path, self.job_id, (first, last))

    @classmethod
    def rollback(cls, path: Path, job_id: str, *, after_batch: int | None = None,
                 dry_run: bool = False, timeout_ms: int = 30_000) -> RollbackReport:
        return rollback(Path(path), job_id, after_batch=after_batch, dry_run=dry_run, kind=cls.kind)

    @classmethod
    def leftovers(cls, path: Path) -> list[Leftover]:
        return [Leftover(name, job, "stage" if name.startswith(STAGE_PREFIX) else "replaced")
                for name, job in etl_tables(Path(path))]

    @classmethod
    def remove_leftover(cls, path: Path, leftover: Leftover, timeout_ms: int = 30_000) -> None:
        drop_table(Path(path), leftover.name)


# -- reading and undoing a job's effect ----------------------------------------------
def _entries(path: Path, job_id: str, batches: tuple[int, int] | None = None) -> list[dict]:
    """The job's ledger entries (``batches``: those numbered first to last only)."""
    loads = path / LOADS
    try:
        names = os.listdir(loads)
    except (FileNotFoundError, NotADirectoryError):
        return []
    # Names, not a glob's sorted Paths: a Dask part of a drop of 2,000 files lists the
    # ledger to find its own few entries, and building and sorting a Path per entry of
    # every part before it was ~30% of such a part's time.
    first, last = batches if batches is not None else (0, float("inf"))
    numbered = sorted((n, name) for name in names if name.startswith(f"{job_id}-")
                      and name.endswith(".json") and first <= (n := _batch_of(name, job_id)) <= last)
    out = []
    for _, name in numbered:
        f = loads / name
        try:
            out.append(json.loads(f.read_text(encoding="utf-8")) | {"_ledger": f})
        except (OSError, ValueError):
            continue      # cannot happen after os.replace; a torn file is not an entry
    return out


def _batch_of(entry_name: str, job_id: str) -> int:
    """The batch number in a ledger entry's name (``<job>-<batch:08d>.json``); -1: not one."""
    digits = entry_name[len(job_id) + 1:-len(".json")]
    return int(digits) if digits.isdigit() else -1


def _part_paths(path: Path, job_id: str, entry: dict) -> list[Path]:
    name = entry["file"]
    return [p for p in (path / name, path / f"{STAGE_PREFIX}{job_id}" / name) if p.exists()]


def committed(path: Path, job_id: str, batches: tuple[int, int] | None = None) -> list[dict]:
    """The job's committed batches in this folder (``batches``: numbered first to last
    only): entries whose part file exists."""
    path = Path(path)
    out = []
    for e in _entries(path, job_id, batches):
        if _part_paths(path, job_id, e):
            out.append({"table_name": path.name, "batch": e["batch"],
                        "row_start": e["row_start"], "row_end": e["row_end"], "rows": e["rows"],
                        "file": e["file"]})
    return sorted(out, key=lambda e: e["batch"])


def rollback(path: Path, job_id: str, *, after_batch: int | None = None, dry_run: bool = False,
             kind: str = "folder", **_ignored) -> RollbackReport:
    """Delete the job's part files (of batches after `after_batch`, or all), then their
    ledger entries; a full rollback also drops its staging folder, restores what it
    replaced and removes the folder if the job created it and nothing else is in it."""
    path = Path(path)
    report = RollbackReport(str(path), kind)
    if not path.is_dir():
        return report
    limit = -1 if after_batch is None else after_batch
    rows = 0
    try:
        for e in _entries(path, job_id):
            if e["batch"] <= limit:
                continue
            parts = _part_paths(path, job_id, e)
            if parts:
                report.batches += 1
                rows += e["rows"]
            if not dry_run:
                for p in parts:
                    p.unlink(missing_ok=True)
                _fsync_dir(path)
                e["_ledger"].unlink(missing_ok=True)
        report.rows[path.name] = rows
        if after_batch is None:
            _undo_folder(path, job_id, report, dry_run)
    except OSError as exc:
        raise DestinationFailed(f"{path}: rollback of job {job_id} failed: {exc}") from exc
    return report


def _undo_folder(path: Path, job_id: str, report: RollbackReport, dry_run: bool) -> None:
    stage = path / f"{STAGE_PREFIX}{job_id}"
    if stage.exists():
        report.dropped.append(stage.name)
        if not dry_run:
            shutil.rmtree(stage, ignore_errors=True)
    backup = path / f"{REPLACED_PREFIX}{job_id}"
    if backup.is_dir():
        report.restored.append(f"{len(list(backup.iterdir()))} data file(s) the job replaced")
        if not dry_run:
            for p in sorted(backup.iterdir()):
                os.replace(p, path / p.name)
            backup.rmdir()
    for tmp in path.glob(f".part-{job_id}-*.tmp"):
        if not dry_run:
            tmp.unlink(missing_ok=True)
    loads = path / LOADS
    marker = loads / f"{job_id}.created"
    if marker.exists():
        others = [p for p in path.iterdir() if p.name != LOADS]
        ledger_left = [p for p in loads.iterdir() if p != marker and not (
            p.name.startswith(f"{job_id}-") or p.name.startswith(f".{job_id}-"))]
        if not others and not ledger_left:
            report.dropped.append(str(path))
            if not dry_run:
                shutil.rmtree(path)
            return
        if not dry_run:
            marker.unlink(missing_ok=True)
    if not dry_run and loads.is_dir():
        for p in loads.glob(f".{job_id}-*.tmp"):
            p.unlink(missing_ok=True)


def etl_tables(path: Path) -> list[tuple[str, str]]:
    """(folder name, job id) of every staging or replaced-files folder (for cleanup)."""
    path = Path(path)
    if not path.is_dir():
        return []
    found = []
    for p in path.iterdir():
        for prefix in (STAGE_PREFIX, REPLACED_PREFIX):
            if p.is_dir() and p.name.startswith(prefix):
                found.append((p.name, p.name[len(prefix):]))
    return found


def drop_table(path: Path, name: str, timeout_ms: int = 0) -> None:
    shutil.rmtree(Path(path) / name, ignore_errors=True)
