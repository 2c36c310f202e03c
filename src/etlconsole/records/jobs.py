"""Records of a job and its parts as the state store holds them: the job, its phase
table's lines, batches, checkpoints, run segments, and everything ``show`` tells."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from ..progress import fmt_duration
from .events import event_detail
from .naming import named
from .status import BatchStatus, JobStatus


def frozen_row(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of a row (a record keeps the row it was made from)."""
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
            settings=dict(row.get("settings") or {}), row=frozen_row(row))

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
                   row.get("attempts"), row.get("duration_ms"), frozen_row(row))

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
        # a Dask job's ``part`` checkpoint (ADR 0026) keeps its last record as the row's
        # row_count only
        last_row = d["last_row"] if "last_row" in d else row["row_count"]
        return cls(row["id"], number, row["phase"], d["batch"], last_row, d["rows_loaded"],
                   row["created_at"], frozen_row(d), frozen_row(row))

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
        hint = f" (etlconsole show {j.id} --files lists them all)"
        out += [f"    file     {line}{hint if line.startswith('… ') else ''}"
                for line in self.file_lines]
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
            detail = event_detail(e["event"], e["details"])
            out.append(f"    {e['at'][11:19]} {e['level']:<5} {e['event']} {detail}")
        return out

