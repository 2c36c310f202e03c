"""kill -9 while the ``unique`` rule's job-wide index (``unique.db`` in the job's workspace)
is being written.

The index is a scratch SQLite file opened with ``journal_mode=OFF`` and ``synchronous=OFF``
("rebuilt on resume", says its docstring -- it is not: resume reuses it and only forgets
keys of uncommitted records). A process killed while SQLite writes its pages leaves a torn
b-tree, and every later ``resume`` fails with "database disk image is malformed".

With the default-sized chunks (here one 40k-row chunk, PIPELINE_CHUNK_SIZE defaults to
32768) the index write is long enough to be caught: the test kills the engine as soon as
the index file grows past its first pages. The 2000-row chunks of the other tests make the
window small, but test_crash.py lands in it now and then too.
"""

from __future__ import annotations

import glob
import os
import signal


from .faultkit import Lab, digest, index_is_torn, wait_for

TRIES = 5
BIG_CHUNKS = {"PIPELINE_CHUNK_SIZE": "40000", "PIPELINE_BATCH_SIZE_MAX": "50000"}


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def kill_while_index_written(lab: Lab, past_bytes: int = 12_288) -> tuple[str, str]:
    """Run the pipeline; kill -9 it once the index (its file and write-ahead log together)
    has grown past ``past_bytes``: past the pages that create its tables, into its keys.
    (Counting ids are stored as runs, so the keys of a 40k-row chunk take a few pages.)"""
    known = lab.job_ids()
    proc = lab.spawn("run", lab.pipeline, "--no-ui", "--json", env=BIG_CHUNKS)
    pattern = str(lab.state.parent / "jobs" / "*" / "unique.db")
    index = wait_for(lambda: proc.poll() is not None or glob.glob(pattern), every=0.0005)
    assert proc.poll() is None, "the job ended before its unique index existed"
    index = index[0]
    while proc.poll() is None:
        if _size(index) + _size(index + "-wal") > past_bytes:
            os.kill(proc.pid, signal.SIGKILL)
            break
    assert proc.wait() == -signal.SIGKILL, "the job ended before it was killed"
    (job,) = lab.job_ids() - known
    return job, index


def test_resume_after_kill_while_the_unique_index_is_written(reference, orders_csv, tmp_path):
    for attempt in range(TRIES):
        lab = Lab(tmp_path / f"try{attempt}", orders_csv)
        job, index = kill_while_index_written(lab)
        if index_is_torn(index):
            break
    res = lab.cli("resume", job, "--json", env=BIG_CHUNKS)
    assert res.returncode == 0, str(res)
    summary = res.last_json()
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert summary[key] == reference.summary[key]
    assert digest(lab.dest) == reference.digest
    assert lab.store_rejects(job) == reference.rejects
