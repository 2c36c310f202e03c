"""State-store reads and writes of replays: rejects fixed and loaded again as part of their
job (ADR 0016).

A replay writes batches of its job: new batch numbers after the job's last, each one
PENDING with the rejects it takes (``replay_batch``) before the destination commits, and
COMMITTED — its rejects resolved, the job's counters moved — after. A replay killed in
between is settled from the destination's ledger the next time (``settle``), exactly as
resume settles a job's batches. A reject is either open (``resolved_at`` NULL) or resolved
by one replay; the job's counters keep ``rows_read = rows_loaded + rows_rejected`` with
``rows_rejected`` the open rejects and ``rows_resolved`` the rows replays loaded.
"""

from __future__ import annotations

import json
import os
from typing import Any

import psutil

from ..records import ReplayStatus
from .store import StateStore, _alive, now


# Rejects of the main line: a branch's own rejects (its phases' and its destination's)
# belong to a record that reached the branches; they are not replayed.
MAIN_LINE = "branch IS NULL"


def numbered_rejects(store: StateStore, job_id: str) -> dict[int, dict[str, Any]]:
    """Every reject of the job with a record number, by record (the first one if a record
    has several), with its state: open, resolved (``resolved_by``) or taken by a replay
    batch not yet settled (``replay_batch``)."""
    out: dict[int, dict[str, Any]] = {}
    for r in store.db.query(
            'SELECT id, row, batch_number, phase, phase_label, rule, column_name AS "column", '
            'message, "values", source, replay, replay_batch, resolved_at, resolved_by '
            f"FROM pipeline_rejects WHERE job_id = ? AND row IS NOT NULL AND {MAIN_LINE} "
            "ORDER BY row, id", [job_id]):
        out.setdefault(r["row"], r)
    return out


def resolutions(store: StateStore, job_id: str) -> dict[int, tuple[int, str]]:
    """{record: (replay number, when)} of the job's rejects a replay loaded."""
    return {r: (by, at) for r, by, at in store.conn.execute(
        "SELECT row, resolved_by, resolved_at FROM pipeline_rejects WHERE job_id = ? AND "
        "resolved_at IS NOT NULL AND row IS NOT NULL", [job_id]).fetchall()}


def open_rejects(store: StateStore, job_id: str) -> list[dict[str, Any]]:
    """Open rejects (not resolved by a replay), in record order, unnumbered ones last."""
    rows = list(store.db.query(
        'SELECT id, row, phase, phase_label, rule, column_name AS "column", message, "values", '
        f"source, replay FROM pipeline_rejects WHERE job_id = ? AND resolved_at IS NULL AND "
        f"{MAIN_LINE} ORDER BY row IS NULL, row, id", [job_id]))
    for r in rows:
        r["values"] = json.loads(r["values"]) if r["values"] else None
        r["source"] = json.loads(r["source"]) if r["source"] else None
    return rows


def replays(store: StateStore, job_id: str) -> list[dict[str, Any]]:
    return list(store.db.query("SELECT * FROM pipeline_replays WHERE job_id = ? ORDER BY number",
                               [job_id]))


def running(store: StateStore, job_id: str) -> list[int]:
    """Replays of the job whose process still runs."""
    return [r["number"] for r in replays(store, job_id)
            if r["status"] == ReplayStatus.RUNNING and _alive(r["pid"], r["pid_started"])]


def batch_numbers(store: StateStore, job_id: str) -> set[int]:
    """The job's batches written by replays (whatever their status)."""
    return {b for (b,) in store.conn.execute(
        "SELECT batch_number FROM pipeline_batches WHERE job_id = ? AND "
        "json_extract(error_details, '$.replay') IS NOT NULL", [job_id]).fetchall()}


def next_batch_number(store: StateStore, job_id: str) -> int:
    """After every batch the job ever had (rolled-back numbers are not reused)."""
    return store.conn.execute("SELECT coalesce(max(batch_number), 0) + 1 FROM pipeline_batches "
                            "WHERE job_id = ?", [job_id]).fetchone()[0]


def start(store: StateStore, job_id: str, origin: str, rows_in: int) -> int:
    with store._tx() as conn:
        number = conn.execute("SELECT coalesce(max(number), 0) + 1 FROM pipeline_replays "
                              "WHERE job_id = ?", (job_id,)).fetchone()[0]
        store._insert(conn, "pipeline_replays", {
            "job_id": job_id, "number": number, "status": ReplayStatus.RUNNING, "origin": origin,
            "pid": os.getpid(), "pid_started": psutil.Process().create_time(),
            "rows_in": rows_in, "created_at": now()})
    store.add_event(job_id, "replay.started", replay=number, origin=origin, rows=rows_in)
    return number


def finish(store: StateStore, job_id: str, number: int, *, status: str, error: str | None = None,
           **counts: int) -> None:
    with store._tx() as conn:
        fields = {"status": status, "finished_at": now(), "error": error, **counts}
        sets = ", ".join(f'"{k}" = ?' for k in fields)
        conn.execute(f"UPDATE pipeline_replays SET {sets} WHERE job_id = ? AND number = ?",
                     [*fields.values(), job_id, number])
    store.add_event(job_id, f"replay.{status}", level="info" if status == ReplayStatus.SUCCEEDED else "error",
                    replay=number, error=error, **counts)


