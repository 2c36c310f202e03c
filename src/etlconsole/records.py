"""Typed records of the state store and of the library's results (issue 13, ADR 0023).

What the CLI prints and the console shows is built from these, not from dicts looked up
by string keys: each record knows its JSON (``to_json``: exactly what ``--json`` printed
before) and its text lines (``lines``), so there is one printer of a run summary, one of
a rollback, one rejects-CSV writer. The store may import this module (it imports nothing
from the engine); the engine's own typed results (``RollbackReport``, ``LedgerEntry``)
stay in ``engine/destinations/base.py`` and reach these records as their ``to_dict()``.

Records are frozen: a value read from the store or returned by a run is a snapshot.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .progress import fmt_duration


class JobStatus(StrEnum):
    """A job's status. A ``str`` enum: the store's text, the JSON and every comparison
    with a plain string stay what they were (``JobStatus.SUCCEEDED == "succeeded"``)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    ROLLED_BACK = "rolled_back"

    @property
    def active(self) -> bool:
        """A process is (or claims to be) working on the job."""
        return self in ACTIVE

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for a job that ended so: 0 only when it succeeded."""
        return 0 if self is JobStatus.SUCCEEDED else 1


ACTIVE = frozenset({JobStatus.RUNNING, JobStatus.PENDING})
# Ended without success: what cleanup may tidy after the retention period.
UNFINISHED = frozenset({JobStatus.FAILED, JobStatus.INTERRUPTED})


class BatchStatus(StrEnum):
    """A load batch's status (upper case in the store since its first schema)."""

    PENDING = "PENDING"
    COMMITTED = "COMMITTED"
    RETRYING = "RETRYING"       # allowed by the schema since its first version
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"


class ReplayStatus(StrEnum):
    """A replay's status (``pipeline_replays``)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class SegmentStatus(StrEnum):
    """How a run segment ended: a job status, or ``killed`` (its process died)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    KILLED = "killed"


def _frozen(row: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(row))


