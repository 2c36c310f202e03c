"""The memory governor's marks, and a tight budget starting with smaller pieces."""

from types import SimpleNamespace

from etlconsole.config import load_settings
from etlconsole.engine.batching import BatchSizer
from etlconsole.engine.governor import Governor
from etlconsole.engine.sampler import DEFAULT_ROOM_MB, fit_to_budget


def test_soft_mark_is_measured_from_the_start_rss():
    g = Governor(10_000)
    assert g.start_mb > 0
    assert g.soft_mb == g.start_mb + 0.7 * (10_000 - g.start_mb)
    g.check()
    assert not g.pressure and not g.over_budget
    tight = Governor(1)                       # below the RSS at start: over at once
    tight.check()
    assert tight.pressure and tight.over_budget


def _fitted(budget: int, rss: float) -> SimpleNamespace:
    settings = load_settings({"PIPELINE_MAX_MEMORY_MB": str(budget)})
    sizer = BatchSizer(settings.batch_size_min, settings.batch_size_max, slow_s=3)
    chunk_rows = fit_to_budget(settings, rss, sizer)
    return SimpleNamespace(settings=settings, sizer=sizer, chunk_rows=chunk_rows)


def test_a_tight_budget_starts_with_pieces_sized_to_its_room():
    r = _fitted(200, 120.0)                   # 80 MB of room
    share = 80 / DEFAULT_ROOM_MB
    assert r.chunk_rows == int(r.settings.chunk_size * share)
    assert r.sizer.high == int(r.settings.batch_size_max * share)
    roomy = _fitted(512, 120.0)
    assert roomy.chunk_rows == roomy.settings.chunk_size
    assert roomy.sizer.high == roomy.settings.batch_size_max