def _reason(conn, reject_id: int, record: dict[str, Any], source: str | None, number: int) -> None:
    """A new reason for an open reject. ``phase_label`` keeps the phase that first rejected
    the record: ``rerun --from`` carries rejects by it (the record is not in the checkpoint
    of a later phase), so the job's records stay conserved whatever a replay found."""
    conn.execute('UPDATE pipeline_rejects SET phase = ?, rule = ?, column_name = ?, '
                 'message = ?, "values" = ?, source = coalesce(?, source), replay = ?, '
                 "replay_batch = NULL WHERE id = ?",
                 (record["phase"], record["rule"], record["column"],
                  record["message"], record["values"], source, number, reject_id))


def rejected_again(store: StateStore, number: int, failed: list[tuple[int, dict, str | None]]) -> None:
    """Rows of replay ``number`` its phases rejected: (reject id, new reason, source JSON).
    They stay open rejects with their new reason (and the values the fix gave them)."""
    if failed:
        with store._tx() as conn:
            for reject_id, record, source in failed:
                _reason(conn, reject_id, record, source, number)


def begin_batch(store: StateStore, job_id: str, number: int, batch: int, *, row_start: int,
                row_end: int, taking: list[tuple[int, str]], rejects=()) -> None:
    """Before the destination commits: the batch PENDING, and the rejects it takes
    (reject id, the source JSON the replay gave the record); ``rejects``: new rejects of
    the batch (a branch's own phases), kept or dropped with it."""
    with store._tx() as conn:
        store._insert(conn, "pipeline_batches", {
            "job_id": job_id, "batch_number": batch, "status": "PENDING", "row_start": row_start,
            "row_end": row_end, "rows_loaded": len(taking), "created_at": now(),
            "error_details": json.dumps({"replay": number})})
        conn.executemany("UPDATE pipeline_rejects SET replay_batch = ?, source = ? WHERE id = ?",
                         [(batch, source, reject_id) for reject_id, source in taking])
        if rejects:
            store._insert_rejects(conn, job_id, batch, list(rejects))


def refused(store: StateStore, number: int, rows: list[tuple[int, dict]]) -> None:
    """Inside the destination's transaction: rows of the batch the database refused keep
    (open) the database's reason instead."""
    if rows:
        with store._tx() as conn:
            for reject_id, record in rows:
                _reason(conn, reject_id, record, None, number)


def commit_batch(store: StateStore, job_id: str, number: int, batch: int, *,
                 attempts: int = 1, duration_ms: float | None = None) -> int:
    """After the destination committed: the batch's rejects resolved by replay ``number``,
    the batch COMMITTED and the job's counters moved. Returns the rows resolved."""
    stamp = now()
    with store._tx() as conn:
        status = conn.execute("SELECT status FROM pipeline_batches WHERE job_id = ? AND "
                              "batch_number = ?", (job_id, batch)).fetchone()
        if status is None or status[0] != "PENDING":
            return 0
        # replay_batch stays: the batch that loaded the row (settle checks it is held)
        n = conn.execute("UPDATE pipeline_rejects SET resolved_at = ?, resolved_by = ? "
                         "WHERE job_id = ? AND replay_batch = ? AND resolved_at IS NULL",
                         (stamp, number, job_id, batch)).rowcount
        conn.execute("UPDATE pipeline_batches SET status = 'COMMITTED', rows_loaded = ?, "
                     "attempts = ?, duration_ms = ?, processed_at = ? WHERE job_id = ? AND "
                     "batch_number = ?", (n, attempts, duration_ms, stamp, job_id, batch))
        conn.execute("UPDATE import_jobs SET rows_loaded = rows_loaded + ?, rows_rejected = "
                     "rows_rejected - ?, rows_resolved = rows_resolved + ?, heartbeat_at = ? "
                     "WHERE id = ?", (n, n, n, stamp, job_id))
        conn.execute("UPDATE pipeline_replays SET batch_first = coalesce(min(batch_first, ?), ?), "
                     "batch_last = max(coalesce(batch_last, 0), ?), rows_loaded = "
                     "(SELECT count(*) FROM pipeline_rejects WHERE job_id = ? AND resolved_by = ?) "
                     "WHERE job_id = ? AND number = ?",
                     (batch, batch, batch, job_id, number, job_id, number))
    return n


def _drop_batch(conn, job_id: str, batch: int) -> None:
    conn.execute("UPDATE pipeline_rejects SET replay_batch = NULL WHERE job_id = ? AND "
                 "replay_batch = ? AND resolved_at IS NULL", (job_id, batch))
    _drop_rejects_of(conn, job_id, (batch,))
    conn.execute("DELETE FROM pipeline_batches WHERE job_id = ? AND batch_number = ?", (job_id, batch))


