"""The two ArrowInvalid errors the CSV stream recovers from are recognised by their wording
(pyarrow gives them no code): provoke both with the installed pyarrow, so a release that
words them differently fails here, not in a job."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from etlconsole.engine.extract import skips_past_the_end, straddles_blocks


def _read_all(data: bytes, *, block_size: int, skip_rows: int = 0) -> None:
    reader = pcsv.open_csv(
        io.BytesIO(data),
        read_options=pcsv.ReadOptions(use_threads=False, block_size=block_size,
                                      column_names=["a", "b"],
                                      skip_rows=skip_rows),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types={"a": pa.string(), "b": pa.string()}))
    for _ in reader:
        pass


def test_skipping_past_the_end_is_recognised():
    with pytest.raises(pa.ArrowInvalid) as info:
        _read_all(b"a,b", block_size=1 << 16, skip_rows=1)      # a line, no line end
    assert skips_past_the_end(info.value) and not straddles_blocks(info.value)


def test_a_record_larger_than_a_block_is_recognised():
    big = b"x" * 4096
    with pytest.raises(pa.ArrowInvalid) as info:
        _read_all(b"a,b\n1,\"" + big + b"\"\n2,y\n", block_size=1024)
    assert straddles_blocks(info.value) and not skips_past_the_end(info.value)
