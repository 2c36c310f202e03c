"""Replay: fixed rejects run through their job's recorded pipeline and loaded as part of
the same job (ADR 0016). Not to be confused with ``engine.replay``, which streams a phase
checkpoint for ``rerun``.

The rows come from a fix file (``rejects JOB --fix``) or from the open rejects with
``--set column=value`` applied where ``--where`` holds. They run through the phases the
job ran (its pipeline as recorded, its ``when`` decisions as recorded, its ``unique``
index), and the rows that pass are written through the job's destination object as new
batches of the job: batch numbers after its last, the original record numbers in the
ledger, lineage ``_etl_job_id`` of the job. Each batch is PENDING in the store (with the
rejects it takes) before the destination commits and COMMITTED (its rejects resolved)
after; a replay killed in between is settled from the ledger by the next replay or
rollback, so a record is never loaded twice.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..config import Settings
from ..errors import JobFailed, UserError
from ..records import ACTIVE, JobStatus, ReplayStatus
from ..spec import spec_from_text
from ..store import StateStore
from ..store import replays as book
from . import destinations
from .expr import ExpressionError, compile_expression
from .fixes import FixRow, dialect_of, read_fix_file, rows_for, source_json, split_raw
from .phases.base import ROW, PhaseResult, Rejects
from .plan import Plan, decisions_from_events, make_plan
from .job import JobContext
from .line import records_of
from .loader import branch_of, refused_records
from .targets import targets_for

META = ("row", "phase", "rule", "column", "message")


def _job(store: StateStore, ref: str) -> dict:
    store.mark_dead_jobs()
    job = store.job(ref)
    if job["status"] != JobStatus.SUCCEEDED:
        what = {JobStatus.RUNNING: "is running; wait for it to end",
                JobStatus.PENDING: "is starting; wait for it to end",
                JobStatus.ROLLED_BACK: "was rolled back; its rejects went with it",
                }.get(job["status"], f"is {job['status']}; resume it first (etlconsole resume "
                                     f"{job['id']})")
        raise UserError(f"job {job['id']} {what}: only a succeeded job's rejects are replayed")
    return job


def _plan(store: StateStore, job: dict) -> Plan:
    spec = spec_from_text(job["pipeline_toml"], Path(job["pipeline_file"] or "."))
    dests = job["destinations"] or []
    dest = dests[0]["path"] if len(dests) == 1 else None
    plan = make_plan(spec, source=job["source_path"], dest=dest,
                     dialect=dialect_of(job),
                     decisions=decisions_from_events(store.events(job["id"])))
    # The job succeeded, so an atomic or replace load has published its table (folder):
    # the replay appends to it, each batch visible as it commits, like an append job. (A
    # replace's publish would swap the job's whole table for the replayed rows.)
    for load in [plan.load] if plan.load is not None else [b.load for b in plan.branches]:
        load.mode = "append"
    return plan


def _settle(store: StateStore, job: dict, targets: list, settings: Settings) -> None:
    """Make the store and every destination agree on the job's replay batches before a
    replay or a rollback of one. A replay batch only some destinations hold (a kill between
    two destinations' commits, or a rollback cut short between two destinations) is taken
    out of those that do (it is the last batch they hold: replays write one batch at a time,
    and each settles first); then the store follows the ledgers (``book.settle``)."""
    ledgers = [{e["batch"] for e in t.read_ledger()} for t in targets]
    everywhere = set.intersection(*ledgers)
    partial = (set().union(*ledgers) - everywhere) & book.batch_numbers(store, job["id"])
    for batch in sorted(partial, reverse=True):
        for t, held in zip(targets, ledgers, strict=False):
            if batch in held:
                destinations.rollback(t.path, job["id"], t.load.destination, after_batch=batch - 1,
                                      timeout_ms=settings.transaction_timeout_ms)
    book.settle(store, job["id"], everywhere)


# -- which rows ------------------------------------------------------------------------
def _from_file(job: dict, path: Path, known: dict[int, dict]) -> list[FixRow]:
    rows = read_fix_file(job, path)
    if not rows:
        raise UserError(f"{path}: no rows to replay")
    strangers = [r.record for r in rows if r.record not in known]
    if strangers:
        raise UserError(f"{path}: {len(strangers):,} of its {len(rows):,} rows are not rejects of "
                        f"job {job['id']} (first: {ROW} {strangers[0]}); is it this job's fix file?")
    return rows


def _bulk(job: dict, open_rows: list[dict], sets: list[str], where: str | None,
          given: list[FixRow] | None) -> list[FixRow]:
    """The open rejects (or the file's rows) where ``--where`` holds (all without it),
    with ``--set`` applied. Evaluated by engine.expr over
    one Arrow batch: the reject's row, phase, rule, column and message, and the record's
    fields (as text; a source column of one of those names is reached as col("…"))."""
    names = job["dialect"]["names"]
    assignments = _assignments(job, sets)
    fixed = {r["row"]: r for r in open_rows}
    rows = given if given is not None else [fix for _, fix in rows_for(job, open_rows)[0]]
    mask = [True] * len(rows) if where is None else _where_mask(where, rows, fixed, names)
    out = [_assigned(job, fix, assignments) for fix, hit in zip(rows, mask, strict=False) if hit]
    if not out:
        what = "the rows of the fix file" if given is not None else f"job {job['id']}'s open rejects"
        raise UserError(f"--where {where!r} holds for none of {what}")
    return out


def _assignments(job: dict, sets: list[str]) -> list[tuple[int, str]]:
    """``--set COLUMN=VALUE`` options as (column index in the source, value)."""
    names = job["dialect"]["names"]
    assignments = []
    for s in sets:
        column, sep, value = s.partition("=")
        column = column.strip()
        if not sep or not column:
            raise UserError(f"--set {s!r}: expected COLUMN=VALUE")
        if column not in names:
            raise UserError(f"--set {s!r}: no column {column!r} in job {job['id']}'s source "
                            f"(its columns: {', '.join(names)})")
        assignments.append((names.index(column), value))
    return assignments


def _where_batch(rows: list[FixRow], fixed: dict[int, dict], names: list[str]) -> pa.RecordBatch:
    """What ``--where`` sees: the reject's META columns and the record's fields, as text."""
    cols: dict[str, list[Any]] = {m: [] for m in META}
    fields: dict[str, list[str | None]] = {n: [] for n in names if n not in META}
    for fix in rows:
        r = fixed.get(fix.record, {})
        cols["row"].append(fix.record)
        for m in META[1:]:
            cols[m].append(r.get(m))
        for i, n in enumerate(names):
            if n in fields:
                fields[n].append(None if fix.fields is None else fix.fields[i])
    return pa.RecordBatch.from_pydict(
        {**{m: pa.array(v, pa.int64() if m == "row" else pa.string()) for m, v in cols.items()},
         **{n: pa.array(v, pa.string()) for n, v in fields.items()}})


def _where_mask(where: str, rows: list[FixRow], fixed: dict[int, dict], names: list[str]) -> list[bool]:
    """Whether ``--where`` holds, per row (null counts as not)."""
    try:
        expr = compile_expression(where)
    except ExpressionError as exc:
        raise UserError(f"--where: {exc}") from None
    batch = _where_batch(rows, fixed, names)
    try:
        result = expr.evaluate(batch)
    except ExpressionError as exc:
        raise UserError(f"--where: {exc}") from None
    except (KeyError, pa.ArrowException) as exc:
        raise UserError(f"--where: {exc}") from None
    if isinstance(result, pa.Scalar):
        result = pa.repeat(result, len(rows))
    if not pa.types.is_boolean(result.type):
        raise UserError(f"--where {where!r} is not a condition (it gives {result.type})")
    mask: list[bool] = pc.fill_null(result, False).to_pylist()
    return mask


def _assigned(job: dict, fix: FixRow, assignments: list[tuple[int, str]]) -> FixRow:
    """The row with the ``--set`` values; a raw record is split first (one that does not
    split is returned as it is: its fields cannot be set)."""
    if not assignments:
        return fix
    if fix.fields is None:
        split, _ = split_raw(job, fix.raw or "")
        if split is None:
            return fix
        fix = FixRow(fix.record, split, None)
    values = list(fix.fields or [])
    for i, value in assignments:
        values[i] = value
    return FixRow(fix.record, values, None)


# -- the phases ------------------------------------------------------------------------
def _process(planned, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list]:
    """One phase over the replayed rows; rows it raises on are isolated (as the runner
    does) and rejected with rule ``exception``."""
    try:
        out = planned.phase.process(batch)
    except (JobFailed, UserError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        if planned.phase.on_error == "fail" or batch.num_rows == 0:
            raise JobFailed(f"{planned.label}: {type(exc).__name__}: {exc}") from exc
        if batch.num_rows == 1:
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            return (pa.RecordBatch.from_pylist([], schema=planned.output),
                    [(Rejects(batch, ["exception"], [None], [message]), planned.type, planned.label)])
        mid = batch.num_rows // 2
        left, lr = _process(planned, batch.slice(0, mid))
        right, rr = _process(planned, batch.slice(mid))
        both = pa.Table.from_batches([left, right]).combine_chunks().to_batches()
        return (both[0] if both else left), lr + rr
    blamed = []
    if isinstance(out, PhaseResult):
        if out.rejects is not None and len(out.rejects):
            blamed = [(out.rejects, planned.type, planned.label)]
        out = out.batch
    if not isinstance(out, pa.RecordBatch) or ROW not in out.schema.names:
        raise JobFailed(f"{planned.label} did not return a batch with its {ROW} column")
    return out, blamed


def _workspace(store: StateStore, job: dict, dry_run: bool) -> tuple[Path, Path | None]:
    """The job's workspace (its unique-key index); for a dry run a copy of the index in a
    temporary folder, so nothing of the job's is written."""
    real = store.path.parent / "jobs" / job["id"]
    if not dry_run:
        return real, None
    tmp = Path(tempfile.mkdtemp(prefix="etlreplay-"))
    index = real / "unique.db"
    if index.exists():
        src = sqlite3.connect(f"file:{index}?mode=ro", uri=True)
        dst = sqlite3.connect(str(tmp / "unique.db"))
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
    return tmp, tmp


def _attach(phases: list, job: dict, workspace: Path, settings: Settings, records: list[int]) -> None:
    """Phases get the job's context as a resumed job would, having done every record: the
    unique rule sees every key the job loaded, minus those of the records replayed (their
    rows are not in the destination; a replay killed before its commit left their keys)."""
    ctx = JobContext(job["id"], workspace, settings, resume_after=max(job["rows_read"], 1))
    for p in phases:
        if any(getattr(r, "unique", False) for r in getattr(p.phase, "rules", [])) and \
                not (workspace / "unique.db").exists():
            raise UserError(f"job {job['id']}: its unique-key index ({workspace / 'unique.db'}) is "
                            "gone (cleanup removes workspaces past PIPELINE_ROLLBACK_RETENTION_HOURS);"
                            f" {p.label}'s unique rule cannot be checked against the rows the job "
                            "loaded, so its rejects cannot be replayed")
        try:
            p.phase.attach(ctx)       # a hook every phase has (a no-op by default)
        except JobFailed as exc:
            raise UserError(f"job {job['id']}: {exc}") from None
        index = getattr(p.phase, "_unique", None)     # validate's key index, when it has one
        if index is not None:
            index.forget_records(records)


def _batch_of(job: dict, rows: list[FixRow]) -> tuple[pa.RecordBatch, list[dict]]:
    """The rows as the extract would give them (text columns and ``_etl_row``), and the
    extract's rejects (a raw record that still does not split)."""
    names = job["dialect"]["names"]
    good: list[tuple[int, list[str]]] = []        # (record, fields)
    bad: list[dict] = []
    for fix in rows:
        fields = fix.fields
        if fields is None:
            fields, why = split_raw(job, fix.raw or "")
            if fields is None:
                bad.append({"row": fix.record, "phase": "extract", "phase_label": None,
                            "rule": "fields", "column": None, "message": why,
                            "values": source_json(job, fix)})
                continue
        good.append((fix.record, fields))
    good.sort(key=lambda f: f[0])
    columns = {n: pa.array([f[i] for _, f in good], pa.string()) for i, n in enumerate(names)}
    columns[ROW] = pa.array([record for record, _ in good], pa.int64())
    return pa.RecordBatch.from_pydict(columns), bad


# -- replay ----------------------------------------------------------------------------
def replay(store: StateStore, ref: str, settings: Settings, *, fix_file: Path | None = None,
           sets: tuple[str, ...] = (), where: str | None = None, dry_run: bool = False) -> dict:
    """Replay fixed rejects of job ``ref``; returns the summary (see the README)."""
    job = _job(store, ref)
    if fix_file is None and not sets and where is None:
        raise UserError("give a fix file (etlconsole rejects JOB --fix FILE.csv), or --set/--where")
    plan = _plan(store, job)
    targets = targets_for(plan, job["id"], settings)
    if not dry_run:
        _settle(store, job, targets, settings)
        job = store.job(job["id"])
    busy = book.running(store, job["id"])
    if busy:
        raise UserError(f"replay {busy[0]} of job {job['id']} is running; wait for it to end")
    known = book.numbered_rejects(store, job["id"])
    rows = _chosen(store, job, known, fix_file, sets, where)
    refusals, todo = _refusals(rows, known)
    run = _Replay(store, job, plan, targets, settings, known, bool(plan.branches),
                  _origin(fix_file, sets, where))
    summary = run.new_summary(len(rows), refusals, dry_run)
    workspace, tmp = _workspace(store, job, dry_run)
    try:
        return run.rows(todo, len(rows), summary, workspace, dry_run)
    except JobFailed as exc:
        summary.update(status=JobStatus.FAILED, error=str(exc))
        if summary["replay"] is not None:
            _settle(store, job, targets, settings)
            book.finish(store, job["id"], summary["replay"], status=ReplayStatus.FAILED, error=str(exc))
        return summary
    except UserError as exc:
        if summary["replay"] is not None:
            book.finish(store, job["id"], summary["replay"], status=ReplayStatus.FAILED, error=str(exc))
        raise
    except KeyboardInterrupt:
        summary.update(status=JobStatus.INTERRUPTED, error="interrupted by the operator")
        if summary["replay"] is not None:
            book.finish(store, job["id"], summary["replay"], status=ReplayStatus.FAILED,
                        error=summary["error"])
        return summary
    finally:
        for p in plan.phases + [p for x in targets for p in x.phases]:
            p.phase.teardown()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if not dry_run:
            j = store.job(job["id"])
            summary["job"] = {k: j[k] for k in ("rows_read", "rows_loaded", "rows_rejected",
                                                "rows_resolved")}


def _chosen(store: StateStore, job: dict, known: dict[int, dict], fix_file: Path | None,
            sets: tuple[str, ...], where: str | None) -> list[FixRow]:
    """The rows to replay: the fix file's, or the open rejects', with --set/--where applied."""
    given = _from_file(job, fix_file, known) if fix_file is not None else None
    open_rows = [r for r in book.open_rejects(store, job["id"])
                 if r["row"] is not None and known.get(r["row"], {}).get("id") == r["id"]
                 and r["row"] in known and not known[r["row"]]["replay_batch"]]
    if sets or where is not None:
        return _bulk(job, open_rows, list(sets), where, given)
    assert given is not None       # replay() refuses a call with neither
    return given


def _refusals(rows: list[FixRow], known: dict[int, dict]) -> tuple[list[dict], list[FixRow]]:
    """(refused, to do): records already loaded by a replay (or held by an unsettled one)
    are refused, per row."""
    refusals, todo = [], []
    for fix in rows:
        r = known[fix.record]
        if r["resolved_by"] is not None:
            refusals.append({"row": fix.record, "reason": f"already loaded by replay {r['resolved_by']}"})
        elif r["replay_batch"] is not None:
            refusals.append({"row": fix.record, "reason": "held by an unfinished replay; run a "
                             "replay without --dry-run to settle it"})
        else:
            todo.append(fix)
    return refusals, todo


def _origin(fix_file: Path | None, sets: tuple[str, ...], where: str | None) -> str:
    """Where the replayed rows came from, as the store records it."""
    if fix_file is not None:
        return str(fix_file)
    return " ".join([f"--set {s}" for s in sets] + ([f"--where {where}"] if where is not None else []))


def _lines(rejects: list[dict]) -> list[dict]:
    """Rejects as the summary shows them."""
    return [{k: r[k] for k in META} for r in rejects]


@dataclass
class _Replay:
    """What one replay works with, once chosen."""

    store: StateStore
    job: dict
    plan: Plan
    targets: list
    settings: Settings
    known: dict[int, dict]
    branched: bool
    origin: str

    def new_summary(self, rows_in: int, refusals: list[dict], dry_run: bool) -> dict:
        summary = {"job_id": self.job["id"], "replay": None, "dry_run": dry_run,
                   "status": JobStatus.SUCCEEDED, "origin": self.origin, "rows_in": rows_in,
                   "rows_loaded": 0, "rows_rejected": 0, "rows_refused": len(refusals),
                   "refused": refusals[:20], "rejected": [], "batches": [],
                   "destination": self.targets[0].describe(), "error": None}
        if self.branched:
            summary.update(destinations=[x.describe() for x in self.targets], branch_rejected=0)
        return summary

    def rows(self, todo: list[FixRow], rows_in: int, summary: dict, workspace: Path,
             dry_run: bool) -> dict:
        """Run the rows through the job's phases, then (unless a dry run) load them in
        batches; ``summary["replay"]`` is the replay's number once it is started."""
        store, job, targets = self.store, self.job, self.targets
        batch, extract_rejects = _batch_of(job, todo)
        _attach(self.plan.phases + [p for x in targets for p in x.phases], job, workspace,
                self.settings, [f.record for f in todo])
        blamed = []
        for planned in self.plan.phases:
            batch, phase_rejects = _process(planned, batch)
            blamed += phase_rejects
        failed = extract_rejects + records_of(blamed)
        by_record = {f.record: f for f in todo}
        summary["rows_rejected"] = len(failed)
        summary["rejected"] = _lines(failed[:50])
        if dry_run:
            summary["rows_loaded"] = batch.num_rows
            if self.branched:       # what the branches' own phases would reject
                found = [r for x in targets for r in _branch(x, batch)[1]]
                summary["branch_rejected"] = len(found)
                summary["rejected"] += _lines(found[:50])
            return summary
        for x in targets:
            x.destination.check(x.schema)    # a changed table: exit 2, nothing written
        number = book.start(store, job["id"], self.origin, rows_in)
        summary["replay"] = number
        book.rejected_again(store, number, [(self.known[r["row"]]["id"], r,
                                             source_json(job, by_record[r["row"]])) for r in failed])
        self.load_batches(number, batch, by_record, summary)
        book.finish(store, job["id"], number, status=ReplayStatus.SUCCEEDED,
                    rows_loaded=summary["rows_loaded"],
                    rows_rejected=summary["rows_rejected"], rows_refused=summary["rows_refused"])
        return summary

    def load_batches(self, number: int, batch: pa.RecordBatch, by_record: dict[int, FixRow],
                     summary: dict) -> None:
        """The phases' output in batches of ``batch_size_min`` rows, each in every
        destination (``_load``)."""
        targets = self.targets
        try:
            for x in targets:
                x.destination.open(x.schema)
            size = max(1, self.settings.batch_size_min)
            first = book.next_batch_number(self.store, self.job["id"])
            for k, start in enumerate(range(0, batch.num_rows, size)):
                part = batch.slice(start, size)
                loaded, refused = _load(self.store, self.job, number, targets, part, first + k,
                                        self.known, by_record, self.branched)
                summary["rows_loaded"] += loaded
                if self.branched:     # the record reached the branches: resolved; a branch's own
                    summary["branch_rejected"] += len(refused)        # reject is apart
                else:
                    summary["rows_rejected"] += len(refused)
                summary["rejected"] += _lines(refused)[:50]
                summary["batches"].append(first + k)
        finally:
            for x in targets:
                x.destination.close()


def _branch(t, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[dict]]:
    """The rows as branch target ``t`` receives them (its filter, its own phases), and the
    rows its phases reject (rejects of the branch, as the runner records them)."""
    batch = t.keep(batch)
    blamed = []
    for planned in t.phases:
        batch, phase_rejects = _process(planned, batch)
        blamed += phase_rejects
    return batch, branch_of(t, records_of(blamed))


def _load(store: StateStore, job: dict, number: int, targets: list, part: pa.RecordBatch,
          batch_no: int, known: dict[int, dict], by_record: dict[int, FixRow],
          branched: bool) -> tuple[int, list[dict]]:
    """One replay batch, in every destination: PENDING with the rejects it takes, each
    destination's commit (rows it refuses keep — or, in a branch, get — the database's
    reason, recorded inside its transaction), then COMMITTED. Returns (rows resolved,
    rows refused or rejected on the way to the destinations)."""
    records = part.column(ROW).to_pylist()
    outputs = []
    for t in targets:
        rows, rejects = _branch(t, part) if branched else (part, [])
        data = rows.drop_columns([c for c in rows.schema.names if c.startswith("_etl_")])
        outputs.append((rows, t.destination.prepare(data), rejects))
    book.begin_batch(store, job["id"], number, batch_no, row_start=min(records),
                     row_end=max(records),
                     taking=[(known[r]["id"], source_json(job, by_record[r])) for r in records],
                     rejects=[r for *_, rejects in outputs for r in rejects])
    lost: list[dict] = [r for *_, rejects in outputs for r in rejects]
    attempts = 1
    t0 = time.perf_counter()
    for t, (rows, data, _) in zip(targets, outputs, strict=False):
        kept: list[dict] = []          # the refused rows of the attempt that committed

        def record(refused, t=t, rows=rows, kept=kept):
            found = refused_records(t, rows, refused)
            if branched:     # a branch's refusal is a reject of the branch
                store.set_load_rejects(job["id"], batch_no, t.label, found)
            else:            # the record stays an open reject, with the database's reason
                book.refused(store, number, [(known[r["row"]]["id"], r) for r in found])
            kept[:] = found

        result = t.destination.write(batch_no, data, min(records), max(records),
                                     before_commit=record)
        attempts = max(attempts, result.attempts)
        lost += kept
    loaded = book.commit_batch(store, job["id"], number, batch_no, attempts=attempts,
                               duration_ms=(time.perf_counter() - t0) * 1000)
    return loaded, lost


# -- undo one replay -------------------------------------------------------------------
def rollback_replay(store: StateStore, ref: str, number: int, settings: Settings, *,
                    dry_run: bool = False) -> dict:
    """Remove the rows replay ``number`` loaded; its rejects are open again."""
    store.mark_dead_jobs()
    job = store.job(ref)
    if job["status"] in ACTIVE:
        raise UserError(f"job {job['id']} is {job['status']}; stop it first")
    if book.running(store, job["id"]):
        raise UserError(f"job {job['id']}: a replay is running; wait for it to end")
    found = {r["number"]: r for r in book.replays(store, job["id"])}
    if number not in found:
        raise UserError(f"job {job['id']} has no replay {number} "
                        f"(replays: {', '.join(map(str, found)) or 'none'})")
    dests = job["destinations"] or []
    if not dry_run:
        plan = _plan(store, job)
        _settle(store, job, targets_for(plan, job["id"], settings), settings)
        found = {r["number"]: r for r in book.replays(store, job["id"])}
    r = found[number]
    if r["status"] == ReplayStatus.ROLLED_BACK:
        raise UserError(f"replay {number} of job {job['id']} was rolled back already")
    later = [x for x in found.values() if x["number"] > number and x["status"] != ReplayStatus.ROLLED_BACK
             and x["batch_first"] is not None]
    if later:
        raise UserError(f"replay {later[-1]['number']} of job {job['id']} loaded after replay "
                        f"{number}; roll it back first (rollback {job['id']} --replay "
                        f"{later[-1]['number']})")
    summary = {"job_id": job["id"], "replay": number, "dry_run": dry_run, "to_checkpoint": None,
               "destinations": [], "rows": 0}
    if r["batch_first"] is not None:
        summary["destinations"] = [destinations.rollback(
            Path(d["path"]), job["id"], d.get("kind"), after_batch=r["batch_first"] - 1,
            dry_run=dry_run, timeout_ms=settings.transaction_timeout_ms).to_dict() for d in dests]
        summary["rows"] = sum(n for d in summary["destinations"] for n in d["rows"].values())
    if not dry_run:
        summary["reopened"] = book.undo(store, job["id"], number)
    j = store.job(job["id"])
    summary["status"] = j["status"]
    summary["job"] = {k: j[k] for k in ("rows_read", "rows_loaded", "rows_rejected", "rows_resolved")}
    return summary