def _drop_rejects_of(conn, job_id: str, batches) -> None:
    """Rejects *of* replay batches (a branch's, written by the replay): they go with them.
    The job's rejects a replay takes keep their own batch numbers."""
    conn.executemany("DELETE FROM pipeline_rejects WHERE job_id = ? AND batch_number = ?",
                     [(job_id, b) for b in batches])


def _reopen(conn, job_id: str, where: str, params: tuple) -> int:
    """Resolved rejects back to open, and the job's counters with them."""
    n = conn.execute("UPDATE pipeline_rejects SET resolved_at = NULL, resolved_by = NULL, "
                     f"replay_batch = NULL WHERE job_id = ? AND resolved_at IS NOT NULL AND {where}",
                     (job_id, *params)).rowcount
    conn.execute("UPDATE import_jobs SET rows_loaded = rows_loaded - ?, rows_rejected = "
                 "rows_rejected + ?, rows_resolved = rows_resolved - ? WHERE id = ?",
                 (n, n, n, job_id))
    return n


def settle(store: StateStore, job_id: str, held: set[int]) -> dict[str, int]:
    """Make the store agree with the destination after a replay that did not finish (a
    kill): its PENDING batches the destination's ledger holds (``held``) are committed —
    their rejects resolved — and the others dropped, their rejects open again. A replay
    still marked running whose process is gone becomes failed."""
    done = {"committed": 0, "dropped": 0, "gone": 0}
    batches = [(b, s, json.loads(d or "{}").get("replay")) for b, s, d in store.conn.execute(
        "SELECT batch_number, status, error_details FROM pipeline_batches WHERE job_id = ? AND "
        "status IN ('PENDING', 'COMMITTED')", [job_id]).fetchall()]
    for batch, status, number in batches:
        if number is None:
            continue            # the job's own batches: resume settles those
        if status == "COMMITTED":
            if batch not in held:   # taken away (a rollback killed before the store heard)
                with store._tx() as conn:
                    _reopen(conn, job_id, "replay_batch = ?", (batch,))
                    _drop_rejects_of(conn, job_id, (batch,))
                    conn.execute("UPDATE pipeline_batches SET status = 'ROLLED_BACK' WHERE "
                                 "job_id = ? AND batch_number = ?", (job_id, batch))
                done["gone"] += 1
            continue
        if batch in held:
            commit_batch(store, job_id, number, batch)
            done["committed"] += 1
        else:
            with store._tx() as conn:
                _drop_batch(conn, job_id, batch)
            done["dropped"] += 1
    for r in replays(store, job_id):
        if r["status"] == ReplayStatus.RUNNING and not _alive(r["pid"], r["pid_started"]):
            finish(store, job_id, r["number"], status=ReplayStatus.FAILED,
                   error="the replay stopped without finishing (killed or crashed); its "
                         "committed batches stay, the rest is open again")
    return done


def undo(store: StateStore, job_id: str, number: int) -> int:
    """After replay ``number``'s batches left the destination: its rows are open rejects
    again, its batches ROLLED_BACK, the job's counters moved back. Returns the rows."""
    with store._tx() as conn:
        n = _reopen(conn, job_id, "resolved_by = ?", (number,))
        _drop_rejects_of(conn, job_id, [b for (b,) in conn.execute(
            "SELECT batch_number FROM pipeline_batches WHERE job_id = ? AND "
            "json_extract(error_details, '$.replay') = ?", (job_id, number))])
        conn.execute("UPDATE pipeline_batches SET status = 'ROLLED_BACK' WHERE job_id = ? AND "
                     "json_extract(error_details, '$.replay') = ?", (job_id, number))
        conn.execute(f"UPDATE pipeline_replays SET status = '{ReplayStatus.ROLLED_BACK}', finished_at = "
                     "coalesce(finished_at, ?) WHERE job_id = ? AND number = ?",
                     (now(), job_id, number))
    store.add_event(job_id, "replay.rolled_back", replay=number, rows=n)
    return n


def after_job_rollback(store: StateStore, job_id: str) -> None:
    """A rollback of the whole job (or back to a checkpoint) took every replay's batches
    away with the job's later ones: every resolved reject is open again. Called before the
    state store is reconciled with the ledger, which then counts them as rejected (rejects
    of kept batches) or drops them (batches rolled back)."""
    with store._tx() as conn:
        conn.execute("UPDATE pipeline_rejects SET resolved_at = NULL, resolved_by = NULL, "
                     "replay_batch = NULL WHERE job_id = ? AND (resolved_by IS NOT NULL OR "
                     "replay_batch IS NOT NULL)", (job_id,))
        conn.execute(f"UPDATE pipeline_replays SET status = '{ReplayStatus.ROLLED_BACK}', finished_at = "
                     f"coalesce(finished_at, ?) WHERE job_id = ? AND status != '{ReplayStatus.ROLLED_BACK}'",
                     (now(), job_id))
        conn.execute("UPDATE import_jobs SET rows_resolved = 0 WHERE id = ?", (job_id,))
