"""Every file of the shared real-world CSV corpus through a plain pipeline (source + load).

A file is either loaded (exit 0: conservation holds, the table holds rows_loaded rows, and
the rows equal an independent parse with Python's csv module minus the rejected records)
or refused before anything is written (exit 2: one ``error:`` line naming the file, no
destination). Anything else — exit 1, another exception, a crash, a hang — is a finding.

Speed: the ~200 files run in-process in ONE driver subprocess (``_corpus_driver.py``, a
watchdog gives each file 60 s), and each file still gets its own test id. A handful of
representative files also run through the real CLI, and must agree with the driver.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .helpers import (Cli, Result, assert_summary, assert_user_error, clean_env, qident, query,
                      tables, toml_str, write_pipeline)

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "realworld"
# Without the corpus its tests are skipped (by their fixtures); the generated families
# at the end of this file need no corpus.
CORPUS_MISSING = f"real-world corpus not found at {CORPUS}"

DRIVER = Path(__file__).with_name("_corpus_driver.py")
FILE_TIMEOUT = 60
EXTENSIONS = {".csv", ".tsv", ".txt", ".dat"}
FILES = {p.relative_to(CORPUS).as_posix(): p
         for p in sorted(CORPUS.rglob("*")) if p.is_file() and p.suffix.lower() in EXTENSIONS}


def _blank_line_before_header(path: Path) -> bool:
    data = path.read_bytes()
    data = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    return data[:1] in (b"\n", b"\r") and data.strip() != b""


# Known engine bugs, as strict xfails: they turn into failures once the bug is fixed.
# (Fixed so far: a blank line before the header, more columns than SQLite allows, a
# quoted newline in the header.)
CONTRACT_BUGS: dict[str, str] = {}
DATA_BUGS: dict[str, str] = {}

# csv-spectrum pairs the corpus README lists as inconsistent (not comparable)
SPECTRUM_SKIP = {"location_coordinates": "JSON is a single object with other values",
                 "newlines_crlf": "CSV holds LF where its JSON expects CRLF"}

REPRESENTATIVE = [
    "csv-spectrum/csvs/quotes_and_newlines.csv",   # quotes and newlines inside a field
    "w3c-csvw/manifest.csv",                       # CR-only line ends, ragged rows
    "csvkit/test_utf16_little.csv",                # UTF-16 with BOM
    "duckdb/rejects/multiple_errors/multiple_errors.csv",
    "duckdb/issue2628_中文.csv",                   # non-ASCII file name, pipe delimiter
    "frictionless/[table].csv",                    # glob characters in the file name
    "frictionless/duplicate-headers.csv",          # refused: duplicate header
    "csvkit/null_byte.csv",                        # refused: NUL byte
    "frictionless/table-with-accents.csv",         # refused: Latin-1
    "frictionless/empty.csv",                      # refused: 0 bytes
]


def _params(ids, bugs):
    return [pytest.param(rel, id=rel, marks=[pytest.mark.xfail(reason=bugs[rel], strict=True)]
                         if rel in bugs else []) for rel in ids]


# -- the driver ------------------------------------------------------------------------
def _run_driver(tmp: Path, sources: dict[str, str] | None = None) -> dict[str, dict]:
    """Every corpus file (or, by id, the file ``sources`` gives instead) through the driver."""
    tmp.mkdir(parents=True, exist_ok=True)
    tasks = [{"id": rel, "source": (sources or {}).get(rel, str(path)),
              "workdir": str(tmp / f"{i:03d}")} for i, (rel, path) in enumerate(FILES.items())]
    results: dict[str, dict] = {}
    remaining, attempt = tasks, 0
    while remaining:
        attempt += 1
        tasks_file, results_file = tmp / f"tasks-{attempt}.json", tmp / f"results-{attempt}.jsonl"
        tasks_file.write_text(json.dumps(remaining), encoding="utf-8")
        results_file.touch()
        try:
            proc = subprocess.run(
                [sys.executable, str(DRIVER), str(tasks_file), str(results_file),
                 str(tmp / f"state-{attempt}.db")],
                cwd=str(tmp), env=clean_env({"ETL_E2E_FILE_TIMEOUT": str(FILE_TIMEOUT)}),
                capture_output=True, text=True, errors="replace",
                timeout=FILE_TIMEOUT * len(remaining) + 60)
            died = f"driver exited with {proc.returncode}: {proc.stderr[-3000:]}"
        except subprocess.TimeoutExpired as exc:
            proc, died = None, f"driver hung (overall timeout): {exc}"
        started = None
        for line in results_file.read_text(encoding="utf-8").splitlines():
            obj = json.loads(line)
            if obj.get("started"):
                started = obj["id"]
            else:
                results[obj["id"]] = obj
                started = None
        if started is not None:          # killed by the watchdog, a crash or the timeout
            results[started] = {"id": started, "exit_code": "crash",
                                "error": f"no result for this file; {died}"}
        elif proc is None or proc.returncode != 0:
            for t in remaining:
                results.setdefault(t["id"], {"id": t["id"], "exit_code": "crash", "error": died})
        remaining = [t for t in remaining if t["id"] not in results]
    return results


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, dict]:
    if not CORPUS.is_dir():
        pytest.skip(CORPUS_MISSING)
    return _run_driver(tmp_path_factory.mktemp("corpus"))


def _loaded_rows(dest: Path) -> tuple[list[str], list[tuple]]:
    cols = [r[1] for r in query(dest, "PRAGMA table_info(t)")]
    data = [c for c in cols if not c.startswith("_etl_")]
    assert {"_etl_job_id", "_etl_batch"} <= set(cols), cols
    return data, query(dest, f"SELECT {', '.join(map(qident, data))} FROM t ORDER BY rowid")


# -- every file: the contract ----------------------------------------------------------
@pytest.mark.parametrize("rel", _params(FILES, CONTRACT_BUGS))
def test_corpus_file(corpus, rel):
    r = corpus[rel]
    code = r["exit_code"]
    assert code != "crash", r["error"]
    assert code != "exception", (f"only UserError may escape api.run, got {r['exc_type']}: "
                                 f"{r['error']}\n{r['traceback']}")
    assert code in (0, 2), f"exit {code} (the job failed after it started): {r}"
    dest = Path(r["dest"])
    if code == 2:
        message = r["error"]
        assert message.strip() and "\n" not in message.strip(), f"not one line: {message!r}"
        assert "Traceback" not in message
        assert FILES[rel].name in message, f"the message does not name the file: {message}"
        assert not dest.exists() or tables(dest) == [], "refused, yet the destination was written"
        return
    s = r["summary"]
    assert_summary(s)
    assert s["status"] == "succeeded"
    assert query(dest, "SELECT count(*) FROM t") == [(s["rows_loaded"],)]


# -- every loaded file: the rows against an independent reader ---------------------------
@pytest.mark.parametrize("rel", _params(FILES, DATA_BUGS))
def test_corpus_rows_match_python_csv(corpus, rel):
    r = corpus[rel]
    if r["exit_code"] != 0:
        pytest.skip(f"not loaded (exit {r['exit_code']})")
    d, s = r["dialect"], r["summary"]
    encoding = d["encoding"]
    text = FILES[rel].read_bytes().decode("utf-16" if encoding.startswith("utf-16") else encoding,
                                          errors="replace").lstrip("\ufeff")
    csv.field_size_limit(1 << 30)
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=d["delimiter"],
                              quotechar=d["quote"]))
    while records and not any(f.strip() for f in records[0]):   # blank lines before the header
        records.pop(0)
    header, body = records[0], [rec for rec in records[1:] if rec]
    columns, loaded = _loaded_rows(Path(r["dest"]))
    assert columns == [h.strip() for h in header]
    assert s["rows_read"] == len(body), f"engine read {s['rows_read']}, csv module {len(body)}"
    rows = [x["row"] for x in r["rejects"]]
    assert all(isinstance(n, int) and 1 <= n <= len(body) for n in rows), r["rejects"]
    assert len(set(rows)) == len(rows) == s["rows_rejected"]
    for x in r["rejects"]:
        rec = body[x["row"] - 1]
        assert x["message"], x
        if x["rule"] == "fields":
            assert len(rec) != len(header), (x, rec)
        elif x["rule"] == "encoding":
            assert "\ufffd" in "".join(rec), (x, rec)
    expected = [tuple(rec) for n, rec in enumerate(body, 1) if n not in set(rows)]
    assert loaded == expected


# -- csv-spectrum: the expected JSON ---------------------------------------------------
SPECTRUM = sorted(rel for rel in FILES if rel.startswith("csv-spectrum/csvs/"))


@pytest.mark.parametrize("rel", SPECTRUM)
def test_csv_spectrum_matches_expected_json(corpus, rel):
    stem = Path(rel).stem
    if stem in SPECTRUM_SKIP:
        pytest.skip(f"known inconsistent pair: {SPECTRUM_SKIP[stem]}")
    expected = json.loads((CORPUS / "csv-spectrum" / "json" / f"{stem}.json").read_text("utf-8"))
    r = corpus[rel]
    assert r["exit_code"] == 0, r
    assert r["summary"]["rows_rejected"] == 0
    columns, loaded = _loaded_rows(Path(r["dest"]))
    assert [dict(zip(columns, row, strict=False)) for row in loaded] == expected


# -- a few through the real CLI --------------------------------------------------------
def _cli_run(base: Path, i: int, rel: str) -> tuple[Path, Result]:
    tmp = base / f"cli-{i}"
    tmp.mkdir()
    write_pipeline(tmp / "p.toml", source=str(FILES[rel]), dest="dest.db")
    res = Cli(tmp, tmp / "state" / "state.db")("run", "p.toml", "--no-ui", "--json",
                                               timeout=FILE_TIMEOUT)
    return tmp, res


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, tuple[Path, Result]]:
    """The representative files through the CLI, two subprocesses at a time."""
    if not CORPUS.is_dir():
        pytest.skip(CORPUS_MISSING)
    base = tmp_path_factory.mktemp("corpus-cli")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {rel: pool.submit(_cli_run, base, i, rel)
                   for i, rel in enumerate(REPRESENTATIVE) if rel in FILES}
        return {rel: f.result() for rel, f in futures.items()}


@pytest.mark.parametrize("rel", [rel for rel in REPRESENTATIVE if rel in FILES])
def test_representative_files_through_the_cli(corpus, cli_runs, rel):
    tmp, res = cli_runs[rel]
    assert "Traceback" not in res.stderr, str(res)
    expected = corpus[rel]["exit_code"]
    assert res.returncode == expected, str(res)
    if res.returncode == 2:
        assert_user_error(res, FILES[rel].name)
        assert not (tmp / "dest.db").exists()
        return
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert_summary(s)
    driver = corpus[rel]["summary"]
    assert (s["rows_read"], s["rows_loaded"], s["rows_rejected"]) == (
        driver["rows_read"], driver["rows_loaded"], driver["rows_rejected"])
    assert query(tmp / "dest.db", "SELECT count(*) FROM t") == [(s["rows_loaded"],)]


# -- a generated family of hostile headers: run, killed + resumed, rolled back --------------
# Each header set is loaded by an uninterrupted run; then by a run killed (-9) after a few
# committed batches and resumed, which must leave the same rows; then that job is rolled
# back, which must leave none of them. Or the header set is refused: exit 2, one line, the
# destination untouched (both times).
HOSTILE_ROWS = 12_000
HOSTILE_ENV = {"PIPELINE_BATCH_SIZE_MIN": "300", "PIPELINE_BATCH_SIZE_MAX": "300",
               "PIPELINE_CHUNK_SIZE": "300", "PIPELINE_CHECKPOINT_INTERVAL": "900"}


def _hostile_cases():
    cases = {
        "sql-keywords": ["select", "from", "where", "table", "order", "group", "index", "primary",
                         "default", "null", "values", "limit"],
        "quotes": ['a"b', "it's", '"', "''", '""quoted""', 'x"; DROP TABLE t; --'],
        "brackets": ["[x]", "[", "]", "(p)", "{c}", "a[0]", "<t>"],
        "backticks": ["`t`", "`", "a`b", "``"],
        "placeholders": ["?", "?1", ":name", "@v", "$1", "%s", "%(x)s", "{}"],
        "punctuation-and-space": ["a b", "a.b", "a;b", "a,b", "a\nb", "-- c", "/* c */", "\\"],
        "unicode": ["naïve", "日本語", "emoji😀", "zero\u200bwidth"],
        "long-name": ["n" * 1000, "m" * 2000],
        "case-only": ["Name", "name", "other"],
        "case-only-keyword": ["SELECT", "select"],
        "reserved-prefix": ["id", "_etl_batch"],
        "1998-columns": [f"c{i}" for i in range(1998)],
        "2000-columns": [f"c{i}" for i in range(2000)],
    }
    params = [pytest.param(header, "text", id=name) for name, header in cases.items()]
    # Every spelling of SQLite's row id aliases: a column of that name shadows the alias,
    # so no ledger or rollback query may use one (before ADR 0014 the ledger kept rowid
    # ranges: text values failed the load, integer values left rows behind on rollback).
    for alias in ("rowid", "oid", "_rowid_", "ROWID", "Oid", "_ROWID_"):
        for values in ("text", "integer"):
            params.append(pytest.param(["name", alias, "city"], values, id=f"alias-{alias}-{values}"))
    return params


def _hostile_csv(path: Path, header: list[str], values: str) -> int:
    rows = HOSTILE_ROWS if len(header) < 100 else 600
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(rows):
            w.writerow([(i * 7 + j) if values == "integer" and j == 1 else f"v{i}-{j}"
                        for j in range(len(header))])
    return rows


def _hostile_lab(base: Path, name: str, source: Path, phases: str = "") -> tuple[Path, Cli]:
    folder = base / name
    folder.mkdir()
    write_pipeline(folder / "p.toml", source=str(source), dest="dest.db", phases=phases)
    return folder, Cli(folder, folder / "state" / "state.db")


def _contents(db: Path) -> tuple[list[str], list[tuple]] | None:
    if not db.exists() or "t" not in tables(db):
        return None
    cols = [r[1] for r in query(db, "PRAGMA table_info(t)") if not r[1].startswith("_etl_")]
    sel = ", ".join(map(qident, cols))
    return cols, query(db, f"SELECT {sel} FROM t ORDER BY {sel}")


def _committed(state: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT count(*) FROM pipeline_batches WHERE status = 'COMMITTED'"
                                ).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _run_and_kill(folder: Path, cli: Cli, env: dict, batches: int = 4) -> str | None:
    """kill -9 the run after `batches` committed; the job id, or None if it ended first."""
    cmd = [sys.executable, "-m", "etlconsole", "--state", str(cli.state), "run", "p.toml",
           "--no-ui", "--json"]
    with open(folder / "killed.out", "w") as out, open(folder / "killed.err", "w") as err:
        proc = subprocess.Popen(cmd, cwd=folder, env=clean_env(env), stdout=out, stderr=err)
    end = time.monotonic() + FILE_TIMEOUT
    while proc.poll() is None and _committed(cli.state) < batches and time.monotonic() < end:
        time.sleep(0.002)
    if proc.poll() is not None:
        return None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    jobs = cli("jobs", "--json", env=env)
    assert jobs.returncode == 0, str(jobs)
    [job] = jobs.json_lines()
    assert job["status"] == "interrupted", job
    return job["id"]


@pytest.mark.parametrize("header,values", _hostile_cases())
def test_hostile_headers_load_resume_and_roll_back_exactly(tmp_path, header, values):
    source = tmp_path / "hostile.csv"
    rows = _hostile_csv(source, header, values)
    env = dict(HOSTILE_ENV)
    if rows < HOSTILE_ROWS:      # wide rows: smaller batches, still several of them
        env.update(PIPELINE_BATCH_SIZE_MIN="50", PIPELINE_BATCH_SIZE_MAX="50", PIPELINE_CHUNK_SIZE="50")
    # integer values land as INTEGER (the case where a shadowed rowid is read as the row's id)
    phases = (f'[[phases]]\ntype = "transform"\ncast = {{ {toml_str(header[1])} = "int64" }}\n'
              if values == "integer" else "")
    ref_dir, ref = _hostile_lab(tmp_path, "ref", source, phases)
    first = ref("run", "p.toml", "--no-ui", "--json", env=env, timeout=FILE_TIMEOUT)
    if first.returncode == 2:    # refused: one line that names the file, nothing written
        assert_user_error(first, source.name)
        assert not (ref_dir / "dest.db").exists() or tables(ref_dir / "dest.db") == []
        return
    assert first.returncode == 0, str(first)
    summary = first.last_json()
    assert_summary(summary)
    assert (summary["rows_read"], summary["rows_loaded"]) == (rows, rows), summary
    expected = _contents(ref_dir / "dest.db")
    assert expected is not None and expected[0] == header and len(expected[1]) == rows

    for attempt in range(3):     # a run that ends before the kill is tried again
        folder, cli = _hostile_lab(tmp_path, f"killed-{attempt}", source, phases)
        job = _run_and_kill(folder, cli, env)
        if job is not None:
            break
    else:
        pytest.fail("the run always ended before it could be killed")
    resumed = cli("resume", job, "--no-ui", "--json", env=env, timeout=FILE_TIMEOUT)
    assert resumed.returncode == 0, str(resumed)
    done = resumed.last_json()
    assert_summary(done)
    assert done["status"] == "succeeded" and done["rows_loaded"] == rows, done
    assert _contents(folder / "dest.db") == expected, \
        "resumed after a kill: not the rows of an uninterrupted run"

    back = cli("rollback", job, "--yes", "--json", env=env)
    assert back.returncode == 0, str(back)
    assert back.last_json()["rows"] == rows
    left = _contents(folder / "dest.db")
    assert left is None or left[1] == [], f"rolled back, yet {len(left[1])} rows are left"
    assert not [t for t in tables(folder / "dest.db") if t.startswith("_etl_stage_")]
