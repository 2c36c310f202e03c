"""Issue 17: the state store's disk fills up during a job (a real 2 MB tmpfs). The job
stops at once and resumably: one line says what is full, the JSON summary is printed, the
job is recorded as failed (not left 'running'), no committed batch is lost, and once
there is room again ``resume`` reaches the uninterrupted result."""

from __future__ import annotations

import os
import subprocess

from ._mounts import tmpfs
from .faultkit import SRC, Lab, assert_conservation, digest, ledger, write_orders

ROWS = 120_000      # the store (metrics, batches, rejects) outgrows 2 MB at about 45,000


def test_state_store_disk_full_stops_the_job_resumably(tmp_path):
    source = tmp_path / "orders.csv"
    write_orders(source, ROWS)
    ref = Lab(tmp_path / "ref", source)
    expected = ref.run()
    with tmpfs(tmp_path / "small", size="2m") as small:
        lab = Lab(tmp_path / "lab", source)
        lab.state = small / "state.db"
        res = lab.cli("run", lab.pipeline, "--no-ui", "--json")
        assert res.returncode == 1, str(res)
        assert "Traceback" not in res.stderr and "Exception in thread" not in res.stderr, str(res)
        errors = [ln for ln in res.stderr_lines if ln.startswith("error:")]
        assert len(errors) == 1, str(res)
        # the store, or the job's workspace beside it (its unique-key index), whichever
        # write found the disk full first
        assert "disk" in errors[0] and "full" in errors[0] and str(small) in errors[0], errors[0]
        assert "resum" in errors[0], errors[0]
        failed = res.last_json()
        assert failed["status"] == "failed" and "is full" in failed["error"], failed
        assert 0 < failed["rows_read"] < ROWS, failed
        assert_conservation(failed)
        job = failed["job_id"]
        # the end of the job was recorded, on the full disk (the failed COMMIT rolled back)
        stored = lab.store_job(job)
        assert stored["status"] == "failed", stored
        assert stored["error"] == failed["error"]
        assert not (small / "jobs" / job / "reserve").exists()
        committed = ledger(lab.dest, job)
        assert committed and sum(e[4] for e in committed) == failed["rows_loaded"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        resumed = lab.resume(job)
    assert resumed["status"] == "succeeded", resumed
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert resumed[key] == expected[key], (key, resumed, expected)
    assert digest(lab.dest) == digest(ref.dest)
    # the batches committed before the disk filled are still there, unchanged
    assert ledger(lab.dest, job)[:len(committed)] == committed


FULL = '''
import errno, os
class Full:
    """Raises what a write to a full disk raises, from its third batch on (until the file
    FREED exists, as if space was freed)."""
    seen = 0
    def process(self, batch):
        Full.seen += 1
        if Full.seen >= 3 and not os.path.exists("FREED"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return batch
'''


def test_a_full_disk_under_a_phase_stops_the_job_instead_of_rejecting_rows(tmp_path):
    """ENOSPC inside a phase (the unique-key index, a plugin's own file) is no row's fault:
    the job stops, resumably, instead of bisecting the batch into rows rejected with the
    OS's message."""
    source = tmp_path / "orders.csv"
    write_orders(source, 20_000)
    ref = Lab(tmp_path / "ref", source)
    expected = ref.run()
    lab = Lab(tmp_path / "lab", source)
    (lab.folder / "full_phase.py").write_text(FULL, encoding="utf-8")
    text = lab.pipeline.read_text(encoding="utf-8")
    head, sep, load = text.rpartition('[[phases]]\ntype = "load"')
    lab.pipeline.write_text(f'{head}[[phases]]\ntype = "full_phase:Full"\n\n{sep}{load}',
                            encoding="utf-8")
    lab.env = {"PYTHONPATH": os.pathsep.join([str(lab.folder), str(SRC)])}
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json")
    assert res.returncode == 1, str(res)
    failed = res.last_json()
    assert "is full" in failed["error"] and "No space left" in failed["error"], failed
    assert "Traceback" not in res.stderr
    [(n,)] = lab.store_query("SELECT count(*) FROM pipeline_rejects WHERE message LIKE "
                             "'%No space%'")
    assert n == 0, "rows were rejected for a full disk"
    (lab.folder / "FREED").write_text("")
    resumed = lab.resume(failed["job_id"])
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert resumed[key] == expected[key]
    assert digest(lab.dest) == digest(ref.dest)