# -- jobs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """A job's row of ``import_jobs`` (JSON columns decoded). ``row`` keeps every column,
    so a column a later migration adds reaches ``to_json`` without a change here."""

    id: str
    status: JobStatus
    pipeline_name: str
    pipeline_file: str | None
    source_path: str | None
    destinations: list[dict[str, Any]]
    created_at: str
    updated_at: str | None
    started_at: str | None
    finished_at: str | None
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    rows_warned: int
    rows_resolved: int
    bytes_total: int | None
    bytes_read: int
    retries: int
    peak_rss_mb: float | None
    elapsed_s: float | None
    error: str | None
    resumable: bool
    pid: int | None
    phase_stats: list[dict[str, Any]]
    settings: dict[str, Any]
    row: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        return cls(
            id=row["id"], status=JobStatus(row["status"]), pipeline_name=row["pipeline_name"],
            pipeline_file=row.get("pipeline_file"), source_path=row.get("source_path"),
            destinations=list(row.get("destinations") or []), created_at=row["created_at"],
            updated_at=row.get("updated_at"),
            started_at=row.get("started_at"), finished_at=row.get("finished_at"),
            rows_read=row.get("rows_read") or 0, rows_loaded=row.get("rows_loaded") or 0,
            rows_rejected=row.get("rows_rejected") or 0, rows_warned=row.get("rows_warned") or 0,
            rows_resolved=row.get("rows_resolved") or 0, bytes_total=row.get("bytes_total"),
            bytes_read=row.get("bytes_read") or 0,
            retries=row.get("retries") or 0, peak_rss_mb=row.get("peak_rss_mb"),
            elapsed_s=row.get("elapsed_s"), error=row.get("error"),
            resumable=bool(row.get("resumable", 1)), pid=row.get("pid"),
            phase_stats=[p for p in row.get("phase_stats") or [] if isinstance(p, dict)],
            settings=dict(row.get("settings") or {}), row=_frozen(row))

    def to_json(self) -> dict[str, Any]:
        """The row as ``jobs --json`` prints it (the pipeline's text is left out)."""
        return {k: v for k, v in self.row.items() if k != "pipeline_toml"}

    def as_dict(self) -> dict[str, Any]:
        """The row as the engine's recovery functions take it (they predate records)."""
        return dict(self.row)

    LIST_HEADER = (f"{'JOB':<9} {'PIPELINE':<16} {'STATUS':<12} {'READ':>11} {'LOADED':>11} "
                   f"{'REJECTED':>9} {'STARTED':<20} {'TIME':>7}")

    def list_line(self) -> str:
        """The job's line in ``etlconsole jobs`` (under ``LIST_HEADER``)."""
        return (f"{self.id:<9} {self.pipeline_name[:16]:<16} {self.status:<12} {self.rows_read:>11,} "
                f"{self.rows_loaded:>11,} {self.rows_rejected:>9,} {(self.started_at or '')[:19]:<20} "
                f"{fmt_duration(self.elapsed_s):>7}")


@dataclass(frozen=True)
class PhaseLine:
    """One line of a job's phase table, as every view shows it: a branch's "out" is what
    its destination loaded and its rejects include the rows the destination refused."""

    label: str
    rows_in: int
    rows_out: int
    rejected: int
    seconds: float
    branch: str | None = None
    filtered: int = 0            # a branch's: rows its filter left out

    @classmethod
    def from_json(cls, p: Mapping[str, Any]) -> PhaseLine:
        if p.get("branch"):
            return cls(f"branch {p['branch']}", p["rows_in"], p["loaded"],
                       p["rejected"] + p["refused"], p.get("seconds", 0), p["branch"],
                       p.get("filtered", 0))
        return cls(p["label"], p["rows_in"], p["rows_out"], p["rejected"], p["seconds"])


def phase_lines(job: Job) -> list[PhaseLine]:
    return [PhaseLine.from_json(p) for p in job.phase_stats]


# -- batches, checkpoints, segments ------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    """A row of ``pipeline_batches``."""

    number: int
    status: BatchStatus
    row_start: int | None
    row_end: int | None
    rows_loaded: int
    rows_rejected: int
    attempts: int | None
    duration_ms: float | None
    row: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Batch:
        return cls(row["batch_number"], BatchStatus(row["status"]), row.get("row_start"),
                   row.get("row_end"), row.get("rows_loaded") or 0, row.get("rows_rejected") or 0,
                   row.get("attempts"), row.get("duration_ms"), _frozen(row))

    def to_json(self) -> dict[str, Any]:
        return dict(self.row)

    def line(self) -> str:
        return (f"{self.number:>6}  {self.status:<11} records {self.row_start:>11,}-"
                f"{self.row_end:<11,} loaded {self.rows_loaded:>9,}  rejected "
                f"{self.rows_rejected:>7,}  attempts {self.attempts}  "
                f"{(self.duration_ms or 0) / 1000:.2f}s")


@dataclass(frozen=True)
class Checkpoint:
    """A row of ``pipeline_checkpoints``; ``number`` is its number in the job (what
    ``rollback --to`` takes), the store-wide id for a row from before numbers were kept."""

    id: int
    number: int
    phase: str
    batch: int
    last_row: int
    rows_loaded: int
    created_at: str
    data: Mapping[str, Any]
    row: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Checkpoint:
        d = row["checkpoint_data"]
        number = row["number"] if row.get("number") is not None else row["id"]
        return cls(row["id"], number, row["phase"], d["batch"], d["last_row"], d["rows_loaded"],
                   row["created_at"], _frozen(d), _frozen(row))

    def to_json(self) -> dict[str, Any]:
        return {**self.row, "checkpoint_data": dict(self.data)}

    def line(self) -> str:
        return (f"{self.number:>6}  {self.phase:<6} batch {self.batch:>5}  "
                f"last row {self.last_row:>11,}  "
                f"loaded {self.rows_loaded:>11,}  {self.created_at}")


@dataclass(frozen=True)
class Segment:
    """A run segment of a job: the run, then each resume."""

    kind: str
    elapsed_s: float | None
    rows_at_start: int
    rows_at_end: int | None
    started_at: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Segment:
        return cls(row["kind"], row.get("elapsed_s"), row.get("rows_at_start") or 0,
                   row.get("rows_at_end"), row["started_at"])


def _secs(seconds: float | None) -> str:
    """A short run to the hundredth ('0.14s', not '0s')."""
    if seconds is not None and seconds < 60:
        return f"{seconds:.2f}s"
    return fmt_duration(seconds)


@dataclass(frozen=True)
class JobDetails:
    """Everything ``show`` tells about a job: its record, what its conditions decided,
    its replays, checkpoints, events, run segments and what the samples measured."""

    job: Job
    skipped: list[str]
    conditions: list[dict[str, Any]]
    replays: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    events: list[dict[str, Any]]
    segments: list[Segment]
    segment_rows: list[dict[str, Any]]
    batches: int
    rss_samples: list[float | None]
    rate_samples: list[float | None]
    file_lines: list[str] = field(default_factory=list)   # a source of many files: each one

    def to_json(self) -> dict[str, Any]:
        return {**self.job.to_json(), "skipped": self.skipped, "conditions": self.conditions,
                "replays": self.replays, "checkpoints": self.checkpoints, "events": self.events,
                "segments": self.segment_rows, "batches": self.batches,
                "metrics": {"samples": len(self.rss_samples),
                            "max_rss_mb": max(self.rss_samples, default=None),  # type: ignore[type-var]
                            "max_rows_per_s": max(self.rate_samples, default=None)}}  # type: ignore[type-var]

    def memory_text(self) -> str:
        """The peak RSS the engine measured at its end; before that (running, or killed),
        what the samples saw, never a made-up 0."""
        if self.job.peak_rss_mb:
            return f"peak RSS {self.job.peak_rss_mb:.0f} MB"
        sampled = [m for m in self.rss_samples if m]
        if not sampled:
            return "RSS not sampled"
        return f"RSS {sampled[-1]:.0f} MB last sampled, {max(sampled):.0f} MB at most"

    def time_text(self) -> str:
        """'ran 12.30s'; for a job still running, its time so far (earlier segments plus
        the one under way)."""
        segments = self.segments
        if self.job.status.active and segments and segments[-1].elapsed_s is None:
            started = datetime.fromisoformat(segments[-1].started_at)
            now = (datetime.now(timezone.utc) - started).total_seconds()
            return f"running for {_secs(sum(g.elapsed_s or 0 for g in segments) + now)}"
        return f"ran {_secs(self.job.elapsed_s)}"

    def segments_text(self) -> str:
        """'3 segments: run 1m 2s (0-41,000), resume 30s (41,000-100,000), ...'"""
        parts = []
        for g in self.segments:
            end = f"{g.rows_at_end:,}" if g.rows_at_end is not None else "?"
            parts.append(f"{g.kind} {_secs(g.elapsed_s)} (records {g.rows_at_start:,}-{end})")
        return f"{len(self.segments)} segments: " + ", ".join(parts)

    def lines(self) -> list[str]:
        """``show``'s text."""
        j = self.job
        out = [f"job {j.id}  {j.status}  pipeline {j.pipeline_name} ({j.pipeline_file})",
               f"  source     {j.source_path}  ({j.bytes_total or 0:,} bytes)"]
        out += [f"    file     {line}" for line in self.file_lines]
        for d in j.destinations:
            path, table = named(d, d.get("table"))
            table = f" table {table}" if table else ""
            out.append(f"  dest       {d['kind']}: {path}{table} mode {d['mode']}")
        out.append(f"  started    {j.started_at}  finished {j.finished_at}  ({self.time_text()})")
        if len(self.segments) > 1:
            out.append(f"  ran        {self.segments_text()}")
        out.append(f"  rows       read {j.rows_read:,}  loaded {j.rows_loaded:,}  "
                   f"rejected {j.rows_rejected:,}  warned {j.rows_warned:,}"
                   + (f"  resolved {j.rows_resolved:,} (loaded by replays; counted as loaded)"
                      if j.rows_resolved else ""))
        for r in self.replays:
            out.append(f"  replay {r['number']:<3} {r['status']:<11} loaded {r['rows_loaded']:,}  "
                       f"rejected again {r['rows_rejected']:,}  refused {r['rows_refused']:,}  "
                       f"{(r['created_at'] or '')[:19]}  {r['origin'] or ''}")
        out.append(f"  memory     {self.memory_text()} "
                   f"(budget {j.settings['max_memory_mb']} MB)  retries {j.retries}")
        if j.error:
            out.append(f"  error      {j.error}")
        if j.phase_stats:
            out.append("  phases (busy: time at work; phases overlap, so these add up to more "
                       "than the job's)")
        for p in phase_lines(j):
            if p.branch:      # a branch: its filter, phases and destination
                out.append(f"    branch {p.branch:<17} in {p.rows_in:>10,}  filtered "
                           f"{p.filtered:>10,}  rejected {p.rejected:>8,}  "
                           f"loaded {p.rows_out:>10,}  {p.seconds:.2f}s")
                continue
            out.append(f"    {p.label:<24} in {p.rows_in:>10,}  out {p.rows_out:>10,}  "
                       f"rejected {p.rejected:>8,}  {p.seconds:.2f}s")
        for c in self.conditions:
            out.append(f"  when       {c['phase']}: {'runs' if c['holds'] else 'skipped'} "
                       f"({'; '.join(x['why'] for x in c['checks'])})")
        for why in self.skipped:
            out.append(f"  skipped    {why}")
        out.append(f"  checkpoints {len(self.checkpoints)}  (etlconsole checkpoints {j.id})")
        if j.status is JobStatus.ROLLED_BACK:
            out.append("  rolled back: the figures above are what the job did before it was undone")
        out.append("  events")
        for e in self.events[-15:]:
            detail = ", ".join(f"{k}={v}" for k, v in e["details"].items()
                               if v is not None and k != "traceback")
            out.append(f"    {e['at'][11:19]} {e['level']:<5} {e['event']} {detail}")
        return out


# -- rejects -------------------------------------------------------------------------------
REJECT_CSV_COLUMNS = ("row", "phase", "rule", "column", "message", "values")


@dataclass(frozen=True)
class Reject:
    """A rejected row: where (record number, phase, rule, column), why, and its values;
    ``resolved_by``: the replay that loaded it since, if any."""

    row: int | None
    phase: str
    rule: str
    column: str | None
    message: str
    values: Any
    resolved_by: int | None = None
    resolved_at: str | None = None

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> Reject:
        return cls(r["row"], r["phase"], r["rule"], r["column"], r["message"], r["values"],
                   r.get("resolved_by"), r.get("resolved_at"))

    def resolved(self, by: int | None, at: str | None) -> Reject:
        return Reject(self.row, self.phase, self.rule, self.column, self.message, self.values,
                      by, at)

    def to_json(self) -> dict[str, Any]:
        """``rejects --json``'s line: the one place its keys are chosen."""
        return {"row": self.row, "phase": self.phase, "rule": self.rule, "column": self.column,
                "message": self.message, "values": self.values,
                "resolved_by": self.resolved_by, "resolved_at": self.resolved_at}

    def where(self) -> str:
        """'phase/rule/column' (no column: 'phase/rule')."""
        return f"{self.phase}/{self.rule}" + (f"/{self.column}" if self.column else "")

    def line(self) -> str:
        return (f"row {self.row}: {self.where()}: {self.message}"
                + (f"  [resolved by replay {self.resolved_by}]" if self.resolved_by else ""))

    def csv_row(self) -> list[Any]:
        return [self.row, self.phase, self.rule, self.column, self.message,
                json.dumps(self.values, ensure_ascii=False)]


def write_rejects_csv(rejects: Iterable[Reject], path: Path) -> int:
    """The rejects as CSV (``REJECT_CSV_COLUMNS``), for the CLI's ``rejects --csv`` and the
    console's export alike; returns the rows written."""
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(REJECT_CSV_COLUMNS)
        for r in rejects:
            w.writerow(r.csv_row())
            n += 1
    return n


# -- results of the library's actions ----------------------------------------------------------
@dataclass(frozen=True)
class FixFile:
    """A fix file written (``rejects JOB --fix``): the job's open rejects as the source had
    them. ``raw``: rows kept as raw text (``_etl_raw``); ``unnumbered``: rejects without a
    record number, left out; ``note``: what the operator should know about the file."""

    job_id: str
    path: Path
    rows: int
    raw: int
    unnumbered: int
    note: str | None

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "file": str(self.path), "rows": self.rows, "raw": self.raw,
                "unnumbered": self.unnumbered, "note": self.note}

    def lines(self) -> list[str]:
        raw = f" ({self.raw:,} as raw text in _etl_raw)" if self.raw else ""
        out = [f"wrote {self.rows:,} open rejects of job {self.job_id} to {self.path}{raw}"]
        if self.unnumbered:
            out.append(f"  {self.unnumbered:,} rejects without a record number are left out")
        if self.note:
            out.append(f"  note: {self.note}")
        out.append(f"  fix them, then: etlconsole replay {self.job_id} {self.path} --dry-run")
        return out

