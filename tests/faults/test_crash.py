"""kill -9 the engine at seeded random moments, then resume: exactly once (invariant 2).

Moments: for each mode the kills are spread (stratified, seeded) over the duration of a
reference run of the same file, counted from the moment the job shows as running; the
first scenario of each mode is instead anchored at the process start, around the moment
the job record is created. Every third scenario also kills the resume itself at a random
moment and resumes again. Odd atomic scenarios load into a table that already holds rows
made by hand (the "prior content").

While a killed job waits for its resume, the destination must already be consistent:
- append: it holds exactly the rows of the batches its ledger lists (the reference run's
  rows of those batches), nothing more;
- atomic: the target table is untouched (absent, or exactly its prior content) unless the
  publish committed, in which case it holds the complete result; only ``_etl_stage_*``
  holds partial rows.

The scenarios are independent (own folder, destination and state store) and run two at a
time on a thread pool (the references were measured two at a time as well); each is then
reported as its own test item.

Known bugs a random kill can land on -- handled so that the other invariants stay checked:
- test_commit_kill.py: a kill inside a destination commit leaves a hot journal and
  ``resume`` refuses with "attempt to write a readonly database". The scenario records the
  hit, lets SQLite recover the journal the way any read-write client (the sqlite3 shell)
  would, and resumes again.
- test_unique_index_kill.py: a kill while the unique rule's index is written tears it
  ("database disk image is malformed") and the job can never be resumed. The scenario
  checks the index after every kill; when it is torn, it records the hit, rolls the job
  back and runs the pipeline again (what an operator can do), and checks that result.
Hits are printed (run with -s) and listed in each scenario's outcome.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .faultkit import (ROWS, TABLE, Digest, Lab, Reference, assert_conservation, digest,
                       index_is_torn, kill9, ledger, make_hand_table, recover_journal,
                       stage_tables, unique_index, user_tables, wait_for)

KILLS = {"append": 12, "atomic": 10}
# The sizer grows and shrinks batches between these bounds, so kills land on every size.
DYNAMIC = {"PIPELINE_BATCH_SIZE_MIN": "700", "PIPELINE_BATCH_SIZE_MAX": "2000"}
SCENARIOS = [(mode, i) for mode, n in KILLS.items() for i in range(n)]
LANES = int(os.environ.get("FAULTS_LANES", "2"))
HOT_JOURNAL = "attempt to write a readonly database"
MALFORMED = "database disk image is malformed"
OURS = "WHERE _etl_job_id IS NOT NULL"
HAND = "WHERE _etl_job_id IS NULL"


def committed_batches(db, job_id: str) -> int:
    entries = ledger(db, job_id)
    numbers = [e[1] for e in entries]
    assert numbers == list(range(1, len(numbers) + 1)), f"ledger batches not contiguous: {numbers}"
    for prev, nxt in zip(entries, entries[1:], strict=False):
        assert nxt[2] == prev[3] + 1, f"ledger row ranges have a gap or overlap: {prev} -> {nxt}"
    return len(numbers)


def check_while_interrupted(lab: Lab, job_id: str, mode: str, ref: Reference,
                            prior: Digest) -> int:
    """The destination of a killed job, before any resume: consistent, no partial batch.

    Batch sizes vary here (DYNAMIC), so the reference is cut by rows, not batch numbers:
    rows land in source order, so the ledger's row count is a prefix of the reference."""
    k = committed_batches(lab.dest, job_id)
    n = sum(e[4] for e in ledger(lab.dest, job_id))
    prefix = digest(ref.dest, where=f"WHERE rowid IN (SELECT rowid FROM {TABLE} "
                                    f"ORDER BY rowid LIMIT {n})")
    stages = stage_tables(lab.dest)
    if mode == "append":
        assert not stages, stages
        got = digest(lab.dest)
        if k == 0:
            assert not got.exists or got.rows == 0, got.short()
        else:
            assert got == prefix, (f"after {k} committed batches the table should hold exactly "
                                   f"the reference rows of batches 1..{k}: {got.short()} vs "
                                   f"{prefix.short()}")
        return k
    assert user_tables(lab.dest) in ([], [TABLE]), user_tables(lab.dest)
    if not stages and ledger(lab.dest, job_id) and all(
            e[0] == TABLE for e in ledger(lab.dest, job_id)):
        # the publish transaction committed before the kill: complete, nothing partial
        assert digest(lab.dest, where=OURS) == ref.digest
        assert digest(lab.dest, where=HAND).rows == prior.rows
        if prior.exists:
            assert digest(lab.dest, where=HAND) == prior
        return k
    target = digest(lab.dest)
    assert target == prior, (f"target of an unfinished atomic job was touched: "
                             f"{target.short()} vs prior {prior.short()}")
    assert len(stages) <= 1, stages
    if stages:
        got = digest(lab.dest, table=stages[0])
        if k == 0:
            assert got.rows == 0, got.short()
        else:
            assert got == prefix, f"staging after {k} batches: {got.short()} vs {prefix.short()}"
    else:
        assert k == 0, f"{k} committed batches but no staging table and no target"
    return k


