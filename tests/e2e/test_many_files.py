"""A source of many files (ADR 0025) through the real CLI: a glob, a directory or a list
of six files (two gzipped, one bz2, one zstd, one lz4) loads the same table as the same
records in one plain file, with the same rejects, each told by file and record within it;
mistakes are refused before anything is written; every file of the real-world corpus,
gzipped, behaves exactly like its plain version."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from etlconsole.sample import SAMPLE_PIPELINE_TOML, write_orders_csv

from .helpers import (Cli, assert_summary, assert_user_error, compress, query, records_of, toml_str,
                      write_pipeline)

NAMES = ["orders_1.csv.gz", "orders_2.csv", "orders_3.csv.bz2", "orders_4.csv.gz",
         "orders_5.csv.zst", "orders_6.csv.lz4"]
CUTS = [0, 700, 1_500, 2_300, 3_333, 4_100, 5_000]
DATA_COLUMNS = ("id, customer_id, email, customer_name, status, quantity, unit_price, total, "
                "currency, ordered_on, shipped_at, country")


@pytest.fixture(scope="module")
def drop(tmp_path_factory) -> Path:
    """orders.csv (5,000 records with every defect of the sample generator, ragged rows
    among them; duplicates of ids across files) and the same records in six files."""
    root = tmp_path_factory.mktemp("many")
    write_orders_csv(root / "orders.csv", 5_000, seed=15)
    header, *records = records_of((root / "orders.csv").read_bytes())
    assert len(records) == CUTS[-1]
    (root / "drop").mkdir()
    for name, a, b in zip(NAMES, CUTS, CUTS[1:], strict=False):
        (root / "drop" / name).write_bytes(compress(header + b"".join(records[a:b]), name))
    for name, dest in (("one.toml", "one.db"), ("many.toml", "many.db")):
        source = "orders.csv" if name == "one.toml" else "drop/orders_*.csv*"
        (root / name).write_text(SAMPLE_PIPELINE_TOML.replace('"orders.csv"', toml_str(source))
                                 .replace('"warehouse.db"', toml_str(dest)), encoding="utf-8")
    return root


def _file_of(row: int) -> tuple[str, int]:
    """Which of the six files holds record ``row`` of the whole, and its number there."""
    for name, a, b in zip(NAMES, CUTS, CUTS[1:], strict=False):
        if a < row <= b:
            return name, row - a
    raise AssertionError(row)


def _rejects(cli: Cli, job: str) -> list[dict]:
    res = cli("rejects", job, "--json")
    assert res.returncode == 0, str(res)
    return res.json_lines()


@pytest.mark.parametrize("form", ["glob", "directory", "list"])
def test_six_files_load_like_one_file(drop, tmp_path, form):
    cli = Cli(drop, tmp_path / "state.db")
    one = cli("run", "one.toml", "--no-ui", "--json", "--dest", str(tmp_path / "one.db"))
    assert one.returncode == 0, str(one)
    pipeline = drop / f"many-{form}.toml"
    source = {"glob": toml_str("drop/orders_*.csv*"), "directory": toml_str("drop"),
              "list": json.dumps([f"drop/{n}" for n in reversed(NAMES)])}[form]
    pipeline.write_text((drop / "many.toml").read_text("utf-8")
                        .replace(toml_str("drop/orders_*.csv*"), source), encoding="utf-8")
    res = cli("run", pipeline.name, "--no-ui", "--json", "--dest", str(tmp_path / "many.db"))
    assert res.returncode == 0, str(res)
    s, s1 = res.last_json(), one.last_json()
    assert_summary(s)
    assert (s["rows_read"], s["rows_loaded"], s["rows_rejected"]) == (
        s1["rows_read"], s1["rows_loaded"], s1["rows_rejected"]) == (5_000, s1["rows_loaded"],
                                                                      5_000 - s1["rows_loaded"])
    # the same rows in the same order (the files read in sorted order)
    sql = f"SELECT {DATA_COLUMNS} FROM orders ORDER BY rowid"
    assert query(tmp_path / "many.db", sql) == query(tmp_path / "one.db", sql)
    # the same rejects, each told by its file and its record there
    many, single = _rejects(cli, s["job_id"]), _rejects(cli, s1["job_id"])
    key = ("row", "phase", "rule", "column", "message", "values")
    assert [{k: r[k] for k in key} for r in many] == [{k: r[k] for k in key} for r in single]
    assert {r["rule"] for r in many} >= {"fields", "unique", "required"}
    for r in many:
        name, record = _file_of(r["row"])
        assert (Path(r["file"]).name, r["file_record"]) == (name, record), r
        assert "file" not in next(x for x in single if x["row"] == r["row"])
    # batches never span files; the job shows its files with their records
    batches = cli("batches", s["job_id"], "--json").json_lines()
    assert len(batches) >= len(NAMES)
    for b in batches:
        assert _file_of(b["row_start"])[0] == _file_of(b["row_end"])[0] == Path(b["file"]).name, b
    shown = cli("show", s["job_id"]).stdout
    for name, a, b in zip(NAMES, CUTS, CUTS[1:], strict=False):
        assert f"{name}  (" in shown and f"records {a + 1:,}-{b:,} ({b - a:,})" in shown, shown


def test_a_ragged_record_is_told_by_file_and_line(drop, tmp_path):
    """A reject's file_record is the record's number in the file the operator opens."""
    cli = Cli(drop, tmp_path / "state.db")
    s = cli("run", "many.toml", "--no-ui", "--json", "--dest", str(tmp_path / "m.db")).last_json()
    ragged = [r for r in _rejects(cli, s["job_id"]) if r["rule"] == "fields"]
    assert ragged
    for r in ragged:
        path = Path(r["file"])
        data = path.read_bytes()
        text = (gzip.decompress(data) if path.suffix == ".gz" else bz2.decompress(data)
                if path.suffix == ".bz2" else None)
        if text is None:
            continue        # zstd/lz4/plain: covered by the mapping test above
        records = list(csv.reader(io.StringIO(text.decode("utf-8", "replace"), newline="")))[1:]
        assert len(records[r["file_record"] - 1]) != 14, (r, records[r["file_record"] - 1])


def test_a_file_whose_header_differs_is_refused_naming_both(drop, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.csv").write_text("id,name\n1,x\n")
    (folder / "b.csv.gz").write_bytes(gzip.compress(b"id,title\n2,y\n"))
    write_pipeline(tmp_path / "p.toml", source="drop")
    res = Cli(tmp_path, tmp_path / "state.db")("run", "p.toml", "--no-ui", "--json")
    line = assert_user_error(res, str(folder / "b.csv.gz"), str(folder / "a.csv"), "differs")
    assert "title" in line
    assert not (tmp_path / "out.db").exists()


def test_a_gz_that_is_not_gzip_is_refused(tmp_path):
    (tmp_path / "orders.csv.gz").write_text("id,name\n1,x\n")
    write_pipeline(tmp_path / "p.toml", source="*.csv.gz")
    res = Cli(tmp_path, tmp_path / "state.db")("run", "p.toml", "--no-ui", "--json")
    assert_user_error(res, "orders.csv.gz", "does not hold gzip data")
    assert not (tmp_path / "out.db").exists()


def test_an_empty_glob_is_refused(tmp_path):
    write_pipeline(tmp_path / "p.toml", source="drops/2026-12-*/orders_*.csv")
    res = Cli(tmp_path, tmp_path / "state.db")("run", "p.toml", "--no-ui", "--json")
    assert_user_error(res, "drops/2026-12-*/orders_*.csv", "no source file matches")
    assert not (tmp_path / "out.db").exists()


def test_an_empty_list_is_refused_with_its_key(tmp_path):
    (tmp_path / "p.toml").write_text('name = "x"\n[source]\npath = []\n')
    res = Cli(tmp_path, tmp_path / "state.db")("check", "p.toml")
    assert_user_error(res, "source.path", "empty list")


def test_source_option_is_repeatable_and_takes_a_glob(drop, tmp_path):
    cli = Cli(drop, tmp_path / "state.db")
    listed = cli("run", "one.toml", "--no-ui", "--json", "--dest", str(tmp_path / "a.db"),
                 *[x for n in NAMES for x in ("--source", f"drop/{n}")])
    globbed = cli("run", "one.toml", "--no-ui", "--json", "--dest", str(tmp_path / "b.db"),
                  "--source", "drop/orders_*")
    for res in (listed, globbed):
        assert res.returncode == 0, str(res)
        assert res.last_json()["rows_read"] == 5_000
    sql = f"SELECT {DATA_COLUMNS} FROM orders ORDER BY rowid"
    assert query(tmp_path / "a.db", sql) == query(tmp_path / "b.db", sql)


def test_sample_drop_loads_like_the_sample_file(tmp_path):
    """sample_data/orders_drop.toml (a glob over three files, one gzipped) gives the table
    and the rejects of sample_data/orders.toml; progress ends at the drop's bytes on disk."""
    import shutil
    root = Path(__file__).resolve().parents[2] / "sample_data"
    work = tmp_path / "sample"
    shutil.copytree(root, work)
    cli = Cli(work, tmp_path / "state.db")
    one = cli("run", "orders.toml", "--no-ui", "--json")
    many = cli("run", "orders_drop.toml", "--no-ui", "--json")
    assert one.returncode == 0 and many.returncode == 0, f"{one}\n{many}"
    sql = f"SELECT {DATA_COLUMNS} FROM orders ORDER BY rowid"
    assert query(work / "warehouse-drop.db", sql) == query(work / "warehouse.db", sql)
    key = ("row", "phase", "rule", "column", "message")
    r1, rm = _rejects(cli, one.last_json()["job_id"]), _rejects(cli, many.last_json()["job_id"])
    assert [{k: r[k] for k in key} for r in rm] == [{k: r[k] for k in key} for r in r1]
    job = json.loads(cli("show", many.last_json()["job_id"], "--json").stdout)
    on_disk = sum(p.stat().st_size for p in (work / "drop").iterdir())
    assert job["bytes_total"] == on_disk
    assert job["bytes_read"] == on_disk