# How a recorded destination ({"kind", "path", ...}) and one of its tables are named for
# people: (location, table left to name after it). Each destination class knows its own
# (PostgreSQL: postgres://host/db schema.table whole); the records may not import the engine
# (the layers' contracts), so the library facade installs the engine's namer (api.py) and a
# record read without it names a destination by its stored path.
Namer = Callable[[Mapping[str, Any], "str | None"], "tuple[str, str | None]"]
_namer: Namer = lambda record, table: (str(record.get("path", "")), table)  # noqa: E731


def set_destination_namer(namer: Namer) -> None:
    global _namer
    _namer = namer


def named(record: Mapping[str, Any], table: str | None) -> tuple[str, str | None]:
    return _namer(record, table)


@dataclass(frozen=True)
class RunSummary:
    """What a run, resume or rerun reports at its end. ``data`` is the engine's summary as
    it was printed by ``--json``; the fields are the ones the text and the exit code use."""

    job_id: str
    status: JobStatus
    error: str | None
    data: Mapping[str, Any] = field(repr=False, compare=False)
    message: str | None = None       # resume of a job that needs none: why

    @classmethod
    def from_dict(cls, s: Mapping[str, Any]) -> RunSummary:
        return cls(s["job_id"], JobStatus(s["status"]), s.get("error"), _frozen(s),
                   s.get("message") if s.get("nothing_to_do") else None)

    @property
    def nothing_to_do(self) -> bool:
        return self.message is not None

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)

    def lines(self) -> list[str]:
        """The summary's text (stdout of ``run``, ``resume``, ``rerun``, ``demo``)."""
        if self.message is not None:
            return [self.message]
        s = self.data
        dest = s["destination"]
        out = [f"job {self.job_id} {self.status} in {s['elapsed_s']:.2f}s",
               f"  rows read      {s['rows_read']:>12,}"]
        path, table = named(dest, dest.get("table"))
        where = (f" (table {table})" if table else "" if dest.get("table")
                 else f" ({dest.get('kind')})")
        out.append(f"  rows loaded    {s['rows_loaded']:>12,}  -> {path}{where}")
        if s.get("rows_staged"):
            out.append(f"  rows staged    {s['rows_staged']:>12,}  (not published: resume to "
                       "publish them)")
        out.append(f"  rows rejected  {s['rows_rejected']:>12,}")
        if s.get("rows_warned"):
            out.append(f"  rows warned    {s['rows_warned']:>12,}")
        out.append(f"  throughput     {s['rows_per_s'] or 0:>12,.0f} rows/s, peak RSS "
                   f"{s['peak_rss_mb']:.0f} MB, retries {s['retries']}")
        return out

    def error_line(self) -> str | None:
        """The one line on stderr for a job that did not succeed."""
        if self.status is JobStatus.SUCCEEDED:
            return None
        return f"error: job {self.job_id} {self.status}: {self.error}"