class UniqueIndexTorn(Exception):
    """The known unique-index bug (test_unique_index_kill.py) made the job unresumable."""


def resume_once(lab: Lab, job_id: str, notes: list) -> dict:
    res = lab.cli("resume", job_id, "--json")
    if res.returncode == 2 and HOT_JOURNAL in res.stderr:
        notes.append("hot-journal bug hit: resume refused; journal recovered, resumed again")
        recover_journal(lab.dest)
        res = lab.cli("resume", job_id, "--json")
    if res.returncode == 1 and MALFORMED in res.stderr:
        raise UniqueIndexTorn(res.stderr_lines[-1])
    assert res.returncode == 0, str(res)
    return res.last_json()


def _committed(lab: Lab) -> int:
    """Batches the store shows committed (0 while the engine is still creating it)."""
    try:
        rows = lab.store_query("SELECT count(*) FROM pipeline_batches WHERE status = 'COMMITTED'")
    except sqlite3.DatabaseError:
        return 0
    return rows[0][0] if rows else 0


def scenario(mode: str, i: int, ref: Reference, orders_csv, tmp_path) -> dict:
    rng = random.Random(f"etlconsole-kill-{mode}-{i}")
    n = KILLS[mode]
    kill_the_resume = i % 3 == 2
    notes: list[str] = []
    at_kill: list[int] = []         # batches committed when each kill landed
    lab = Lab(tmp_path, orders_csv, mode=mode)
    lab.env = dict(DYNAMIC)
    if mode == "atomic" and i % 2:
        make_hand_table(lab.dest, rows=25)
    prior = digest(lab.dest)

    t0 = time.monotonic()
    proc = lab.spawn("run", lab.pipeline, "--no-ui", "--json")
    if i == 0:      # around the creation of the job record
        delay = ref.job_created_s * rng.uniform(0.9, 1.2)
    else:
        # Spread over the run by its progress: after a random share of the reference's
        # batches have committed, then somewhere within the next one. (A share of the
        # reference's *time* missed half the runs when the machine's load changed between
        # the reference and the scenario: 11 of 22 kills landed.)
        wait_for(lambda: proc.poll() is not None or lab.job_started(), every=0.002)
        t0 = time.monotonic()
        total = max(len(ledger(ref.dest, ref.job_id)), 1)
        target = int((i - 1 + rng.random()) / (n - 1) * total * 0.9)
        wait_for(lambda: proc.poll() is not None or _committed(lab) >= target, every=0.003)
        time.sleep(rng.uniform(0.0, ref.run_s / total))
        delay = time.monotonic() - t0
    time.sleep(max(0.0, delay - (time.monotonic() - t0)))
    killed = kill9(proc)

    # Every third scenario asks `jobs --json` (which must show the dead job interrupted);
    # the others go straight to `resume`, which has to find that out by itself.
    jobs = lab.jobs() if i % 3 == 0 or kill_the_resume else [
        {"id": j, "status": "succeeded" if lab.store_job(j)["status"] == "succeeded"
         else "interrupted"} for j in lab.job_ids()]
    last_summary = None
    if not jobs:
        # Killed before the job record existed: nothing may have been written at all.
        assert killed
        assert digest(lab.dest) == prior
        notes.append("killed before the job existed; ran the pipeline again")
        last_summary = lab.run()
        job_id = last_summary["job_id"]
    else:
        assert len(jobs) == 1, jobs
        job_id, status = jobs[0]["id"], jobs[0]["status"]
        if not killed:
            assert proc.returncode == 0 and status == "succeeded", (proc.returncode, status)
        rounds = 0
        while status != "succeeded":
            rounds += 1
            assert rounds <= 6, "resume does not converge"
            assert status == "interrupted", f"a killed job shows as {status!r}"
            at_kill.append(check_while_interrupted(lab, job_id, mode, ref, prior))
            try:
                if index_is_torn(unique_index(lab, job_id)):
                    raise UniqueIndexTorn("the kill tore the unique index")
                if kill_the_resume and rounds <= 2:
                    p = lab.spawn("resume", job_id, "--json")
                    time.sleep(rng.uniform(0.3, ref.wall_s))
                    if kill9(p):
                        notes.append("resume killed")
                    elif p.returncode == 2 and HOT_JOURNAL in p.err_path.read_text():
                        notes.append("hot-journal bug hit: resume refused; journal recovered")
                        recover_journal(lab.dest)
                    else:
                        assert p.returncode == 0, p.err_path.read_text()
                    status = lab.job(job_id)["status"]
                else:
                    last_summary = resume_once(lab, job_id, notes)
                    assert last_summary["status"] == "succeeded", last_summary
                    status = last_summary["status"]
            except UniqueIndexTorn as exc:
                # what an operator can do: roll the job back and run the pipeline again
                notes.append(f"unique-index bug hit ({exc}); rolled back and ran again")
                assert lab.rollback(job_id).last_json()["status"] == "rolled_back"
                assert digest(lab.dest) == prior and not stage_tables(lab.dest)
                last_summary = lab.run()
                job_id, status = last_summary["job_id"], last_summary["status"]

    # -- the result equals the uninterrupted run ------------------------------------
    final = lab.store_job(job_id)
    assert final["status"] == "succeeded"
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert final[key] == ref.summary[key], (key, final[key], ref.summary[key])
        if last_summary is not None:
            assert last_summary[key] == ref.summary[key], (key, last_summary, ref.summary)
    assert final["rows_read"] == ROWS
    assert_conservation(final)
    got = digest(lab.dest, where=OURS)
    assert got == ref.digest, f"{got.short()} != reference {ref.digest.short()}"
    assert digest(lab.dest).rows == ref.digest.rows + prior.rows
    if prior.exists:
        assert digest(lab.dest, where=HAND) == prior
    rejects = lab.rejects(job_id) if i == 0 else lab.store_rejects(job_id)
    assert rejects == ref.rejects
    assert not stage_tables(lab.dest)
    assert user_tables(lab.dest) == [TABLE]
    batches = committed_batches(lab.dest, job_id)
    entries = ledger(lab.dest, job_id)
    assert sum(e[4] for e in entries) == ref.summary["rows_loaded"]
    assert entries[0][2] == 1 and entries[-1][3] == ROWS and batches == len(entries)
    return {"delay": round(delay, 3), "killed": killed, "batches_at_kill": at_kill,
            "notes": notes}


