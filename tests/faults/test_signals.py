"""Ctrl-C (SIGINT) and SIGTERM at random moments of a real job, and of its resumes.

Unlike kill -9, these signals let the engine finish its bookkeeping (every second stop is
two signals, the second while it winds down): each stopped process must exit 1 with the job
marked 'interrupted' (never left 'running', never an internal error), and resuming must
reach exactly the uninterrupted run's rows and rejects.

Batches of 200 rows keep the engine's main thread inside state-store writes much of the
time: that is where a signal used to leave a transaction open (test_interrupts.py shows
the moment deterministically; this test shows the whole process surviving it).
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from .faultkit import TIMEOUT, Lab, digest, wait_for

SMALL_BATCHES = {"PIPELINE_BATCH_SIZE_MIN": "200", "PIPELINE_BATCH_SIZE_MAX": "200",
                 "PIPELINE_CHUNK_SIZE": "200", "PIPELINE_CHECKPOINT_INTERVAL": "1000"}
STOPS = 4


def ctrl_c_not_ignored() -> None:
    """Run in the child: a test suite started in the background (`pytest &` in a script)
    passes SIGINT on as ignored, and the engine rightly keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_at_random_moments_then_resume_equals_the_uninterrupted_run(
        tmp_path, orders_csv, reference, sig):
    rng = random.Random(int(sig) * 7919)
    lab = Lab(tmp_path, orders_csv)
    lab.env = dict(SMALL_BATCHES)
    job_id, stopped = None, 0

    def running() -> bool:
        rows = lab.store_query("SELECT id FROM import_jobs WHERE status = 'running'")
        return bool(rows) and (job_id is None or rows[0][0] == job_id)

    for _ in range(STOPS):
        args = ("run", lab.pipeline, "--no-ui", "--json") if job_id is None else (
            "resume", job_id, "--json")
        proc = lab.spawn(*args, preexec_fn=ctrl_c_not_ignored)
        wait_for(lambda proc=proc: proc.poll() is not None or running(), timeout=TIMEOUT, every=0.005)
        job_id = job_id or lab.store_query("SELECT id FROM import_jobs")[0][0]
        time.sleep(rng.uniform(0.0, 0.8))
        twice = False
        if proc.poll() is None:
            proc.send_signal(sig)
            if stopped % 2:             # an impatient operator: again, while it winds down
                time.sleep(rng.uniform(0.0, 0.05))
                twice = proc.poll() is None
                proc.send_signal(sig)
        code = proc.wait(timeout=TIMEOUT)
        err = proc.err_path.read_text()
        status = lab.store_job(job_id)["status"]
        assert "internal error" not in err and "Traceback" not in err, err
        if code == 0:
            assert status == "succeeded"
            break
        if twice and code == -sig:
            # Python gives the signals back to the system as the interpreter exits: a
            # second one landing there ends the process, with the job already recorded.
            assert status == "interrupted", (code, status, err[-2000:])
        else:
            assert (code, status) == (1, "interrupted"), (code, status, err[-2000:])
            assert f"job {job_id} interrupted" in err
        stopped += 1

    assert stopped >= 2, "the signals came too late to stop the job: nothing was tested"
    if lab.store_job(job_id)["status"] != "succeeded":
        assert lab.resume(job_id)["status"] == "succeeded"
    assert digest(lab.dest) == reference.digest
    assert lab.rejects(job_id) == reference.rejects