@dataclass(frozen=True)
class RollbackSummary:
    """A rollback of a job (entirely or back to a checkpoint) or of one replay, done or
    dry run. ``destinations`` are the destinations' ``RollbackReport.to_dict()``;
    ``table_kinds``: the destination kinds that hold tables (else files in a folder: a
    replace restores "the table as it was" or a folder), told by the facade."""

    job_id: str
    dry_run: bool
    rows: int
    to_checkpoint: int | None
    replay: int | None
    status: JobStatus | None
    destinations: tuple[Mapping[str, Any], ...]
    data: Mapping[str, Any] = field(repr=False, compare=False)
    table_kinds: frozenset[str | None] = frozenset()

    @classmethod
    def from_dict(cls, r: Mapping[str, Any],
                  table_kinds: Iterable[str | None] = ()) -> RollbackSummary:
        return cls(r["job_id"], r["dry_run"], r["rows"], r.get("to_checkpoint"), r.get("replay"),
                   JobStatus(r["status"]) if r.get("status") else None,
                   tuple(r["destinations"]), _frozen(r), frozenset(table_kinds))

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)

    def change_lines(self) -> list[str]:
        """What the rollback changes, one line per table (the CLI and the console)."""
        dry = self.dry_run
        lines = []
        for d in self.destinations:
            # a file names its path, then the table; PostgreSQL names both at once
            # (postgres://host/db schema.table)
            for table, n in d["rows"].items():
                where, left = named(d, table)
                lines.append(f"{where}: {n:,} rows" + (f" from {left}" if left else ""))
            for table in d["dropped"]:
                where, left = named(d, table)
                lines.append(f"{where}: {'would drop' if dry else 'dropped'} "
                             + (f"table {left}" if left else "the table"))
            for table in d["restored"]:
                where, left = named(d, table)
                what = (f"the table {left} as it was before the job"
                        if left and d.get("kind") in self.table_kinds
                        else left if left else "the table as it was before the job")
                lines.append(f"{where}: {'would restore' if dry else 'restored'} {what}")
        return lines

    def lines(self) -> list[str]:
        """The CLI's text of the rollback."""
        verb = "would remove" if self.dry_run else "removed"
        target = f" back to checkpoint {self.to_checkpoint}" if self.to_checkpoint else ""
        if self.replay:
            target = f", replay {self.replay}"
        out = [f"rollback of job {self.job_id}{target}: {verb} {self.rows:,} rows"]
        out += [f"  {line}" for line in self.change_lines()]
        if not self.dry_run:
            out.append(f"  job status: {self.status}")
        return out