def test_fix_file_of_a_drop_reads_each_record_from_its_file(drop, tmp_path):
    """rejects --fix reads the rejected records again from the files that hold them (the
    ragged ones as their raw text): the same fix file as for the one file; a replay of it
    runs."""
    cli = Cli(drop, tmp_path / "state.db")
    one = cli("run", "one.toml", "--no-ui", "--json", "--dest", str(tmp_path / "one.db"))
    many = cli("run", "many.toml", "--no-ui", "--json", "--dest", str(tmp_path / "many.db"))
    for res, name in ((one, "one.csv"), (many, "many.csv")):
        assert res.returncode == 0, str(res)
        fixed = cli("rejects", res.last_json()["job_id"], "--fix", str(tmp_path / name))
        assert fixed.returncode == 0 and "raw text" in fixed.stdout, str(fixed)
        assert "note:" not in fixed.stdout + fixed.stderr, str(fixed)   # not from the store
    assert (tmp_path / "many.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    replay = cli("replay", many.last_json()["job_id"], str(tmp_path / "many.csv"), "--dry-run",
                 "--json")
    assert replay.returncode == 0, str(replay)
    assert replay.last_json()["rows_in"] == many.last_json()["rows_rejected"]


def test_rerun_from_a_checkpoint_keeps_batches_within_files(drop, tmp_path):
    """rerun --from of a job of many files: the checkpoint's batches say their files, so
    the new job's batches are cut at the files' ends too, and its rejects keep their files."""
    text = (drop / "many.toml").read_text("utf-8").replace(
        'type = "validate"', 'type = "validate"\ncheckpoint = true')
    (drop / "many-ck.toml").write_text(text, encoding="utf-8")
    cli = Cli(drop, tmp_path / "state.db")
    env = {"PIPELINE_BATCH_SIZE_MIN": "2000", "PIPELINE_BATCH_SIZE_MAX": "2000",
           "PIPELINE_CHUNK_SIZE": "2000"}
    first = cli("run", "many-ck.toml", "--no-ui", "--json", "--dest", str(tmp_path / "m.db"),
                env=env)
    assert first.returncode == 0, str(first)
    second = cli("rerun", first.last_json()["job_id"], "--from", "validate", "--no-ui", "--json",
                 env=env)
    assert second.returncode == 0, str(second)
    job = second.last_json()["job_id"]
    assert second.last_json()["rows_read"] == 5_000
    batches = cli("batches", job, "--json").json_lines()
    for b in batches:
        assert _file_of(b["row_start"])[0] == _file_of(b["row_end"])[0] == Path(b["file"]).name, b
    for r in _rejects(cli, job):
        assert (Path(r["file"]).name, r["file_record"]) == _file_of(r["row"]), r


