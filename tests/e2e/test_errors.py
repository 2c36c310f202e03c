"""Exit codes: 2 for mistakes found before anything is written (one stderr line, no
traceback, destination untouched), 1 for a job that fails after it started."""

from __future__ import annotations

import gzip
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from .helpers import Cli, Result, assert_user_error, digest, tables, write_pipeline

GOOD_CSV = "id,name,amount\n1,alice,10\n2,bob,20\n"


@dataclass
class Case:
    """Files to create, the CLI arguments, the environment, what the message must name."""

    setup: Callable[[Path], None]
    args: tuple[str, ...] = ("run", "p.toml", "--no-ui", "--json")
    env: dict[str, str] = field(default_factory=dict)
    needles: tuple[str, ...] = ()


def _data(tmp: Path, text: str = GOOD_CSV, name: str = "data.csv") -> None:
    (tmp / name).write_text(text, encoding="utf-8")


def _pipeline(phases: str = "", source: str = "data.csv", **kw):
    def setup(tmp: Path) -> None:
        if source == "data.csv":
            _data(tmp)
        write_pipeline(tmp / "p.toml", source=source, phases=phases, **kw)
    return setup


def _raw_pipeline(text: str):
    def setup(tmp: Path) -> None:
        _data(tmp)
        (tmp / "p.toml").write_text(text, encoding="utf-8")
    return setup


def _source_bytes(data: bytes, name: str = "src.csv"):
    def setup(tmp: Path) -> None:
        (tmp / name).write_bytes(data)
        write_pipeline(tmp / "p.toml", source=name)
    return setup


def _source_dir(tmp: Path) -> None:
    (tmp / "folder.csv").mkdir()
    write_pipeline(tmp / "p.toml", source="folder.csv")


BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
# binary without a single NUL byte: caught by the UTF-8 check instead
BINARY_NO_NUL = bytes((i * 7919) % 127 + 128 for i in range(4096))

CASES = {
    "pipeline_missing": Case(lambda tmp: _data(tmp), args=("run", "nope.toml", "--no-ui"),
                             needles=("nope.toml",)),
    "toml_syntax_error": Case(_raw_pipeline('name = "x"\n[source\npath = "data.csv"\n'),
                              needles=("p.toml", "TOML")),
    "unknown_phase_type": Case(_pipeline('[[phases]]\ntype = "frobnicate"\n'),
                               needles=("p.toml", "phase", "frobnicate")),
    "unknown_option_key": Case(_pipeline('[[phases]]\ntype = "clean"\ntrim = true\ntrimm = true\n'),
                               needles=("p.toml", "phase", "trimm")),
    "unknown_rule_key": Case(_pipeline('[[phases]]\ntype = "validate"\n'
                                       'rules = [{ column = "id", requird = true }]\n'),
                             needles=("p.toml", "phase", "requird")),
    "rule_on_missing_column": Case(_pipeline('[[phases]]\ntype = "validate"\n'
                                             'rules = [{ column = "nosuchcol", required = true }]\n'),
                                   needles=("p.toml", "phase", "rules[0].column", "nosuchcol")),
    "cast_of_missing_column": Case(_pipeline('[[phases]]\ntype = "transform"\n'
                                             'cast = { nosuchcol = "int64" }\n'),
                                   needles=("p.toml", "phase", "nosuchcol")),
    "source_missing": Case(_pipeline(source="absent.csv"), needles=("absent.csv",)),
    "source_is_a_directory": Case(_source_dir, needles=("folder.csv", "directory")),
    "source_empty": Case(_source_bytes(b""), needles=("src.csv", "empty")),
    "source_binary": Case(_source_bytes(BINARY), needles=("src.csv",)),
    "source_binary_no_nul": Case(_source_bytes(BINARY_NO_NUL), needles=("src.csv",)),
    "source_gzip_under_csv_name": Case(_source_bytes(gzip.compress(GOOD_CSV.encode() * 50)),
                                       needles=("src.csv",)),
    "duplicate_header": Case(_source_bytes(b"id,name,id\n1,a,2\n"), needles=("src.csv", "id")),
    "empty_header_name": Case(_source_bytes(b"id,,name\n1,2,3\n"), needles=("src.csv",)),
    "reserved_header_name": Case(_source_bytes(b"id,_etl_batch\n1,2\n"),
                                 needles=("src.csv", "_etl_")),
    "dest_equals_source": Case(_pipeline(), args=("run", "p.toml", "--no-ui", "--dest", "data.csv"),
                               needles=("data.csv",)),
    "dest_folder_missing": Case(_pipeline(dest="no/such/folder/out.db"), needles=("out.db",)),
    "source_override_missing": Case(_pipeline(), args=("run", "p.toml", "--no-ui", "--source",
                                                       "other.csv"), needles=("other.csv",)),
    "batch_min_above_max": Case(_pipeline(), env={"PIPELINE_BATCH_SIZE_MIN": "10",
                                                  "PIPELINE_BATCH_SIZE_MAX": "5"},
                                needles=("PIPELINE_BATCH_SIZE_MIN", "PIPELINE_BATCH_SIZE_MAX")),
    "chunk_size_not_a_number": Case(_pipeline(), env={"PIPELINE_CHUNK_SIZE": "abc"},
                                    needles=("PIPELINE_CHUNK_SIZE",)),
    "negative_memory_budget": Case(_pipeline(), env={"PIPELINE_MAX_MEMORY_MB": "-1"},
                                   needles=("PIPELINE_MAX_MEMORY_MB",)),
    "show_unknown_job": Case(lambda tmp: None, args=("show", "nosuchjob"), needles=("nosuchjob",)),
}


