"""What the library's actions report: a run's summary, a rollback's, a replay's, a
cleanup's actions, a fix file written."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jobs import frozen_row
from .naming import named
from .status import JobStatus


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
        return cls(s["job_id"], JobStatus(s["status"]), s.get("error"), frozen_row(s),
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
                   tuple(r["destinations"]), frozen_row(r), frozenset(table_kinds))

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
    kind: str | None = None       # the destination's kind: how it is named (not in the JSON)

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
        if self.kind is not None and self.path is not None:   # postgres://host/db schema.table
            place, left = named({"kind": self.kind, "path": self.path}, self.table)
            return f"{self.action}: job {self.job_id} {place}" + (f" {left}" if left else "")
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
        return cls(s["job_id"], JobStatus(s["status"]), s.get("error"), s["dry_run"], frozen_row(s))

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