def test_check_lists_the_files_in_reading_order(drop, tmp_path):
    cli = Cli(drop, tmp_path / "state.db")
    res = cli("check", "many.toml", "--json")
    assert res.returncode == 0, str(res)
    info = json.loads(res.stdout)
    assert [Path(f["path"]).name for f in info["files"]] == NAMES
    assert [f["compression"] for f in info["files"]] == ["gzip", None, "bz2", "gzip", "zstd", "lz4"]
    text = cli("check", "many.toml").stdout
    assert text.index("orders_1.csv.gz") < text.index("orders_6.csv.lz4")
    one = json.loads(cli("check", "one.toml", "--json").stdout)
    assert "files" not in one          # one file: the plan's JSON as before


def test_a_drops_checkpoints_and_file_notes_do_not_grow_with_its_files(tmp_path):
    """A drop of 120 files, a checkpoint every 100 records: no checkpoint carries the
    files' fingerprints (each would grow with the drop: 0.6 MB at 2,000 files), and what
    reading each file learned is its own row, told by ``show`` (the ends of the drop, or
    ``--files`` every file) and the listings."""
    write_orders_csv(tmp_path / "all.csv", 2_400, seed=3)
    header, *records = records_of((tmp_path / "all.csv").read_bytes())
    (tmp_path / "drop").mkdir()
    for k in range(120):
        (tmp_path / "drop" / f"o_{k:03d}.csv").write_bytes(header + b"".join(records[20 * k: 20 * k + 20]))
    (tmp_path / "p.toml").write_text(SAMPLE_PIPELINE_TOML.replace('"orders.csv"', toml_str("drop")),
                                     encoding="utf-8")
    cli = Cli(tmp_path, tmp_path / "state.db")
    res = cli("run", "p.toml", "--no-ui", "--json", env={"PIPELINE_CHECKPOINT_INTERVAL": "100"})
    assert res.returncode == 0, str(res)
    job = res.last_json()["job_id"]
    checkpoints = cli("checkpoints", job, "--json").json_lines()
    assert len(checkpoints) >= 20
    assert max(len(json.dumps(c["checkpoint_data"])) for c in checkpoints) < 300
    files = cli("show", job, "--json").last_json()["source_fingerprint"]["files"]
    assert [(f["first_record"], f["records"]) for f in files] == [(20 * k + 1, 20) for k in range(120)]
    assert all(f["content_sha256"] for f in files)
    last = _rejects(cli, job)[-1]
    assert (Path(last["file"]).name, last["file_record"]) == (f"o_{(last['row'] - 1) // 20:03d}.csv",
                                                              (last["row"] - 1) % 20 + 1)
    # show lists the drop's ends and counts the files between; --files lists every one
    text = cli("show", job).stdout
    assert [k for k in range(120) if f"o_{k:03d}.csv  (" in text] == [*range(5), *range(115, 120)]
    assert f"… 110 more files (etlconsole show {job} --files lists them all)" in text
    assert "records 2,381-2,400 (20)" in text
    every = cli("show", job, "--files").stdout
    assert all(f"o_{k:03d}.csv  (" in every for k in range(120)) and "more files" not in every
