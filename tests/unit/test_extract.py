"""extract: sniffing, streaming with exact record numbers, rejects on read, refusals."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from etlconsole.engine.extract import CsvStream, digest, fingerprint, same_content, sniff
from etlconsole.errors import UserError

ROW = "_etl_row"


def stream(path: Path, block_size=4096, chunk_rows=3, **sniff_kw):
    """(dialect, good rows as dicts, rejects as records, chunks)."""
    d = sniff(path, **sniff_kw)
    chunks = list(CsvStream(path, d, block_size=block_size, chunk_rows=chunk_rows))
    rows, rejects = [], []
    for c in chunks:
        assert c.batch.num_rows <= chunk_rows
        assert c.batch.schema.names == [*d.names, ROW]
        rows += c.batch.to_pylist()
        for r in c.rejects:
            rejects += r.records("extract")
    return d, rows, rejects, chunks


def assert_chunks_cover(chunks, last):
    """Chunks cover record numbers 1..last contiguously, without overlap."""
    expected_first = 1
    for c in chunks:
        assert c.first_row == expected_first
        assert c.last_row >= c.first_row - 1
        expected_first = c.last_row + 1
    assert expected_first - 1 == last


# --- dialect sniffing --------------------------------------------------------------------

@pytest.mark.parametrize("delim", [",", ";", "\t", "|"])
def test_delimiter_sniffed(tmp_path, delim):
    p = tmp_path / "d.csv"
    # the other candidates appear inside values, but split rows inconsistently
    body = [["id", "name", "note"], ["1", "a b", "x"], ["2", "c", "y z"], ["3", "d", "w"]]
    if delim != ",":
        body[1][2] = "x,y"
    p.write_text("\n".join(delim.join(r) for r in body) + "\n", encoding="utf-8")
    d, rows, rejects, _ = stream(p)
    assert d.delimiter == delim
    assert d.names == ["id", "name", "note"]
    assert any("delimiter" in n for n in d.notes)
    assert rejects == []
    assert [(r["id"], r["name"], r[ROW]) for r in rows] == [("1", "a b", 1), ("2", "c", 2),
                                                          ("3", "d", 3)]


def test_explicit_delimiter_overrides_sniff(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a;b,c\n1;2,3\n", encoding="utf-8")
    d, rows, _, _ = stream(p, delimiter=",")
    assert d.names == ["a;b", "c"]
    assert rows == [{"a;b": "1;2", "c": "3", ROW: 1}]


def test_header_names_are_stripped_and_quoted_names_kept(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text(' id ,"last, first", x\n1,"Doe, J",2\n', encoding="utf-8")
    d, rows, _, _ = stream(p)
    assert d.names == ["id", "last, first", "x"]
    assert rows == [{"id": "1", "last, first": "Doe, J", "x": "2", ROW: 1}]


def test_utf8_bom(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbfid,name\n1,\xc3\xa9t\xc3\xa9\n2,b\n")
    d, rows, rejects, _ = stream(p)
    assert d.encoding == "utf-8" and d.bom is True
    assert d.names == ["id", "name"]                  # no '\ufeff' glued to the first name
    assert rows == [{"id": "1", "name": "été", ROW: 1}, {"id": "2", "name": "b", ROW: 2}]
    assert rejects == []


def test_utf8_bom_with_explicit_encoding(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbfid,name\n1,a\n")
    d = sniff(p, encoding="utf-8")
    assert d.names == ["id", "name"]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_bom_file(tmp_path, codec):
    p = tmp_path / "u16.csv"
    text = "id;name\r\n1;é\r\n2;ü 漢\r\n3\r\n4;z\r\n"
    data = text.encode(codec)
    if codec != "utf-16":                               # add the BOM by hand
        data = ("\ufeff").encode(codec) + data
    p.write_bytes(data)
    d, rows, rejects, _ = stream(p)
    assert d.encoding.startswith("utf-16") and d.bom is True
    assert d.delimiter == ";" and d.names == ["id", "name"]
    assert rows == [{"id": "1", "name": "é", ROW: 1}, {"id": "2", "name": "ü 漢", ROW: 2},
                    {"id": "4", "name": "z", ROW: 4}]
    assert [(r["row"], r["rule"]) for r in rejects] == [(3, "fields")]


def test_latin1_with_explicit_encoding(tmp_path):
    p = tmp_path / "l1.csv"
    p.write_bytes("id,name\n1,é\n2,ü\n".encode("latin-1"))
    d, rows, rejects, _ = stream(p, encoding="latin-1")
    assert [r["name"] for r in rows] == ["é", "ü"] and rejects == []


def test_header_false_gives_column_names(tmp_path):
    p = tmp_path / "nh.csv"
    p.write_text("a,b,c\n1,2,3\n4,5\n", encoding="utf-8")
    d, rows, rejects, _ = stream(p, header=False)
    assert d.names == ["column_1", "column_2", "column_3"]
    # without a header the first line is record 1
    assert rows == [{"column_1": "a", "column_2": "b", "column_3": "c", ROW: 1},
                    {"column_1": "1", "column_2": "2", "column_3": "3", ROW: 2}]
    assert [r["row"] for r in rejects] == [3]


# --- record numbers across many chunks ---------------------------------------------------

def _messy(n: int, seps: list[str]) -> tuple[bytes, list[int], list[int]]:
    """A file with ragged rows, quoted newlines (LF, CRLF, CR inside values), escaped
    quotes, and the given line endings used in turn. Returns (bytes, good ids, ragged ids)."""
    lines, good, ragged = ["id,text,n"], [], []
    for i in range(1, n + 1):
        if i % 17 == 0:
            lines.append(f"{i},too few")
            ragged.append(i)
        elif i % 23 == 0:
            lines.append(f"{i},a,b,c")
            ragged.append(i)
        elif i % 7 == 0:
            lines.append(f'{i},"multi\nline\r\nwith\rCR, comma and ""quotes""",{i}')
            good.append(i)
        else:
            lines.append(f"{i},t{i},{i}")
            good.append(i)
    text = "".join(line + seps[k % len(seps)] for k, line in enumerate(lines))
    return text.encode("utf-8"), good, ragged


