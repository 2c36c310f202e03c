"""write_orders_drop: the records of write_orders_csv in N files, some compressed."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from etlconsole.sample import write_orders_csv, write_orders_drop


@pytest.mark.parametrize("codec", ["gzip", "bz2", "zstd", "lz4"])
def test_drop_holds_the_records_of_the_one_file(tmp_path: Path, codec: str):
    one = write_orders_csv(tmp_path / "one.csv", 3_000, seed=5)
    drop = write_orders_drop(tmp_path / "drop", 3_000, 4, seed=5, compress=codec, every=2)
    assert drop == one
    files = sorted((tmp_path / "drop").iterdir())
    packed = "csv." + {"gzip": "gz", "zstd": "zst"}.get(codec, codec)
    assert [f.name.split(".", 1)[1] for f in files] == ["csv", packed, "csv", packed]
    header, joined = None, b""
    for f in files:
        data = (pa.input_stream(str(f), compression=codec).read() if f.suffix != ".csv"
                else f.read_bytes())
        first, _, body = data.partition(b"\n")
        header = header or first
        assert first == header
        joined += body
    assert header + b"\n" + joined == (tmp_path / "one.csv").read_bytes()
    assert not list((tmp_path / "drop").glob(".*"))
