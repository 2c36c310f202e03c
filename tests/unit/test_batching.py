"""Load batches: the AIMD sizer and where batches are cut (exact record ranges)."""

import pyarrow as pa
import pytest

from etlconsole.engine.batching import BatchSizer, Pending
from etlconsole.engine.phases.base import ROW


def test_sizer_starts_small_grows_additively_to_the_max():
    sizer = BatchSizer(1_000, 9_000, slow_s=1.0)
    assert sizer.size == 1_000
    seen = []
    for _ in range(12):
        sizer.committed(0.01)
        seen.append(sizer.size)
    assert seen[:3] == [2_000, 3_000, 4_000]
    assert max(seen) == 9_000 and seen[-1] == 9_000


@pytest.mark.parametrize("trouble", [dict(retried=True), dict(refused_rows=3), dict(seconds=5.0)])
def test_sizer_halves_on_retry_refused_rows_or_slow_commit(trouble):
    sizer = BatchSizer(1_000, 64_000, slow_s=1.0)
    sizer.size = 40_000
    seconds = trouble.pop("seconds", 0.01)
    sizer.committed(seconds, **trouble)
    assert sizer.size == 20_000
    for _ in range(10):
        sizer.shrink()
    assert sizer.size == 1_000      # never below the minimum


def _chunk(first: int, last: int, skip: set[int]) -> pa.RecordBatch:
    rows = [r for r in range(first, last + 1) if r not in skip]
    return pa.record_batch({"v": [f"v{r}" for r in rows], ROW: pa.array(rows, pa.int64())})


def _rejects(rows):
    return [{"row": r, "phase": "validate"} for r in rows]


def test_take_cuts_exact_rows_and_keeps_rejects_with_their_records():
    chunk = _chunk(1, 10, skip={3, 8})
    pending = Pending(1, chunk.schema)
    pending.add(chunk, _rejects([3, 8]), {}, last_row=10, bytes_read=100)
    first = pending.take(4, number=1)            # good rows 1,2,4,5 -> records 1..5
    assert first.batch.column(ROW).to_pylist() == [1, 2, 4, 5]
    assert (first.row_start, first.row_end) == (1, 5)
    assert [r["row"] for r in first.rejects] == [3]
    second = pending.flush(number=2)
    assert second.batch.column(ROW).to_pylist() == [6, 7, 9, 10]
    assert (second.row_start, second.row_end) == (6, 10)
    assert [r["row"] for r in second.rejects] == [8]
    assert pending.empty


def test_take_spans_chunks_and_records_between_batches_are_never_lost():
    a, b = _chunk(1, 5, skip=set()), _chunk(6, 12, skip={12})
    pending = Pending(1, a.schema)
    pending.add(a, [], {}, 5, 50)
    pending.add(b, _rejects([12]), {}, 12, 120)
    items = [pending.take(3, n) for n in (1, 2, 3)] + [pending.flush(4)]
    covered = [(i.row_start, i.row_end) for i in items]
    assert covered == [(1, 3), (4, 6), (7, 9), (10, 12)]
    assert [i.rows for i in items] == [3, 3, 3, 2]
    assert [r["row"] for r in items[-1].rejects] == [12]


def test_snapshots_are_cut_with_the_batch_and_present_even_when_empty():
    chunk = _chunk(1, 6, skip=set())
    snap = pa.record_batch({"x": [1, 2, 3], ROW: pa.array([1, 2, 6], pa.int64())})
    pending = Pending(1, chunk.schema)
    pending.add(chunk, [], {2: snap}, 6, 60)
    one = pending.take(2, 1)      # records 1..2
    two = pending.take(2, 2)      # records 3..4: no snapshot row survived, still framed
    three = pending.flush(3)      # records 5..6
    def rows(item):
        [(batch, first, last)] = item.snapshots[2]
        return batch.column(ROW).to_pylist(), first, last
    assert rows(one) == ([1, 2], 1, 2)
    assert rows(two) == ([], 3, 4)
    assert rows(three) == ([6], 5, 6)


def test_take_through_cuts_at_a_record_even_between_good_rows():
    """Resume re-cuts a batch where a destination's ledger says it ended."""
    chunk = _chunk(1, 10, skip={4, 5})
    snap = pa.record_batch({"x": [1, 2], ROW: pa.array([3, 9], pa.int64())})
    pending = Pending(1, chunk.schema)
    pending.add(chunk, _rejects([4, 5]), {1: snap}, 10, 100)
    first = pending.take_through(5, 1)          # rows 1..3, rejects 4 and 5
    assert first.batch.column(ROW).to_pylist() == [1, 2, 3]
    assert (first.row_start, first.row_end) == (1, 5)
    assert [r["row"] for r in first.rejects] == [4, 5]
    [(batch, lo, hi)] = first.snapshots[1]
    assert (batch.column(ROW).to_pylist(), lo, hi) == ([3], 1, 5)
    rest = pending.flush(2)
    assert rest.batch.column(ROW).to_pylist() == [6, 7, 8, 9, 10]
    assert (rest.row_start, rest.row_end) == (6, 10)
    assert pending.rows == 0 and pending.empty


def _blamed(rows):
    """Rejected rows still in Arrow, as the phase line hands them over."""
    from etlconsole.engine.phases.base import Rejects
    batch = pa.record_batch({"v": [f"v{r}" for r in rows], ROW: pa.array(rows, pa.int64())})
    return [(Rejects(batch, ["unique"] * len(rows), ["v"] * len(rows),
                     [f"duplicate {r}" for r in rows]), "validate", "phase 1 (validate)")]


def _cuts(chunks, size):
    """(row_start, row_end, good rows, rejects) of every batch take_next cuts."""
    pending, out = None, []
    for first, last, bad in chunks:
        chunk = _chunk(first, last, skip=bad)
        pending = pending or Pending(first, chunk.schema)
        pending.add(chunk, [], {}, last, 0, blamed=_blamed(sorted(bad)))
        while (item := pending.take_next(size, len(out) + 1)) is not None:
            out.append((item.row_start, item.row_end, item.rows, [r["row"] for r in item.rejects]))
    return out


def test_a_batch_is_full_at_size_good_rows_or_size_over_8_rejects_whatever_the_chunking():
    """A stretch where every row is rejected is cut every size // 8 rejects (reject records
    must not pile up waiting for good rows), at the same records however it was chunked."""
    bad = set(range(101, 301))                # records 101..300 all rejected
    whole = _cuts([(1, 400, bad)], size=80)
    pieces = _cuts([(1, 150, {r for r in bad if r <= 150}), (151, 233, {r for r in bad if 151 <= r <= 233}),
                    (234, 400, {r for r in bad if r >= 234})], size=80)
    assert whole == pieces
    assert whole[0] == (1, 80, 80, [])                         # 80 good rows
    assert whole[1] == (81, 110, 20, list(range(101, 111)))    # 10 rejects (80 // 8)
    assert all(len(rejects) <= 10 for *_, rejects in whole)
    covered = [r for s, e, *_ in whole for r in range(s, e + 1)]
    assert covered == list(range(1, len(covered) + 1))        # contiguous, none lost
    assert sum(len(r) for *_, r in whole) == len([r for r in bad if r <= covered[-1]])
    # the rejects turned into records carry their phase and message
    item = Pending(1, _chunk(1, 1, set()).schema)
    item.add(_chunk(1, 3, {2}), [], {}, 3, 0, blamed=_blamed([2]))
    [record] = item.flush(1).rejects
    assert record["row"] == 2 and record["message"] == "duplicate 2" and record["phase"] == "validate"