@pytest.fixture(scope="module")
def outcomes(references, orders_csv, tmp_path_factory) -> dict:
    def one(mode, i):
        try:
            return scenario(mode, i, references[mode], orders_csv,
                            tmp_path_factory.mktemp(f"kill-{mode}-{i}"))
        except BaseException as exc:   # reported by the scenario's own test item
            return exc
    with ThreadPoolExecutor(LANES) as pool:
        # interleave the modes, as the references were measured: one append, one atomic
        order = sorted(SCENARIOS, key=lambda s: (s[1], s[0]))
        futures = {s: pool.submit(one, *s) for s in order}
        return {s: f.result() for s, f in futures.items()}


@pytest.mark.parametrize("mode,i", SCENARIOS, ids=[f"{m}-{i}" for m, i in SCENARIOS])
def test_kill9_then_resume_is_exactly_once(mode, i, outcomes, record_property):
    outcome = outcomes[(mode, i)]
    if isinstance(outcome, BaseException):
        raise outcome
    record_property("outcome", outcome)
    print(f"{mode}-{i}: {outcome}")


def test_enough_kills_landed_mid_run(outcomes):
    """At least 20 of the kills hit a live engine (not one that had already finished)."""
    done = [o for o in outcomes.values() if not isinstance(o, BaseException)]
    killed = sum(o["killed"] for o in done) + sum(
        n.startswith("resume killed") for o in done for n in o["notes"])
    spread = sorted(k for o in done for k in o["batches_at_kill"])
    print(f"{killed} kills landed; batches committed at each: {spread}")
    assert killed >= 20, [o for o in done]