@dataclass(frozen=True)
class CleanupAction:
    """One thing cleanup removes (or would): a job's staged rows, an orphaned table, an
    expired backup, a workspace; or a job it marks no longer resumable."""

    job_id: str
    action: str
    path: str | None = None
    table: str | None = None
    rows: int | None = None
    tables: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"job_id": self.job_id, "action": self.action}
        if self.rows is not None:
            out["rows"] = self.rows
        if self.tables is not None:
            out["tables"] = list(self.tables)
        if self.path is not None:
            out["path"] = self.path
        if self.table is not None:
            out["table"] = self.table
        return out

    def line(self) -> str:
        where = f" {self.path or ''} {self.table or ''}".rstrip()
        return f"{self.action}: job {self.job_id}{where}"


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay of fixed rejects (or its dry run) reports."""

    job_id: str
    status: JobStatus
    error: str | None
    dry_run: bool
    data: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, s: Mapping[str, Any]) -> ReplaySummary:
        return cls(s["job_id"], JobStatus(s["status"]), s.get("error"), s["dry_run"], _frozen(s))

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)

    def error_line(self) -> str | None:
        if self.status is JobStatus.SUCCEEDED:
            return None
        return f"error: replay of job {self.job_id} {self.status}: {self.error}"

    def lines(self) -> list[str]:
        s, dry = self.data, self.dry_run
        name = "dry run" if dry else f"replay {s['replay']}"
        out = [f"{name} of job {self.job_id}: {s['rows_in']:,} rows ({s['origin']})"]
        path, table = named(s["destination"], s["destination"].get("table"))
        where = f" (table {table})" if table else ""
        loaded = 'would load' if dry else 'loaded (resolved)'
        out.append(f"  {loaded:<18} {s['rows_loaded']:>9,}  -> {path}{where}")
        out.append(f"  {'would be rejected' if dry else 'rejected again':<18} {s['rows_rejected']:>9,}")
        for extra in (s.get("destinations") or [])[1:]:     # a branched job: every branch
            path, table = named(extra, extra.get("table"))
            out.append(f"  {'':<18} {'':>9}  -> {path}" + (f" (table {table})" if table else ""))
        if "branch_rejected" in s:
            out.append(f"  {'rejected in branches':<18} {s['branch_rejected']:>9,}  (rejects of "
                       "the branches)")
        out.append(f"  {'refused':<18} {s['rows_refused']:>9,}  (already loaded or resolved)")
        for r in s["rejected"][:10]:
            out.append(f"    row {r['row']}: {r['phase']}/{r['rule']}"
                       f"{'/' + r['column'] if r['column'] else ''}: {r['message']}")
        for r in s["refused"][:5]:
            out.append(f"    row {r['row']}: refused, {r['reason']}")
        if s.get("job"):
            j = s["job"]
            out.append(f"  job: read {j['rows_read']:,} = loaded {j['rows_loaded']:,} + open "
                       f"rejects {j['rows_rejected']:,}  (resolved {j['rows_resolved']:,})")
        return out
