"""Invariant 6: memory respects PIPELINE_MAX_MEMORY_MB — by throttling, and if that is not
enough by failing the job resumably; never by being killed by the OS."""

from __future__ import annotations

from .faultkit import Lab, assert_conservation, digest, write_orders

HOG = '''
class Hog:
    """Keeps 20 MB per batch it sees: memory only grows, whatever the engine throttles."""
    kept = []
    def process(self, batch):
        if batch.num_rows:
            self.kept.append(b"x" * 20_000_000)
        return batch
'''


def test_two_million_rows_under_a_200_mb_budget(tmp_path):
    source = tmp_path / "orders2m.csv"
    manifest = write_orders(source, 2_000_000)
    lab = Lab(tmp_path / "lab", source)
    lab.env = {"PIPELINE_MAX_MEMORY_MB": "200", "PIPELINE_BATCH_SIZE_MIN": "1000",
               "PIPELINE_BATCH_SIZE_MAX": "50000", "PIPELINE_CHUNK_SIZE": "32768"}
    summary = lab.run(timeout=600)
    assert summary["status"] == "succeeded"
    assert summary["rows_read"] == 2_000_000
    assert summary["rows_loaded"] == manifest.expected_loaded
    # VmHWM: the engine's own peak, as the kernel measured it
    assert summary["peak_rss_mb"] <= 210, summary


def test_a_budget_that_throttling_cannot_meet_fails_resumably_then_resume_completes(tmp_path):
    source = tmp_path / "orders.csv"
    write_orders(source, 200_000)
    ref = Lab(tmp_path / "ref", source)
    expected = ref.run()
    lab = Lab(tmp_path / "lab", source)
    (lab.folder / "hog_phase.py").write_text(HOG, encoding="utf-8")
    text = lab.pipeline.read_text(encoding="utf-8")
    head, sep, load = text.rpartition("[[phases]]\ntype = \"load\"")
    lab.pipeline.write_text(f'{head}[[phases]]\ntype = "hog_phase:Hog"\n\n{sep}{load}', encoding="utf-8")
    env = {"PYTHONPATH": str(lab.folder), "PIPELINE_MAX_MEMORY_MB": "230",
           "PIPELINE_BATCH_SIZE_MIN": "5000", "PIPELINE_BATCH_SIZE_MAX": "5000",
           "PIPELINE_CHUNK_SIZE": "5000"}
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json", env=env)
    assert res.returncode == 1, str(res)             # failed, not killed (-9) by the OS
    failed = res.last_json()
    assert failed["status"] == "failed"
    assert "memory budget exceeded" in failed["error"] and "resumable" in failed["error"]
    assert failed["rows_read"] < 200_000
    assert "Traceback" not in res.stderr
    resumed = lab.cli("resume", failed["job_id"], "--json",
                      env={**env, "PIPELINE_MAX_MEMORY_MB": "4000"})
    assert resumed.returncode == 0, str(resumed)
    done = resumed.last_json()
    assert_conservation(done)
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert done[key] == expected[key]
    assert digest(lab.dest) == digest(ref.dest)
    shown = lab.cli("show", failed["job_id"], "--json").last_json()
    assert shown["status"] == "succeeded" and shown["resumes"] == 1
