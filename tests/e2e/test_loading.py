"""What lands in the destination: quoting of header names, header-only files, appending to
tables made by someone else, odd but valid CSV shapes, and rejects with record numbers."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from .helpers import assert_summary, assert_user_error, qident, query, tables, write_pipeline


def _run(cli, *extra, env=None):
    res = cli("run", "p.toml", "--no-ui", "--json", *extra, env=env)
    assert "Traceback" not in res.stderr, str(res)
    return res


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def _columns(db: Path, table: str = "t") -> list[str]:
    return [r[1] for r in query(db, f"PRAGMA table_info({qident(table)})")]


def _data_rows(db: Path, table: str = "t") -> list[tuple]:
    cols = [c for c in _columns(db, table) if not c.startswith("_etl_")]
    return query(db, f"SELECT {', '.join(map(qident, cols))} FROM {qident(table)} ORDER BY rowid")


# -- identifiers -----------------------------------------------------------------------
def test_header_names_that_need_quoting(cli, tmp_path):
    header = ['x"; DROP TABLE y; --', "select", "a b", "ünï", "order", "[br]", "it's"]
    rows = [["1", "2", "3", "4", "5", "6", "7"], ["8", "9", "10", "11", "12", "13", "14"]]
    _write_csv(tmp_path / "data.csv", [header, *rows])
    db = tmp_path / "out.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE y (v TEXT)")
    conn.execute("INSERT INTO y VALUES ('survivor')")
    conn.commit()
    conn.close()
    write_pipeline(tmp_path / "p.toml", table='my "table"; --')
    res = _run(cli)
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert_summary(s)
    assert (s["rows_read"], s["rows_loaded"]) == (2, 2)
    assert query(db, "SELECT v FROM y") == [("survivor",)]
    assert set(tables(db)) >= {"y", 'my "table"; --', "_etl_loads"}
    cols = _columns(db, 'my "table"; --')
    assert cols[:len(header)] == header
    assert {"_etl_job_id", "_etl_batch"} <= set(cols)
    assert _data_rows(db, 'my "table"; --') == [tuple(r) for r in rows]


# -- header-only files -----------------------------------------------------------------
def test_header_only_file(cli, tmp_path):
    (tmp_path / "data.csv").write_text("id,name,amount\n", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    res = _run(cli)
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert_summary(s)
    assert s["status"] == "succeeded" and s["rows_read"] == 0 and s["rows_loaded"] == 0
    if (tmp_path / "out.db").exists() and "t" in tables(tmp_path / "out.db"):
        assert query(tmp_path / "out.db", "SELECT count(*) FROM t") == [(0,)]


def test_header_only_file_without_final_newline(cli, tmp_path):
    (tmp_path / "data.csv").write_text("id,name,amount", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    res = _run(cli)
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert_summary(s)
    assert s["rows_read"] == 0


def test_last_record_without_final_newline(cli, tmp_path):
    (tmp_path / "data.csv").write_text("id,name\r\n1,a\r\n2,b", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    res = _run(cli)
    assert res.returncode == 0, str(res)
    assert _data_rows(tmp_path / "out.db") == [("1", "a"), ("2", "b")]


# -- appending to somebody else's table -------------------------------------------------
def test_append_to_a_table_made_without_lineage_columns(cli, tmp_path):
    db = tmp_path / "out.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id TEXT, name TEXT, amount TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [("100", "old", "1"), ("101", "old", "2")])
    conn.commit()
    conn.close()
    (tmp_path / "data.csv").write_text("id,name,amount\n1,a,10\n2,b,20\n3,c,30\n", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    first = _run(cli)
    assert first.returncode == 0, str(first)
    s1 = first.last_json()
    assert_summary(s1)
    assert s1["rows_loaded"] == 3
    cols = _columns(db)
    assert cols[:3] == ["id", "name", "amount"] and {"_etl_job_id", "_etl_batch"} <= set(cols)
    assert query(db, "SELECT id, name, _etl_job_id FROM t WHERE name = 'old' ORDER BY id") == [
        ("100", "old", None), ("101", "old", None)]
    # a second run appends again, with its own lineage and ledger entry
    second = _run(cli)
    assert second.returncode == 0, str(second)
    s2 = second.last_json()
    assert s2["job_id"] != s1["job_id"]
    assert query(db, "SELECT _etl_job_id, count(*) FROM t GROUP BY 1 ORDER BY 1") == sorted(
        [(None, 2), (s1["job_id"], 3), (s2["job_id"], 3)], key=lambda r: (r[0] is not None, r[0] or ""))
    assert query(db, "SELECT job_id, sum(rows) FROM _etl_loads GROUP BY 1 ORDER BY 1") == sorted(
        [(s1["job_id"], 3), (s2["job_id"], 3)])


# -- rejects carry 1-based record numbers ------------------------------------------------
def test_extract_rejects_have_record_numbers_and_reasons(cli, tmp_path):
    # record 2 spans two lines, record 4 is short, record 5 has invalid UTF-8, record 7 is long
    data = (b'id,text,n\n1,plain,1\n2,"two\nlines",2\n3,x,3\n4,short\n5,caf\xe9,5\n6,y,6\n'
            b'7,a,b,c\n8,"quoted, comma",8\n')
    (tmp_path / "data.csv").write_bytes(data)
    write_pipeline(tmp_path / "p.toml")
    res = _run(cli)
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert_summary(s)
    assert (s["rows_read"], s["rows_loaded"], s["rows_rejected"]) == (8, 5, 3)
    rej = cli("rejects", s["job_id"], "--json")
    assert rej.returncode == 0, str(rej)
    got = {r["row"]: r for r in rej.json_lines()}
    assert sorted(got) == [4, 5, 7]
    assert got[4]["phase"] == "extract" and got[4]["rule"] == "fields"
    assert got[7]["phase"] == "extract" and got[7]["rule"] == "fields"
    assert got[5]["phase"] == "extract" and got[5]["column"] == "text" and got[5]["message"]
    assert [r[0] for r in _data_rows(tmp_path / "out.db")] == ["1", "2", "3", "6", "8"]
    assert query(tmp_path / "out.db", "SELECT text FROM t WHERE id = '2'") == [("two\nlines",)]


def test_field_larger_than_the_reader_block(cli, tmp_path):
    big = "z" * 50_000
    (tmp_path / "data.csv").write_text(f'id,text\n1,a\n2,"{big}"\n3,c\n', encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    res = _run(cli, env={"PIPELINE_STREAM_HIGH_WATER_MARK": "4096"})
    assert res.returncode == 0, str(res)
    assert query(tmp_path / "out.db", "SELECT id, length(text) FROM t ORDER BY rowid") == [
        ("1", 1), ("2", 50_000), ("3", 1)]


# -- regressions: engine bugs found by these tests, now fixed ---------------------------
def test_quoted_newline_in_header(cli, tmp_path):
    (tmp_path / "data.csv").write_text('"first\nline",b\n1,2\n3,4\n', encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    res = _run(cli)
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert (s["rows_read"], s["rows_loaded"], s["rows_rejected"]) == (2, 2, 0), s
    assert _data_rows(tmp_path / "out.db") == [("1", "2"), ("3", "4")]


def test_header_larger_than_the_reader_block(cli, tmp_path):
    names = [f"a_fairly_long_column_name_{i:04d}" for i in range(300)]     # ~9 KB header
    (tmp_path / "data.csv").write_text(",".join(names) + "\n" + ",".join("1" * 300) + "\n",
                                       encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    res = _run(cli, env={"PIPELINE_STREAM_HIGH_WATER_MARK": "4096"})
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert (s["rows_read"], s["rows_loaded"]) == (1, 1), s
    assert query(tmp_path / "out.db", "SELECT count(*) FROM t") == [(1,)]


@pytest.mark.parametrize("header", ["id,Name,NAME", "id,_ETL_BATCH"])
def test_header_names_equal_for_sqlite(cli, tmp_path, header):
    n = header.count(",") + 1
    (tmp_path / "data.csv").write_text(header + "\n" + ",".join(["1"] * n) + "\n", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    res = _run(cli)
    # either refused up front, or loaded; never a failed job with a half-made destination
    if res.returncode == 2:
        assert_user_error(res, "data.csv")
        assert not (tmp_path / "out.db").exists()
    else:
        assert res.returncode == 0, str(res)
        assert res.last_json()["rows_loaded"] == 1


def test_too_many_columns_is_refused_before_writing(cli, tmp_path):
    n = 2100
    (tmp_path / "data.csv").write_text(",".join(f"c{i}" for i in range(n)) + "\n"
                                       + ",".join(["1"] * n) + "\n", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    res = _run(cli)
    assert_user_error(res)
    assert not (tmp_path / "out.db").exists()


def test_blank_line_before_header(cli, tmp_path):
    (tmp_path / "data.csv").write_text("\nid,name\n1,a\n2,b\n", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    res = _run(cli)
    if res.returncode == 2:     # refusing is fine, if the message says what is wrong
        line = assert_user_error(res, "data.csv")
        assert "header" in line or "blank" in line or "empty" in line, line
    else:
        assert res.returncode == 0, str(res)
        assert _data_rows(tmp_path / "out.db") == [("1", "a"), ("2", "b")]
