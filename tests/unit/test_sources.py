"""sources.resolve and open_decompressed: which files, in which order, how decompressed."""

from __future__ import annotations

import bz2
import gzip
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from etlconsole.engine import sources
from etlconsole.errors import UserError

DATA = b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(1, 2001))


def _compress(data: bytes, codec: str) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, codec) as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    d = tmp_path / "drop"
    d.mkdir()
    (d / "b.csv").write_bytes(DATA)
    (d / "a.csv.gz").write_bytes(gzip.compress(DATA))
    (d / "c.csv.bz2").write_bytes(bz2.compress(DATA))
    (d / "d.csv.zst").write_bytes(_compress(DATA, "zstd"))
    (d / "e.csv.lz4").write_bytes(_compress(DATA, "lz4"))
    (d / "notes.txt").write_text("not data\n")
    (d / ".hidden.csv").write_bytes(DATA)
    return d


def test_directory_gives_its_csv_files_sorted_with_their_codecs(drop: Path):
    files = sources.resolve(str(drop))
    assert [f.path.name for f in files] == ["a.csv.gz", "b.csv", "c.csv.bz2", "d.csv.zst", "e.csv.lz4"]
    assert [f.compression for f in files] == ["gzip", None, "bz2", "zstd", "lz4"]
    assert [f.index for f in files] == [0, 1, 2, 3, 4]
    assert files[0].size == (drop / "a.csv.gz").stat().st_size


def test_every_codec_decompresses_to_the_same_bytes(drop: Path):
    for f in sources.resolve(str(drop)):
        with sources.open_decompressed(f) as stream:
            assert stream.read() == DATA, f.path


def test_glob_relative_to_base_and_list_are_sorted_and_deduplicated(drop: Path):
    files = sources.resolve("drop/*.csv*", base=drop.parent)
    assert [f.path.name for f in files][:2] == ["a.csv.gz", "b.csv"]
    listed = sources.resolve(["drop/e.csv.lz4", "drop/b.csv", "drop/*.csv"], base=drop.parent)
    assert [f.path.name for f in listed] == ["b.csv", "e.csv.lz4"]


def test_empty_glob_is_refused_naming_the_pattern(tmp_path: Path):
    with pytest.raises(UserError, match=r"orders_\*\.csv: no source file matches"):
        sources.resolve("orders_*.csv", base=tmp_path)


