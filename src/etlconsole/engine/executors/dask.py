"""The Dask executor's driver (ADR 0026): one task per part (file) on a ``dask.distributed``
cluster, the job's record, and the only writer of the state store.

The driver plans, checks and opens the destination once (so parallel writers find the
table and ledger made), records the job, submits the tasks, and records each part when it
completes: its batches (begin + commit, idempotent per batch number), their rejects, then
a ``part`` checkpoint. A part recorded by a driver killed half way is recorded again, the
same, by the resume that re-runs it. With a unique rule a key pre-pass runs first (one
task per part, spilling its validate phase's output for the part's load task, ADR 0028),
two tasks sort their keys (the first half's, then all: the first half's loads start on the
first), and only the keys held by more than one part reach the load tasks.

Dask is imported only when a job asks for it (``cluster.require_dask``); the cluster's
lifecycle is ``cluster.py``, the unique rule's pre-pass ``keys.py``, a part ``parts.py``.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from typing import Any

from ...errors import JobFailed, UserError
from ...interrupts import shielded
from ...records import JobStatus
from .. import manyfiles
from ..figures import phase_table
from ..job import Job
from ..loader import Committed
from ..sources import SourceFile
from . import keys as K
from . import parts as P
from . import ranges as R
from .cluster import cluster, wait_for_orphans
from .spill import spill_fits


def refuse_unsupported(job: Job) -> None:
    """What the Dask executor cannot run, refused before anything is written."""
    plan = job.plan
    if plan.branches:
        raise UserError(f"{plan.spec.file}: a branched pipeline runs with --executor local only")
    for t in job.targets:
        if not type(t.destination).parallel_writers:
            raise UserError(f"{t.destination.where(t.path)}: {t.destination.title} takes one writer "
                            "at a time, so the Dask executor cannot load into it; load into "
                            "PostgreSQL or a Parquet/CSV folder, or use --executor local")
    uniques = [f"{p.label} {r.column}" for p in plan.phases
               for r in (getattr(p.phase, "rules", None) or []) if p.type == "validate" and r.unique]
    if len(uniques) > 1:
        raise UserError(f"{plan.spec.file}: the Dask executor handles one unique rule, this "
                        f"pipeline has {len(uniques)} ({'; '.join(uniques)}); use --executor local")


class DaskRun:
    """One run segment of a job on a cluster: ``run()`` returns the summary like
    ``Runner.run``. ``done``: parts a previous segment recorded (resume)."""

    def __init__(self, job: Job, parts: list[SourceFile] | None, *, dest: str | None, workers: int,
                 scheduler: str | None, done: dict[int, dict] | None = None,
                 progress: Callable[[dict | None], None] | None = None, log: Any = None):
        # parts None: cut once the cluster's threads are known (executors.part_files)
        self.job, self.dest = job, dest
        self.parts: list[SourceFile] = parts or []
        self.cut_later = parts is None
        self.workers, self.scheduler, self.log = workers, scheduler, log
        self.progress = progress
        # Parts are recorded in file order (a part's records are numbered after those of
        # the files before it, as a local run numbers them), so the parts done are always
        # a prefix; a part completed early waits in ``waiting`` for those before it.
        done = done or {}
        prefix = 0
        while prefix in done:
            prefix += 1
        self.done = {k: done[k] for k in range(prefix)}
        self.waiting: dict[int, P.PartResult] = {}
        self.points: dict[int, Any] = {}     # file index -> future of its ranges' boundaries
        self.watcher: Any = None
        self.committed = Committed()
        self.warned = 0
        self.bytes_done = 0
        # the highest RSS of a worker while it ran one of the job's load parts (a part's
        # own peak: parts.run_part), what the job's peak is besides the driver's own
        self.peak_mb = 0.0
        # the main line's rejects by phase label, what the job's end adds up (Job.finish);
        # None once a part recorded before this count existed is among the done
        self.rejects_by_label: dict[str, int] | None = {}
        for data in self.done.values():
            self._count(data)
        self.recorded = self._recorded()

    def _recorded(self) -> tuple[Committed, frozenset[int], int]:
        """What the recorded parts hold — counts, parts, bytes — as one value the progress
        watcher's thread reads whole (a part counted in ``committed`` and not yet in ``done``
        would count twice in a sample taken between the two)."""
        return self.committed, frozenset(self.done), self.bytes_done

    def _count(self, data: dict) -> None:
        c = self.committed
        self.committed = Committed(rows_read=c.rows_read + data["records"],
                                   rows_loaded=c.rows_loaded + data["rows_loaded"],
                                   rows_rejected=c.rows_rejected + data["rows_rejected"],
                                   batches=c.batches + data["batches"])
        self.warned += data.get("warned", 0)
        self.bytes_done += data.get("bytes_read", 0)
        self.peak_mb = max(self.peak_mb, data.get("peak_rss_mb") or 0.0)
        labels = data.get("rejects_by_label")
        if labels is None or self.rejects_by_label is None:
            self.rejects_by_label = None
        else:
            for label, n in labels.items():
                self.rejects_by_label[label] = self.rejects_by_label.get(label, 0) + n
        for st, line in zip(self.job.stats, data.get("stats", []), strict=False):
            for k in ("rows_in", "rows_out", "rejected", "warned"):
                setattr(st, k, getattr(st, k) + line.get(k, 0))
            st.seconds += line.get("seconds", 0.0)

    def run(self) -> dict:
        job = self.job
        for t in job.targets:
            t.destination.check(t.schema)
        if job.record is None:
            job.open()
        else:
            job.workspace.mkdir(parents=True, exist_ok=True)
            job.mark_process(resumes=(job.record.get("resumes") or 0) + 1)
        job.store.add_event(job.job_id, "executor", executor="dask", workers=self.workers,
                            scheduler=self.scheduler)
        job.started = time.monotonic()
        status, error = JobStatus.FAILED, "the engine stopped unexpectedly"   # type: str, str | None
        try:
            job.begin_segment()
            for t in job.targets:       # the table and the ledger, once, before the writers
                t.destination.open(t.schema)
            with cluster(self.workers, self.scheduler, job.settings.max_memory_mb) as client:
                self._cut(client)
                self._run_parts(client)
            self._check_reject_rate()
            for t in job.targets:
                t.destination.publish(t.schema)
            status, error = JobStatus.SUCCEEDED, None
        except (KeyboardInterrupt, Exception) as exc:   # a task's crash, a worker killed too often: resumable
            status, error = job.ended_by(exc)
        finally:
            with shielded(drop=True):
                summary = self._end(status, error)
        return summary

    def _cut(self, client: Any) -> None:
        """The job's parts, recorded (the ``parts`` event, before any part is submitted:
        what a resume runs again): cut now for the cluster's threads unless they were given."""
        from . import part_files
        threads = sum(client.nthreads().values())
        if self.cut_later:
            self.parts = part_files(self.job.plan, workers=max(1, threads))
        self.job.store.add_event(self.job.job_id, "parts", parts=len(self.parts),
                                 parts_done=len(self.done), threads=threads,
                                 split=R.split_of(self.parts))

    def _task(self, k: int) -> P.PartTask:
        job = self.job
        decisions = {d["phase"]: d for d in job.plan.conditions}
        dialects, index = job.plan.dialects, self.parts[k].index    # a file's parts share its sniff
        return P.PartTask(job.job_id, k, self.parts[k], job.plan.spec,
                          dialects[index] if index < len(dialects) else job.plan.dialect,
                          self.dest, decisions, job.settings, str(job.workspace),
                          batch_rows=job.settings.batch_size_max, topic=f"progress-{job.job_id}")

    def _prepass(self, client: Any, todo: list[int]) -> tuple[list[tuple[Any, list[int]]], dict[int, str]]:
        """The unique rule's pre-pass (ADR 0028): its merges — each the future of the
        cross-part duplicate keys among the parts before a cut, with the parts of ``todo``
        that need no more than those — and where the pre-pass of each part of ``todo``
        spilled. ``todo``: the parts to load on the merges (not part 0 of a pipeline that
        cannot spill: it loads at once). No merges: no unique rule, or one part. Every
        part's keys count, those of parts done in an earlier segment too."""
        plan = self.job.plan
        if K.unique_rule(plan) is None or len(self.parts) < 2:
            return [], {}
        # A fresh folder per segment: a spill an earlier segment left is never read.
        folder = self.job.workspace.resolve() / "spill" / uuid.uuid4().hex[:12]
        spills = {k: str(folder / f"part-{k:05d}.spill") for k in todo} \
            if K.spillable(plan) and spill_fits(self.job.workspace, [self.parts[k] for k in todo]) else {}
        keyed = [client.submit(K.part_keys, self._task(k), spills.get(k), self._points(client, k),
                               pure=False, key=f"keys-{k}-{self.job.job_id}")
                 for k in range(len(self.parts))]
        # Part k's load needs only the keys of the parts before it, so the first half's
        # loads wait for the first half's merge, not for every pre-pass: they run while the
        # second half's pre-passes and merge do, and no worker waits idle for the one sort
        # of all the keys (a sort of the first half's keys, again: ~0.04 s of CPU a job of
        # 2M keys, against ~0.15 s of both workers idle).
        n = len(self.parts)
        cuts = [(n + 1) // 2, n] if n >= 4 else [n]
        merges, start = [], 0
        for cut in cuts:
            merged = client.submit(K.cross_part, *keyed[:cut], key=f"dups-{cut}-{self.job.job_id}",
                                   pure=False)
            merges.append((merged, [k for k in todo if start <= k < cut]))
            start = cut
        return merges, spills

    def _run_parts(self, client: Any) -> None:
        if self.done or self.job.record is not None:
            wait_for_orphans(client, self.job.job_id)
        from .progress import Watcher
        self.watcher = Watcher(client, f"progress-{self.job.job_id}", self, self.progress)
        self.watcher.start()
        try:
            self._submit_all(client)
        finally:
            self.watcher.close()
            shutil.rmtree(self.job.workspace / "spill", ignore_errors=True)

    def _submit_all(self, client: Any) -> None:
        from distributed import as_completed
        todo = [k for k in range(len(self.parts)) if k not in self.done]
        futures, rest = [], todo
        if todo and todo[0] == 0 and not K.spillable(self.job.plan):
            futures.append(self._submit(client, 0, None))   # no duplicates to wait for
            rest = todo[1:]
        merges, spills = self._prepass(client, rest)
        if not merges:
            futures += [self._submit(client, k, None) for k in rest]
        loads_after = {m.key: parts for m, parts in merges}
        merged = [m for m, _ in merges]
        try:
            # with_results: the client's thread fetches each part's result as it completes,
            # not this one after it wakes (the last part's fetch is the job's tail)
            pending = as_completed(futures + merged, with_results=True)
            for future, result in pending:
                # Released once fetched: a worker lost later must not make Dask compute
                # a finished part again to keep its result.
                future.release()
                if future.key in loads_after:
                    # Each load task is handed its own part's duplicates as a value (the keys
                    # it holds that an earlier part owns: each occurrence travels once). A
                    # task with no dependency is queued and balanced by the scheduler like a
                    # file's (a worker that did not write a part's spill reads it from the
                    # job's workspace, or, on another machine without it, reads the file),
                    # and survives a worker's death like one. Not `scatter(broadcast=True)`:
                    # a worker lost while Dask replicates hangs the scheduler's replicate,
                    # and the job with it (dask/distributed#5704; seen in this test suite).
                    for k in loads_after.pop(future.key):
                        futures.append(self._submit(client, k, K.held_by(result, k), spills.get(k)))
                        pending.add(futures[-1])
                    continue
                self.waiting[result.part] = result
                while len(self.done) in self.waiting:
                    self._record(self.waiting.pop(len(self.done)))
        except BaseException:
            client.cancel(futures + merged)
            raise

    def _submit(self, client: Any, k: int, dups: Any, spill: str | None = None) -> Any:
        return client.submit(P.run_part, self._task(k), dups, spill, self._points(client, k),
                             key=f"part-{k}-{self.job.job_id}", pure=False)

    def _points(self, client: Any, k: int) -> Any:
        """What part ``k`` needs when it is a range of a cut file: the results of the steps
        of its file's boundary chain that find its start and its end (``ranges.boundaries``:
        one task per cut, each scanning on from the one before; submitted once per file).
        None for a whole file. The driver waits for the two steps and passes their results
        as values: a range task with no dependency is queued and balanced by the scheduler
        like a file's; one depending on the steps' futures went where they were held (one
        worker ran 5.3 s of a job's CPU, the other 2.2 s). The ranges before it are running
        meanwhile, and the steps run ahead of them (submitted first, ~35 ms each)."""
        f = self.parts[k]
        if not f.is_part:
            return None
        if f.index not in self.points:
            ranges = [p for p in self.parts if p.index == f.index]
            dialect = self._task(k).dialect
            steps: list[Any] = []
            for j in range(len(R.cuts_of(ranges))):
                steps.append(client.submit(R.boundaries, ranges, dialect, j, steps[-1] if steps else None,
                                           pure=False, key=f"bounds-{f.index}-{j}-{self.job.job_id}"))
            self.points[f.index] = (R.cuts_of(ranges), steps)
        cuts, steps = self.points[f.index]
        return [steps[cuts.index(c)].result() for c in (f.start, f.end) if c]

    def _record(self, r: P.PartResult) -> None:
        """A completed part into the state store, in one transaction (``record_part``): its
        batches with their rejects, the job's counters and file notes, then its checkpoint
        (what resume counts as done). Records are renumbered through the files here (the
        worker counts within its file) and where the file starts is noted in the job's
        record, as a local run of the same files does (engine.manyfiles)."""
        job = self.job
        offset = self.committed.rows_read       # records of the parts before this one
        files: list[dict[str, Any]] = []
        if job.fingerprint.get("files"):
            files.append(self._file_event(r, offset))
            job.fingerprint = manyfiles.noted(job.fingerprint, files)
        data = {"part": r.part, "file": r.path, "records": r.records,
                "rows_loaded": sum(b.loaded for b in r.batches),
                "rows_rejected": sum(b.rejected for b in r.batches), "batches": len(r.batches),
                "warned": r.warned, "bytes_read": r.bytes_read, "worker": r.worker,
                "seconds": round(r.seconds, 3), "skipped": r.skipped, "stats": r.stats,
                "rejects_by_label": r.rejects_by_label, "peak_rss_mb": r.peak_rss_mb,
                "batch": max((b.number for b in r.batches), default=0), "first_record": offset + 1}
        self._count(data)
        self.done[r.part] = data
        self.recorded = self._recorded()
        c = self.committed
        # the phase table so far (the monitor's, as a local job's loader writes it with
        # each batch), the parts' lines added up
        fields = {"rows_read": c.rows_read, "rows_loaded": c.rows_loaded,
                  "rows_rejected": c.rows_rejected, "retries": job.retries,
                  "phase_stats": phase_table(job.stats)}
        batches = [{"batch_number": b.number, "row_start": b.row_start + offset,
                    "row_end": b.row_end + offset, "rows_loaded": b.loaded,
                    "rows_rejected": b.rejected, "attempts": b.attempts,
                    "duration_ms": b.duration_ms} for b in r.batches]
        job.store.record_part(job.job_id, batches, r.rejects, row_offset=offset, job_fields=fields,
                              checkpoint=data, row_count=c.rows_read, files=files)
        self._sample(r)
        if self.log:
            self.log.info("part.done", job=job.job_id, part=r.part, file=r.path, worker=r.worker,
                          rows=r.records, seconds=round(r.seconds, 3))

    def _file_event(self, r: P.PartResult, offset: int) -> dict[str, Any]:
        """What the job's record learns of the part's file: where it starts (its first
        part) and its records so far (a byte range adds its own to those of the ranges
        before it, recorded before it: parts are recorded in order). The content proof
        is of a whole file only (a range's reader hashed the range)."""
        f = self.parts[r.part]
        if f.start == 0:
            event: dict[str, Any] = {"index": f.index, "first_record": offset + 1, "records": r.records}
        else:
            before = self.job.fingerprint["files"][f.index].get("records") or 0
            event = {"index": f.index, "records": before + r.records}
        if r.content and not f.is_part:
            event |= {"content_bytes": r.content[0], "content_sha256": r.content[1]}
        return event

    def _sample(self, r: P.PartResult) -> None:
        """A metrics sample of the job after a part, unless the watcher (progress.py) is
        sampling: its figures include the running parts, and rows read must not go back."""
        if self.watcher is not None:
            return
        job, c = self.job, self.committed
        seg = time.monotonic() - job.started
        sample = {"elapsed_s": round(job.elapsed_before + seg, 3), "rows_read": c.rows_read,
                  "rows_loaded": c.rows_loaded, "rows_rejected": c.rows_rejected,
                  "rows_per_s": round(r.records / r.seconds, 1) if r.seconds else 0.0,
                  "rss_mb": r.peak_rss_mb, "batch_size": job.settings.batch_size_max,
                  "queue_depth": 0, "retries": job.retries,
                  "bytes_read": self.bytes_done}
        job.store.add_metric(job.job_id, sample)
        if self.progress:
            self.progress(sample | {"bytes_total": job.fingerprint["size"]})

    def _check_reject_rate(self) -> None:
        limit, c = self.job.plan.spec.max_reject_rate, self.committed
        if limit is not None and c.rows_read and c.rows_rejected / c.rows_read > limit:
            rate = c.rows_rejected / c.rows_read
            raise JobFailed(f"reject rate {rate:.1%} ({c.rows_rejected} of {c.rows_read} rows "
                            f"read) exceeds max_reject_rate {limit:.1%}; see `etlconsole rejects "
                            f"{self.job.job_id}`, then roll back or fix the data and resume")

    def _end(self, status: str, error: str | None) -> dict:
        job = self.job
        for t in job.targets:
            t.destination.close()
        job.release_reserve()
        summary = job.finish(status, error, self.committed, rows_warned=self.warned,
                             rejects_by_label=self.rejects_by_label, peak_rss_mb=self.peak_mb)
        summary["executor"] = "dask"
        summary["parts"] = len(self.parts)
        if self.progress:
            self.progress(None)
        return summary


def done_parts(store: Any, job_id: str) -> dict[int, dict]:
    """The parts earlier segments recorded (their ``part`` checkpoints)."""
    out: dict[int, dict] = {}
    for cp in store.checkpoints(job_id):
        if cp["phase"] == "part":
            data = cp["checkpoint_data"]
            out[int(data["part"])] = data
    return out