@pytest.mark.parametrize("seps", [["\n"], ["\r\n"], ["\r"], ["\n", "\r\n", "\r"], ["\r", "\n"]],
                         ids=["LF", "CRLF", "CR", "mixed3", "CR-LF"])
def test_record_numbers_exact_across_blocks(tmp_path, seps):
    n = 1500
    data, good, ragged = _messy(n, seps)
    assert len(data) > 5 * 4096                     # several reader blocks
    p = tmp_path / "messy.csv"
    p.write_bytes(data)
    d, rows, rejects, chunks = stream(p, block_size=4096, chunk_rows=3)
    assert d.delimiter == "," and d.names == ["id", "text", "n"]
    assert len(chunks) > 100
    assert [r[ROW] for r in rows] == good
    assert all(int(r["id"]) == r[ROW] for r in rows)
    quoted = [r["text"] for r in rows if r[ROW] % 7 == 0]
    assert quoted and set(quoted) == {'multi\nline\r\nwith\rCR, comma and "quotes"'}
    assert sorted(r["row"] for r in rejects) == ragged
    assert all(r["rule"] == "fields" for r in rejects)
    by_row = {r["row"]: r for r in rejects}
    assert by_row[17]["message"] == "2 fields instead of 3"
    assert by_row[23]["message"] == "4 fields instead of 3"
    assert json.loads(by_row[17]["values"]) == {"raw": "17,too few"}
    assert len(rows) + len(rejects) == n
    assert_chunks_cover(chunks, n)


def test_ragged_first_and_last_records(tmp_path):
    p = tmp_path / "edges.csv"
    p.write_text("a,b\n1\n2,x\n3,y\n4,z,extra\n", encoding="utf-8")
    d, rows, rejects, chunks = stream(p)
    assert [(r["a"], r[ROW]) for r in rows] == [("2", 2), ("3", 3)]
    assert sorted(r["row"] for r in rejects) == [1, 4]
    assert_chunks_cover(chunks, 4)


def test_only_ragged_rows(tmp_path):
    p = tmp_path / "ragged.csv"
    p.write_text("a,b\n1\n2\n", encoding="utf-8")
    _, rows, rejects, chunks = stream(p)
    assert rows == []
    assert sorted(r["row"] for r in rejects) == [1, 2]


def test_last_line_without_newline(tmp_path):
    p = tmp_path / "nonl.csv"
    p.write_text("a,b\n1,x\n2,y", encoding="utf-8")
    _, rows, rejects, _ = stream(p)
    assert [(r["a"], r["b"], r[ROW]) for r in rows] == [("1", "x", 1), ("2", "y", 2)]


