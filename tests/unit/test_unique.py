"""The unique rule's on-disk index: each key remembers its own record, so a resume that
starts in the middle of a chunk forgets exactly the keys of uncommitted records."""

import random

import pyarrow as pa
import pytest

from etlconsole.engine.unique import UniqueIndex


def _keys(index, keys, rows):
    return index.duplicates("k", pa.array(keys), pa.array(rows, pa.int64())).to_pylist()


def test_forget_after_a_record_in_the_middle_of_a_chunk(tmp_path):
    index = UniqueIndex(tmp_path / "u.db")
    # records 1..8, record 3 and 6 missing (rejected on read), one null key (record 5)
    assert _keys(index, [10, 20, 40, None, 70, 80], [1, 2, 4, 5, 7, 8]) == [False] * 6
    index.forget_after(4)          # records 1..4 committed, 5..8 not
    assert _keys(index, [10, 20, 40, 70, 80], [9, 10, 11, 12, 13]) == [True, True, True, False, False]
    index.close()


def test_rows_out_of_record_order_are_tagged_by_their_own_records(tmp_path):
    index = UniqueIndex(tmp_path / "u.db")
    assert _keys(index, ["c", "a", "b"], [30, 10, 20]) == [False, False, False]
    index.forget_after(15)         # keeps "a" (record 10) only
    assert _keys(index, ["a", "b", "c"], [40, 41, 42]) == [True, False, False]
    index.close()


def test_duplicates_within_one_call_and_across_calls(tmp_path):
    index = UniqueIndex(tmp_path / "u.db")
    assert _keys(index, [1, 2, 1], [1, 2, 3]) == [False, False, True]
    assert _keys(index, [2, 3], [4, 5]) == [True, False]
    index.close()


def test_json_array_of_integer_keys_is_what_json_would_write():
    import json

    from etlconsole.engine.unique import _json_array
    for values in (pa.array([1, None, -9_223_372_036_854_775_808, 42], pa.int64()),
                   pa.array([], pa.int32()), pa.array(["a\"b", None, "ü"])):
        assert json.loads(_json_array(values)) == values.to_pylist()


def _reference(calls):
    """What the index must answer: a key is a duplicate when an earlier row (this call's or
    an earlier call's) had it; null keys never are."""
    seen, out = set(), []
    for keys, _ in calls:
        answer = []
        for k in keys:
            answer.append(k is not None and k in seen)
            if k is not None:
                seen.add(k)
        out.append(answer)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_random_calls_match_a_set(tmp_path, seed):
    """Growing ids with repeats near and far, gap-filling ids, nulls, gaps in the record
    numbers, and random ids: integer keys (sorted in Arrow, SQLite asked about keys not
    above the largest stored) and text keys must both answer exactly like a set."""
    rng = random.Random(seed)
    text = seed % 3 == 2
    index, calls, record, next_id = UniqueIndex(tmp_path / "u.db"), [], 1, 1_000
    for _ in range(rng.randint(3, 8)):
        keys, rows = [], []
        for _ in range(rng.randint(1, 400)):
            roll = rng.random()
            if roll < 0.05:
                key = None
            elif roll < 0.15 and next_id > 1_000:
                key = rng.randint(1_000, next_id - 1)             # an earlier id again
            elif roll < 0.2:
                key = rng.randint(0, 999)                         # below everything so far
            elif seed % 4 == 3:
                key = rng.randint(0, 10**6)                       # random ids
            else:
                next_id += rng.randint(1, 3)
                key = next_id
            keys.append(str(key) if text and key is not None else key)
            record += rng.choice((1, 1, 1, 2))                    # some records rejected earlier
            rows.append(record)
        calls.append((keys, rows))
    got = [_keys(index, keys, rows) for keys, rows in calls]
    assert got == _reference(calls)
    index.close()


def _tagged_reference(ops):
    """A dict key -> record that introduced it; forget_after(r) drops records above r."""
    seen, out = {}, []
    for op in ops:
        if op[0] == "forget":
            seen = {k: t for k, t in seen.items() if t <= op[1]}
            continue
        _, keys, rows = op
        answer = []
        for k, r in zip(keys, rows, strict=False):
            answer.append(k is not None and k in seen)
            if k is not None and k not in seen:
                seen[k] = r
        out.append(answer)
    return out


@pytest.mark.parametrize("seed", range(10))
def test_runs_of_ids_forgotten_in_the_middle_match_a_tagged_reference(tmp_path, seed):
    """Integer keys are stored as runs (ids counting up with the records); a resume cuts
    them at any record, and later calls must answer exactly as a dict of key -> record."""
    rng = random.Random(100 + seed)
    index, ops, record, next_id = UniqueIndex(tmp_path / "u.db"), [], 0, 0
    for _ in range(rng.randint(4, 9)):
        if ops and rng.random() < 0.3:
            cut = rng.randint(max(0, record - 300), record)
            ops.append(("forget", cut))
            record, next_id = cut, rng.choice((next_id, next_id - rng.randint(0, 200)))
            continue
        keys, rows = [], []
        for _ in range(rng.randint(1, 500)):
            record += 1 if rng.random() < 0.97 else 2
            roll = rng.random()
            if roll < 0.03:
                key = None
            elif roll < 0.08 and next_id > 0:
                key = rng.randint(0, next_id)                 # an id again
            else:
                next_id += 1 if rng.random() < 0.95 else rng.randint(2, 5)
                key = next_id
            keys.append(key)
            rows.append(record)
        ops.append(("call", keys, rows))
    got = []
    for op in ops:
        if op[0] == "forget":
            index.forget_after(op[1])
        else:
            got.append(_keys(index, op[1], op[2]))
    assert got == _tagged_reference(ops)
    index.close()


def test_counting_ids_take_a_row_per_gap_not_per_key(tmp_path):
    import sqlite3
    index = UniqueIndex(tmp_path / "u.db")
    for start in range(1, 100_001, 10_000):      # ids 1..100,000 with records 1..100,000
        keys = [k for k in range(start, start + 10_000) if k != 55_555]     # one gap
        assert not any(_keys(index, keys, keys))
    index.close()
    db = sqlite3.connect(tmp_path / "u.db")
    (table,) = db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'runs%'").fetchone()
    assert db.execute(f"SELECT count(*), sum(hi - lo + 1) FROM {table}").fetchone() == (11, 99_999)


def test_keys_of_a_job_begun_with_one_row_per_key_are_kept(tmp_path):
    """unique.db of a job begun by the version that stored each integer key as a row."""
    import hashlib
    import sqlite3
    db = sqlite3.connect(tmp_path / "u.db")
    old = "seen_" + hashlib.sha1(b"k").hexdigest()[:16]
    db.execute(f"CREATE TABLE {old} (key INTEGER PRIMARY KEY, tag INTEGER)")
    db.executemany(f"INSERT INTO {old} VALUES (?, ?)", [(10, 1), (20, 2), (30, 3)])
    db.commit()
    db.close()
    index = UniqueIndex(tmp_path / "u.db")
    index.forget_after(2)
    assert _keys(index, [10, 20, 30, 31], [3, 4, 5, 6]) == [True, True, False, False]
    index.close()
