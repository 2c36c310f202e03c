"""The garbage collector's setting for the length of a job (engine/runner.py)."""

import gc

from etlconsole.engine.runner import _collector_for_a_job


def test_a_job_freezes_what_exists_and_collects_young_objects_less_often_then_restores():
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with _collector_for_a_job():
        assert gc.get_freeze_count() > 1000          # the modules' objects, out of the scans
        assert gc.get_threshold()[0] == 20_000
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_the_setting_is_restored_when_the_job_raises():
    before = gc.get_threshold()
    try:
        with _collector_for_a_job():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