def test_values_stay_text(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,price,flag,day\n007,1.50,true,2024-01-01\n1,x,,\n", encoding="utf-8")
    _, rows, _, chunks = stream(p)
    assert rows[0] == {"id": "007", "price": "1.50", "flag": "true", "day": "2024-01-01", ROW: 1}
    assert rows[1]["flag"] == ""                     # empty is text, not null
    assert all(str(t) == "string" for t in chunks[0].batch.schema.types[:4])


def test_invalid_utf8_row_rejected_others_kept(tmp_path):
    p = tmp_path / "bad.csv"
    lines = [b"id,v"] + [b"%d,ok%d" % (i, i) for i in range(1, 21)]
    lines[8] = b"8,b\xff\xfec"          # record 8
    lines[15] = b"15,\xc3("              # record 15 (truncated sequence)
    p.write_bytes(b"\n".join(lines) + b"\n")
    d, rows, rejects, chunks = stream(p)
    assert [r[ROW] for r in rows] == [i for i in range(1, 21) if i not in (8, 15)]
    assert all(r["v"] == f"ok{r[ROW]}" for r in rows)
    by_row = {r["row"]: r for r in rejects}
    assert set(by_row) == {8, 15}
    assert by_row[8]["rule"] == "encoding" and by_row[8]["column"] == "v"
    assert "UTF-8" in by_row[8]["message"] and "byte 1" in by_row[8]["message"]
    assert json.loads(by_row[8]["values"])["id"] == "8"
    assert_chunks_cover(chunks, 20)


def test_ten_megabyte_quoted_field_with_small_blocks(tmp_path):
    p = tmp_path / "big.csv"
    big = ("ab,\"c\"\n" * ((10 << 20) // 7 + 1))[: 10 << 20]
    escaped = big.replace('"', '""')
    p.write_text(f'id,v,w\n1,a,b\n2,"{escaped}",z\n3,c,d\n', encoding="utf-8")
    d = sniff(p)
    assert d.names == ["id", "v", "w"]
    got = []
    for c in CsvStream(p, d, block_size=4096, chunk_rows=3):
        assert not c.rejects
        got += [(r["id"], r["v"], r["w"], r[ROW]) for r in c.batch.to_pylist()]
    assert [(i, w, n) for i, _, w, n in got] == [("1", "b", 1), ("2", "z", 2), ("3", "d", 3)]
    assert got[1][1] == big and len(got[1][1]) == 10 << 20


def test_start_after_skips_records(tmp_path):
    p = tmp_path / "resume.csv"
    p.write_text("id,v\n" + "".join(f"{i},x\n" if i % 5 else f"{i}\n" for i in range(1, 31)),
                 encoding="utf-8")
    d = sniff(p)
    chunks = list(CsvStream(p, d, block_size=4096, chunk_rows=4, start_after=12))
    good = [n for c in chunks for n in c.batch.column(ROW).to_pylist()]
    ragged = [n for c in chunks for r in c.rejects for n in r.rows.column(ROW).to_pylist()]
    assert good == [i for i in range(13, 31) if i % 5]
    assert ragged == [15, 20, 25, 30]
    assert chunks[0].first_row == 13 and chunks[-1].last_row == 30


def test_bytes_read_reaches_file_size(tmp_path):
    p = tmp_path / "b.csv"
    data, _, _ = _messy(600, ["\n"])
    p.write_bytes(data)
    _, _, _, chunks = stream(p)
    seen = [c.bytes_read for c in chunks]
    assert seen == sorted(seen)
    assert seen[-1] == len(data)


# --- refusals and edge files -------------------------------------------------------------

@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"\n\n  \n", "no header"),
    (b"id,v\x00\x01\x02\n1,2\n", "binary"),
    (b"id,name,id\n1,2,3\n", "appears twice"),
    (b"id,,v\n1,2,3\n", "column 2 is empty"),
    (b"id, \n1,2\n", "column 2 is empty"),
    (b"id,_etl_row\n1,2\n", "_etl_"),
    (b"id,n\xe4me\n1,2\n", "not valid utf-8"),
])
def test_refused_files(tmp_path, content, words):
    p = tmp_path / "x.csv"
    p.write_bytes(content)
    with pytest.raises(UserError) as info:
        sniff(p)
    assert words.lower() in str(info.value).lower()
    assert str(p) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        sniff(tmp_path / "nope.csv")


def test_directory(tmp_path):
    with pytest.raises(UserError, match="directory"):
        sniff(tmp_path)


def test_unknown_encoding(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="klingon"):
        sniff(p, encoding="klingon")


