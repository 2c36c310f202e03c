"""Units of the replay of fixed rejects: the unique index forgets a replay's records
(runs are cut around them), and fix files split raw records with the source's dialect."""

from __future__ import annotations

import pyarrow as pa

from etlconsole.engine.fixes import FixRow, split_raw, source_json
from etlconsole.engine.unique import UniqueIndex

ROWS = pa.array(range(1, 11), pa.int64())


def test_forget_records_cuts_integer_runs(tmp_path):
    index = UniqueIndex(tmp_path / "u.db")
    keys = pa.array(range(101, 111), pa.int64())            # key 100 + record: one run
    assert not any(index.duplicates("0:id", keys, ROWS).to_pylist())
    index.forget_records([4, 10])
    again = pa.array([104, 110, 105], pa.int64())
    assert index.duplicates("0:id", again, pa.array([4, 10, 11], pa.int64())).to_pylist() == \
        [False, False, True]                                 # 104, 110 free again; 105 kept
    index.close()


def test_forget_records_text_keys(tmp_path):
    index = UniqueIndex(tmp_path / "u.db")
    keys = pa.array([f"k{i}" for i in range(1, 11)])
    index.duplicates("0:code", keys, ROWS)
    index.forget_records([3])
    got = index.duplicates("0:code", pa.array(["k3", "k4"]), pa.array([20, 21], pa.int64()))
    assert got.to_pylist() == [False, True]
    index.close()


JOB = {"id": "j", "dialect": {"encoding": "utf-8", "delimiter": ";", "quote": '"', "header": True,
                              "names": ["a", "b", "c"]}}


def test_split_raw_uses_the_source_dialect():
    assert split_raw(JOB, 'x;"y;z";1') == (["x", "y;z", "1"], None)
    fields, why = split_raw(JOB, "x;y")
    assert fields is None and why == "2 fields instead of 3"


def test_source_json():
    assert source_json(JOB, FixRow(3, ["1", "2", "3"], None)) == '{"a": "1", "b": "2", "c": "3"}'
    assert source_json(JOB, FixRow(3, None, "1;2")) == '{"raw": "1;2"}'
