"""Where a resumed job starts: the destinations' ledgers say what is done, the state store
is made to agree, and the source must still begin with the bytes they were read from.

Main thread, before any of the job's threads start (ADR 0020).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import UserError
from . import extract, manyfiles
from .figures import committed_phase_stats
from .loader import Committed

if TYPE_CHECKING:
    from .job import Job


@dataclass
class Start:
    """Where a run segment starts: what the destinations hold, and what to cut again."""

    committed: Committed = field(default_factory=Committed)
    next_batch: int = 1
    forced: list[tuple[int, int]] = field(default_factory=list)  # (batch, last record)


def prepare_resume(job: Job, record: dict) -> Start:
    """Every destination holds batches 1..k of its own. The job continues after the last
    record all of them hold; a batch some already hold is cut again at the same record
    (their ledger says where) and written only where it is missing."""
    targets = job.targets
    ledgers = {t.label: t.read_ledger() for t in targets}
    _prove_source(job)
    done = min(len(t.held) for t in targets)
    everywhere = [e for e in ledgers[targets[0].label] if e["batch"] <= done]
    partial: dict[int, set[str]] = {}
    for t in targets:
        for number in t.held:
            if number > done:
                partial.setdefault(number, set()).add(t.label)
    ahead = max(targets, key=lambda t: len(t.held))
    forced = [(n, ahead.held[n]["row_end"]) for n in sorted(partial)]
    truth = job.store.reconcile(job.job_id, everywhere, partial=partial,
                                branched=bool(job.plan.branches))
    c = Committed(rows_read=truth["rows_read"], rows_loaded=truth["rows_loaded"],
                  rows_rejected=truth["rows_rejected"], batches=done)
    job.start_after = c.rows_read
    job.bytes_before = (record.get("bytes_read") or 0) if c.rows_read else 0
    _seed_phase_stats(job, record, c.rows_read)
    job.mark_process(resumes=(record.get("resumes") or 0) + 1)
    job.store.add_event(job.job_id, "job.resumed", after_record=job.start_after,
                        batches_committed=done, rows_loaded=c.rows_loaded,
                        partly_committed=sorted(partial))
    return Start(c, next_batch=done + 1, forced=forced)


def _seed_phase_stats(job: Job, record: dict, rows_read: int) -> None:
    """A resumed job's phase table starts from what its committed batches hold, and
    its busy times from what the earlier segments recorded."""
    before = {p.get("label"): p for p in (record.get("phase_stats") or [])
              if isinstance(p, dict) and not p.get("branch")}
    for st in job.stats:
        st.seconds = float((before.get(st.label) or {}).get("seconds") or 0.0)
        st.warned = int((before.get(st.label) or {}).get("warned") or 0)
    committed_phase_stats(job.stats, rows_read, job.store.phase_reject_counts(job.job_id))


def _prove_source(job: Job) -> None:
    """Resume skips the records the destinations hold: the file must still begin with
    the bytes they were read from. The batch furthest on that any destination holds
    kept (n, hash) of the file's first n bytes when it was cut (ADR 0017); they are
    hashed again here, before anything is written. (Size, mtime, head and tail were
    compared already, and the whole-file digest when the job lived to record it.)"""
    held = {n: e for t in job.targets for n, e in t.held.items()}
    proof = job.store.source_proof(job.job_id, set(held))
    if manyfiles.is_many(job.plan):
        manyfiles.prove(job, proof, {n: e["row_end"] for n, e in held.items()})
        return
    if proof is None:       # nothing committed, or a job from before proofs were kept
        return
    size, recorded = proof["source_bytes"], proof["source_sha256"]
    if not extract.same_prefix(job.plan.source, size, recorded):
        raise UserError(
            f"{job.plan.source}: its first {size:,} bytes changed since job {job.job_id} "
            f"loaded records 1 to {held[proof['batch']]['row_end']:,} from them (same size "
            "and modification time, other content); resuming would mix two versions of "
            f"the file. Restore it, or roll the job back ('etlconsole rollback "
            f"{job.job_id}') and run the pipeline again")
