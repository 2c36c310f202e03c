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
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .helpers import (Cli, Result, assert_summary, assert_user_error, clean_env, qident, query,
                      tables, write_pipeline)

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "realworld"
if not CORPUS.is_dir():
    pytest.skip(f"real-world corpus not found at {CORPUS}", allow_module_level=True)

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
def _run_driver(tmp: Path) -> dict[str, dict]:
    tasks = [{"id": rel, "source": str(path), "workdir": str(tmp / f"{i:03d}")}
             for i, (rel, path) in enumerate(FILES.items())]
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
    assert code != "exception", (f"only UserError may escape run_pipeline, got {r['exc_type']}: "
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
    assert [dict(zip(columns, row)) for row in loaded] == expected


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