def _existing_destination(tmp: Path) -> Path:
    db = tmp / "out.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id TEXT, name TEXT, amount TEXT)")
    conn.execute("INSERT INTO t VALUES ('0', 'before', '0')")
    conn.commit()
    conn.close()
    return db


WITH_EXISTING_DEST = ["toml_syntax_error", "unknown_option_key", "rule_on_missing_column",
                      "duplicate_header", "batch_min_above_max"]


@dataclass
class Refused:
    tmp: Path
    before: dict[Path, str]     # every file before the run -> its digest
    result: Result


def _refuse(base: Path, name: str, existing_dest: bool) -> Refused:
    tmp = base / (name + ("-existing-dest" if existing_dest else ""))
    tmp.mkdir()
    case = CASES[name]
    case.setup(tmp)
    if existing_dest:
        _existing_destination(tmp)
    before = {p: digest(p) for p in tmp.rglob("*") if p.is_file()}
    res = Cli(tmp, tmp / "state" / "state.db")(*case.args, env=case.env)
    return Refused(tmp, before, res)


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[tuple[str, bool], Refused]:
    """Every refused run, started a few at a time (each is a subprocess of ~0.6 s)."""
    base = tmp_path_factory.mktemp("refused")
    jobs = [(name, False) for name in CASES] + [(name, True) for name in WITH_EXISTING_DEST]
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 2))) as pool:
        futures = {job: pool.submit(_refuse, base, *job) for job in jobs}
        return {job: f.result() for job, f in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_user_error_exit_2(refused, name):
    r = refused[(name, False)]
    assert_user_error(r.result, *CASES[name].needles)
    assert not (r.tmp / "out.db").exists(), "destination created by a refused run"
    for path, sha in r.before.items():
        assert digest(path) == sha, f"{path} modified by a refused run"


@pytest.mark.parametrize("name", WITH_EXISTING_DEST)
def test_user_error_leaves_an_existing_destination_untouched(refused, name):
    r = refused[(name, True)]
    assert_user_error(r.result, *CASES[name].needles)
    for path, sha in r.before.items():
        assert digest(path) == sha, f"{path} modified by a refused run"
    assert tables(r.tmp / "out.db") == ["t"]


def test_a_state_store_from_a_newer_etlconsole_is_refused_in_one_line(cli, tmp_path):
    """An older etlconsole given a newer store (a downgrade): exit 2, one line naming the
    store and what to do; the store untouched."""
    import sqlite3
    state = tmp_path / "state" / "state.db"
    assert cli("jobs").returncode == 0
    conn = sqlite3.connect(state)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute(f"PRAGMA user_version = {version + 1}")
    conn.close()
    before = digest(state)
    for args in (("jobs",), ("rejects", "last", "--json")):
        assert_user_error(cli(*args), str(state), f"schema version {version + 1}",
                          "upgrade etlconsole")
    assert digest(state) == before


def test_incompatible_existing_table_is_refused(cli, tmp_path):
    _data(tmp_path, "id,other\n1,2\n")
    write_pipeline(tmp_path / "p.toml")
    db = _existing_destination(tmp_path)
    before = digest(db)
    res = cli("run", "p.toml", "--no-ui", "--json")
    assert_user_error(res, "out.db", "other")
    assert digest(db) == before


def test_destination_that_is_not_sqlite_is_refused(cli, tmp_path):
    _data(tmp_path)
    write_pipeline(tmp_path / "p.toml")
    (tmp_path / "out.db").write_text("this is a text file, not a database\n" * 100)
    before = digest(tmp_path / "out.db")
    res = cli("run", "p.toml", "--no-ui")
    assert_user_error(res, "out.db")
    assert digest(tmp_path / "out.db") == before


def test_check_reports_the_same_user_errors(cli, tmp_path):
    CASES["rule_on_missing_column"].setup(tmp_path)
    assert_user_error(cli("check", "p.toml"), "p.toml", "phase", "rules[0].column")


# -- exit 1: the job started and failed ------------------------------------------------
def test_validate_on_error_fail_exits_1(cli, tmp_path):
    _data(tmp_path, "id,name\n1,alice\n2,bob\nnot-a-number,carol\n4,dave\n")
    write_pipeline(tmp_path / "p.toml", phases=(
        '[[phases]]\ntype = "validate"\non_error = "fail"\n'
        'rules = [{ column = "id", type = "int64" }]\n'))
    res = cli("run", "p.toml", "--no-ui", "--json")
    assert res.returncode == 1, str(res)
    assert "Traceback" not in res.stderr
    summary = res.last_json()
    assert summary["status"] == "failed"
    err = [line for line in res.stderr_lines if line.startswith("error:")]
    assert len(err) == 1, str(res)
    assert "row 3" in err[0] and "type" in err[0] and "id" in err[0], err[0]
    jobs = cli("jobs", "--json")
    assert jobs.returncode == 0, str(jobs)
    by_id = {j["id"]: j for j in jobs.json_lines()}
    assert by_id[summary["job_id"]]["status"] == "failed"
    show = cli("show", summary["job_id"], "--json")
    assert show.returncode == 0 and show.last_json()["error"], str(show)


def test_memory_budget_below_the_engine_start_is_refused(cli, tmp_path):
    """A budget the engine cannot even start in is refused before anything is written."""
    (tmp_path / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml")
    res = cli("run", "p.toml", "--no-ui", env={"PIPELINE_MAX_MEMORY_MB": "80"})
    assert_user_error(res, "PIPELINE_MAX_MEMORY_MB=80", "at least")
    assert not (tmp_path / "out.db").exists()