def test_header_only(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("id,name\n", encoding="utf-8")
    d, rows, rejects, _ = stream(p)
    assert d.names == ["id", "name"]
    assert rows == [] and rejects == []


def test_header_only_without_newline(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("id,name", encoding="utf-8")
    d, rows, rejects, _ = stream(p)
    assert rows == [] and rejects == []


def test_fingerprint_changes_with_content(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("a,b\n1,2\n3,4\n")
    f1 = fingerprint(p)
    assert f1 == fingerprint(p)
    assert f1["size"] == 12
    p.write_text("a,b\n1,2\n3,5\n")                     # same size, other bytes
    os.utime(p, ns=(f1["mtime_ns"], f1["mtime_ns"]))    # even with the old mtime
    f2 = fingerprint(p)
    assert f2["size"] == f1["size"] and f2["mtime_ns"] == f1["mtime_ns"]
    assert f2["sha256_head_tail"] != f1["sha256_head_tail"]
    assert f2 != f1


def test_fingerprint_sees_change_in_tail_of_large_file(tmp_path):
    p = tmp_path / "big.csv"
    body = b"a,b\n" + b"1,2\n" * (1 << 20)              # ~4 MB
    p.write_bytes(body)
    f1 = fingerprint(p)
    p.write_bytes(body[:-2] + b"3\n")
    os.utime(p, ns=(f1["mtime_ns"], f1["mtime_ns"]))
    assert fingerprint(p)["sha256_head_tail"] != f1["sha256_head_tail"]


def test_chunk_size_changed_between_chunks_loses_and_repeats_nothing(tmp_path):
    """The governor changes chunk_rows while the stream runs (memory pressure); every
    record must still come out exactly once, in order (a bug once sliced with the new size
    over offsets of the old one: rows lost or repeated)."""
    import random

    from etlconsole.engine.phases.base import ROW
    lines = ["id,name"]
    for i in range(1, 20_001):
        lines.append(f"{i},n{i}" if i % 997 else f"{i},n{i},extra")   # some ragged rows
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stream = CsvStream(path, sniff(path), block_size=4096, chunk_rows=3000)
    rng = random.Random(5)
    seen, rejected, last = [], [], 0
    for chunk in stream:
        assert chunk.first_row == last + 1
        last = chunk.last_row
        seen += chunk.batch.column(ROW).to_pylist()
        assert chunk.batch.column("id").to_pylist() == [str(r) for r in chunk.batch.column(ROW).to_pylist()]
        rejected += [r["row"] for rej in chunk.rejects for r in rej.records("extract")]
        stream.chunk_rows = rng.choice([50, 700, 3000, 9000])
    assert last == 20_000
    assert sorted(seen + rejected) == list(range(1, 20_001))
    assert rejected == [i for i in range(1, 20_001) if i % 997 == 0]


def test_chunks_are_whole_until_the_last(tmp_path):
    """Blocks are gathered into chunks of exactly chunk_rows; what is left over waits for
    the next blocks instead of going through the phases as a chunk of a few rows."""
    path = tmp_path / "d.csv"
    path.write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(1, 10_001)), encoding="utf-8")
    d = sniff(path)
    chunks = list(CsvStream(path, d, block_size=4096, chunk_rows=1_500))
    assert [c.batch.num_rows for c in chunks] == [1_500] * 6 + [1_000]
    assert_chunks_cover(chunks, 10_000)
    assert [r for c in chunks for r in c.batch.column(ROW).to_pylist()] == list(range(1, 10_001))


def test_same_content_checks_new_and_old_digests(tmp_path):
    """Digests are 'xxh3_128:…' now; jobs recorded before carry 'sha256:…' or, before
    that, a bare blake2b hex digest, and resuming them must still compare the file, not
    refuse or pass blindly."""
    import xxhash
    f = tmp_path / "a.csv"
    f.write_bytes(b"id\n1\n2\n")
    new = digest(f)
    sha = "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest()
    old = hashlib.blake2b(f.read_bytes(), digest_size=20).hexdigest()
    assert new == "xxh3_128:" + xxhash.xxh3_128(f.read_bytes()).hexdigest()
    assert same_content(f, new) and same_content(f, sha) and same_content(f, old)
    f.write_bytes(b"id\n1\n3\n")
    assert not same_content(f, new) and not same_content(f, sha) and not same_content(f, old)
    assert not same_content(f, "md4:00")          # an unknown algorithm never matches