def test_directory_without_csv_files_is_refused(tmp_path: Path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(UserError, match="holds no CSV files"):
        sources.resolve(str(tmp_path))


def test_gz_that_is_not_gzip_is_refused(tmp_path: Path):
    (tmp_path / "orders.csv.gz").write_bytes(DATA)
    with pytest.raises(UserError, match=r"orders\.csv\.gz: named \.gz but does not hold gzip data"):
        sources.resolve(str(tmp_path / "orders.csv.gz"))


def test_compressed_data_under_a_plain_name_is_refused(tmp_path: Path):
    (tmp_path / "orders.csv").write_bytes(gzip.compress(DATA))
    with pytest.raises(UserError, match=r"holds gzip-compressed data but its name does not say so"):
        sources.resolve(str(tmp_path / "orders.csv"))


def test_zstd_named_gz_says_what_it_is(tmp_path: Path):
    (tmp_path / "orders.csv.gz").write_bytes(_compress(DATA, "zstd"))
    with pytest.raises(UserError, match="starts with zstd-compressed data"):
        sources.resolve(str(tmp_path / "orders.csv.gz"))


def test_text_starting_with_bzh_is_plain_text(tmp_path: Path):
    (tmp_path / "x.csv").write_bytes(b"BZh9,b\n1,2\n")
    assert sources.resolve(str(tmp_path / "x.csv"))[0].compression is None


def test_one_missing_file_is_left_to_the_sniff(tmp_path: Path):
    files = sources.resolve(str(tmp_path / "missing.csv"))
    assert [f.path.name for f in files] == ["missing.csv"] and files[0].size == 0


def test_truncated_gzip_raises_on_read(tmp_path: Path):
    whole = gzip.compress(DATA * 50)
    (tmp_path / "t.csv.gz").write_bytes(whole[: len(whole) // 2])
    (f,) = sources.resolve(str(tmp_path / "t.csv.gz"))
    with pytest.raises(OSError, match="Truncated"), sources.open_decompressed(f) as stream:
        while stream.read(1 << 16):
            pass


def test_a_file_streams_with_its_records_numbered_after_the_offset(tmp_path: Path):
    """What an executor needs to stream ONE file of many: its chunks and rejects numbered
    in the job's numbering (offset + the record within the file), and the file's index."""
    from etlconsole.engine import extract
    from etlconsole.engine.phases.base import ROW
    data = DATA + b"7,too,many\n" + b"8,n8\n"
    (tmp_path / "x.csv.gz").write_bytes(gzip.compress(data))
    f = sources.SourceFile(tmp_path / "x.csv.gz", 3, "gzip", 10)
    dialect = extract.sniff(f)
    chunks = list(extract.CsvStream(f, dialect, block_size=1 << 16, chunk_rows=1000, offset=500))
    rows = [r for c in chunks for r in c.batch.column(ROW).to_pylist()]
    assert rows == list(range(501, 2501)) + [2502]
    rejected = [r for c in chunks for rj in c.rejects for r in rj.rows.column(ROW).to_pylist()]
    assert rejected == [2501]
    assert {c.file for c in chunks} == {3} and chunks[0].first_row == 501


@pytest.mark.skipif(shutil.which("lz4") is None, reason="the lz4 tool is not installed")
def test_lz4_tool_output_reads_like_pyarrow_output(tmp_path: Path):
    """The lz4 command line tool writes LZ4 frames: what a drop really holds."""
    plain = tmp_path / "x.csv"
    plain.write_bytes(DATA)
    subprocess.run(["lz4", "-q", "-f", str(plain), str(tmp_path / "x.csv.lz4")], check=True)
    (f,) = sources.resolve(str(tmp_path / "x.csv.lz4"))
    with sources.open_decompressed(f) as stream:
        assert stream.read() == DATA


def test_a_file_named_with_glob_characters_is_that_file(tmp_path: Path):
    (tmp_path / "[table].csv").write_bytes(DATA)
    (tmp_path / "t.csv").write_bytes(DATA)
    assert [f.path.name for f in sources.resolve(str(tmp_path / "[table].csv"))] == ["[table].csv"]


def test_parts_at_any_byte_offsets_hold_each_record_once(tmp_path: Path):
    """A plain file cut into byte ranges anywhere: each part streamed on its own, numbered
    by the records before it, gives the whole file's rows and rejects (what an executor
    splitting one big file relies on)."""
    from etlconsole.engine import extract
    from etlconsole.engine.phases.base import ROW
    body = b"".join(b"%d,n%d\n" % (i, i) if i % 97 else b"%d,ragged,x\n" % i
                    for i in range(1, 3001))
    data = b"\n" + b"id,name\n" + body.replace(b"500,n500\n", b"500,n500\n\n")  # blank lines
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    (whole,) = sources.resolve(str(path))
    dialect = extract.sniff(whole)

    def stream(f, offset=0):
        rows, rejected = [], []
        for c in extract.CsvStream(f, dialect, block_size=4096, chunk_rows=500, offset=offset):
            rows += list(zip(c.batch.column(ROW).to_pylist(), c.batch.column("name").to_pylist(),
                             strict=True))
            rejected += [r for rj in c.rejects for r in rj.rows.column(ROW).to_pylist()]
        return rows, rejected

    expected = stream(whole)
    assert len(expected[0]) + len(expected[1]) == 3000
    for cuts in ([0, 1, 2, len(data)], [0, 11, 12, 9_999, 10_000, 20_001, len(data)],
                 [0, 7_000, None]):
        rows, rejected = [], []
        for start, end in zip(cuts, cuts[1:], strict=False):
            part = whole.part(start, end)
            r, j = stream(part, offset=sources.records_before(part))
            rows += r
            rejected += j
        assert (rows, sorted(rejected)) == (expected[0], sorted(expected[1])), cuts


def test_a_compressed_file_has_no_parts(tmp_path: Path):
    (tmp_path / "x.csv.gz").write_bytes(gzip.compress(DATA))
    (f,) = sources.resolve(str(tmp_path / "x.csv.gz"))
    with pytest.raises(ValueError, match="compressed"):
        f.part(0, 10)
