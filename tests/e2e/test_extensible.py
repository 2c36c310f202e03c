"""Extensible pipelines through the CLI: parquet and csv destinations, conditional phases
(recorded in the job, shown by `show`, reused by `resume`), `check` explaining the plan,
branched pipelines (planned, refused by `run` until the runner executes them) and a
pipeline made with the builder."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from etlconsole import PipelineBuilder
from etlconsole.sample import SAMPLE_PIPELINE_TOML, write_orders_csv
from etlconsole.spec import load_spec

from .helpers import assert_summary, assert_user_error, query

ROWS = 3000
FAST = {"PIPELINE_CHUNK_SIZE": "500", "PIPELINE_BATCH_SIZE_MAX": "500",
        "PIPELINE_BATCH_SIZE_MIN": "100"}


def sample(tmp_path: Path, dest: str, path: str, *, rows: int = ROWS) -> Path:
    write_orders_csv(tmp_path / "orders.csv", rows, seed=11)
    text = SAMPLE_PIPELINE_TOML
    text = text.replace('destination = "sqlite"', f'destination = "{dest}"')
    text = text.replace('path = "warehouse.db"', f'path = "{path}"')
    if dest != "sqlite":
        text = text.replace('table = "orders"\n', "")
    (tmp_path / f"{dest}.toml").write_text(text, encoding="utf-8")
    return tmp_path / f"{dest}.toml"


def folder_rows(path: Path, fmt: str) -> list[dict]:
    files = sorted(str(p) for p in path.glob(f"*.{fmt}"))
    if not files:
        return []
    return ds.dataset(files, format=fmt).to_table().sort_by("id").to_pylist()


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_folder_destination_run_rollback(cli, tmp_path, kind):
    sample(tmp_path, "sqlite", "warehouse.db")
    pipe = sample(tmp_path, kind, "dataset")
    ref = cli("run", "sqlite.toml", "--no-ui", "--json", env=FAST)
    assert ref.returncode == 0, str(ref)
    res = cli("run", pipe.name, "--no-ui", "--json", env=FAST)
    assert res.returncode == 0, str(res)
    summary = res.last_json()
    assert_summary(summary)
    assert summary["destination"]["kind"] == kind and summary["batches"] >= 3
    assert summary["rows_loaded"] == ref.last_json()["rows_loaded"]
    rows = folder_rows(tmp_path / "dataset", kind)
    ids = [r["id"] for r in rows]
    want = [r[0] for r in query(tmp_path / "warehouse.db", "SELECT id FROM orders ORDER BY id")]
    assert ids == want
    first = query(tmp_path / "warehouse.db", "SELECT ordered_on, total FROM orders ORDER BY id LIMIT 1")[0]
    assert str(rows[0]["ordered_on"]) == first[0] and rows[0]["total"] == pytest.approx(first[1])
    parts = sorted(p.name for p in (tmp_path / "dataset").glob(f"part-*.{kind}"))
    assert len(parts) == summary["batches"]
    show = cli("show", summary["job_id"])
    assert f"dest       {kind}: " in show.stdout, show.stdout
    rb = cli("rollback", summary["job_id"], "--yes", "--json")
    assert rb.returncode == 0, str(rb)
    assert rb.last_json()["rows"] == summary["rows_loaded"]
    assert not (tmp_path / "dataset").exists()       # the job made the folder: it goes too


def test_cleanup_removes_an_orphaned_stage_folder(cli, tmp_path):
    pipe = sample(tmp_path, "parquet", "dataset")
    pipe.write_text(pipe.read_text().replace('mode = "append"', 'mode = "atomic"'))
    res = cli("run", pipe.name, "--no-ui", "--json", env=FAST)
    assert res.returncode == 0, str(res)
    job = res.last_json()["job_id"]
    stray = tmp_path / "dataset" / f"_etl_stage_{job}"
    stray.mkdir()           # what a publish cut short by a crash could leave
    (stray / f"part-{job}-00000099.parquet").write_bytes(b"x")
    dry = cli("cleanup", "--dry-run")
    assert f"_etl_stage_{job}" in dry.stdout and stray.exists(), str(dry)
    assert cli("cleanup").returncode == 0
    assert not stray.exists()
    assert len(folder_rows(tmp_path / "dataset", "parquet")) == res.last_json()["rows_loaded"]


# -- conditional phases ------------------------------------------------------------------
COND = '''name = "cond"
[source]
path = "orders.csv"

[[phases]]
type = "clean"
uppercase = ["status"]
when = { env = "SHOUT" }

[[phases]]
type = "clean"
lowercase = ["country"]
when = { column_exists = "no_such_column" }

[[phases]]
type = "transform"
derive = { flag = "status" }
when = { min_rows = 1, max_rows = 100000000 }
{extra}

[[phases]]
type = "load"
path = "out.db"
table = "t"
'''


def cond(tmp_path: Path, extra: str = "") -> Path:
    write_orders_csv(tmp_path / "orders.csv", ROWS, seed=3)
    (tmp_path / "c.toml").write_text(COND.replace("{extra}", extra), encoding="utf-8")
    return tmp_path / "c.toml"


def test_when_skips_and_show_says_why(cli, tmp_path):
    cond(tmp_path)
    res = cli("run", "c.toml", "--no-ui", "--json", env={**FAST, "SHOUT": ""})
    assert res.returncode == 0, str(res)
    job = res.last_json()["job_id"]
    statuses = {r[0] for r in query(tmp_path / "out.db", "SELECT DISTINCT status FROM t")}
    assert statuses and all(s == s.lower() for s in statuses)
    text = cli("show", job).stdout
    assert "skipped    phase 1 (clean): when env = 'SHOUT': SHOUT is not set" in text, text
    assert "skipped    phase 2 (clean): when column_exists = 'no_such_column'" in text, text
    assert "when       phase 3 (transform): runs" in text, text
    info = cli("show", job, "--json").last_json()
    assert len(info["skipped"]) == 2 and info["skipped"][0].startswith("phase 1 (clean)")
    assert [c["holds"] for c in info["conditions"]] == [False, False, True]

    res = cli("run", "c.toml", "--no-ui", "--json", env={**FAST, "SHOUT": "1"})
    job2 = res.last_json()["job_id"]
    statuses = {r[0] for r in query(tmp_path / "out.db", "SELECT DISTINCT status FROM t "
                                    "WHERE _etl_job_id = ?", (job2,))}
    assert statuses and all(s == s.upper() for s in statuses)
    assert len(cli("show", job2, "--json").last_json()["skipped"]) == 1


KILLER = '''
import os, signal
from pathlib import Path

class Killer:
    """kill -9 its own process once, at the batch holding record `at`."""
    def __init__(self, at, flag):
        self.at, self.flag = at, Path(flag)
    def process(self, batch):
        rows = batch.column("_etl_row").to_pylist()
        if rows and max(rows) >= self.at and not self.flag.exists():
            self.flag.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
        return batch
'''


def test_resume_reuses_the_decision_of_the_job_start(cli, tmp_path):
    """Started with SHOUT set, killed, resumed without it: every row is still shouted."""
    (tmp_path / "killer.py").write_text(KILLER, encoding="utf-8")
    cond(tmp_path, extra=f'\n[[phases]]\ntype = "killer:Killer"\nat = 2200\n'
                         f'flag = {json.dumps(str(tmp_path / "flag"))}\n')
    env = {**FAST, "PYTHONPATH": str(tmp_path)}
    res = cli("run", "c.toml", "--no-ui", "--json", env={**env, "SHOUT": "yes"})
    assert res.returncode == -9, str(res)
    job = cli("jobs", "--json").json_lines()[0]
    assert job["status"] == "interrupted" and job["rows_read"] < ROWS, job
    res = cli("resume", job["id"], "--json", env=env)            # SHOUT not set now
    assert res.returncode == 0, str(res)
    assert res.last_json()["status"] == "succeeded"
    statuses = [r[0] for r in query(tmp_path / "out.db", "SELECT status FROM t")]
    assert len(statuses) == res.last_json()["rows_loaded"]
    assert all(s == s.upper() for s in statuses), sorted(set(statuses))
    summary = res.last_json()
    assert summary["rows_read"] == ROWS == summary["rows_loaded"] + summary["rows_rejected"]


def test_check_explains_conditions(cli, tmp_path):
    cond(tmp_path)
    res = cli("check", "c.toml", "--json", env={"SHOUT": "1"})
    assert res.returncode == 0, str(res)
    info = res.last_json()
    assert [p["label"] for p in info["phases"]] == ["phase 1 (clean)", "phase 3 (transform)",
                                                    "phase 4 (load)"]
    assert info["phases"][0]["condition"]["holds"] is True
    assert info["phases"][0]["source"] == "built-in"
    assert info["skipped"] == ["phase 2 (clean): when column_exists = 'no_such_column': "
                               "column 'no_such_column' is missing"]
    assert info["estimated_rows"] == ROWS
    text = cli("check", "c.toml").stdout
    assert "phase 1 (clean)" in text and "skipped: phase 1 (clean)" in text
    assert not (tmp_path / "out.db").exists()


def test_bad_when_is_one_error_line(cli, tmp_path):
    p = cond(tmp_path)
    p.write_text(p.read_text().replace('when = { env = "SHOUT" }', 'when = { env = 5 }'))
    assert_user_error(cli("run", "c.toml", "--no-ui"), "c.toml", "phase 1 (clean)", "when.env")


# -- branches and the builder -------------------------------------------------------------
BRANCHED = '''
[[phases]]
type = "branch"

[[phases.branches]]
name = "cancelled"
filter = "status == 'cancelled'"

[[phases.branches.phases]]
type = "load"
destination = "parquet"
path = "cancelled"

[[phases.branches]]
name = "all"

[[phases.branches.phases]]
type = "load"
path = "warehouse.db"
table = "orders"
'''


def branched(tmp_path: Path) -> Path:
    write_orders_csv(tmp_path / "orders.csv", 500, seed=3)
    text = SAMPLE_PIPELINE_TOML
    head = text[: text.rindex("[[phases]]")]
    (tmp_path / "b.toml").write_text(head + BRANCHED, encoding="utf-8")
    return tmp_path / "b.toml"


def test_branched_pipeline_is_explained_by_check(cli, tmp_path):
    branched(tmp_path)
    res = cli("check", "b.toml", "--json")
    assert res.returncode == 0, str(res)
    info = res.last_json()
    assert [b["name"] for b in info["branches"]] == ["cancelled", "all"]
    assert info["branches"][0]["filter"] == "status == 'cancelled'"
    assert [(d["branch"], d["kind"]) for d in info["destinations"]] == [
        ("cancelled", "parquet"), ("all", "sqlite")]
    text = cli("check", "b.toml").stdout
    assert "branch cancelled where status == 'cancelled'" in text
    assert "-> parquet" in text and "-> sqlite" in text
    assert not (tmp_path / "warehouse.db").exists() and not (tmp_path / "cancelled").exists()


def test_branched_run_loads_every_branch_then_rollback_undoes_all(cli, tmp_path):
    branched(tmp_path)
    res = cli("run", "b.toml", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    summary = res.last_json()
    assert_summary(summary)
    branches = {b["branch"]: b for b in summary["branches"]}
    everything = query(tmp_path / "warehouse.db", "SELECT id, status FROM orders ORDER BY id")
    assert len(everything) == summary["rows_loaded"] == branches["all"]["loaded"]
    cancelled = sorted((r["id"], r["status"]) for r in ds.dataset(
        tmp_path / "cancelled", format="parquet").to_table(columns=["id", "status"]).to_pylist())
    assert cancelled == [r for r in everything if r[1] == "cancelled"]
    assert branches["cancelled"]["loaded"] == len(cancelled) > 0
    assert branches["cancelled"]["filtered"] == summary["rows_loaded"] - len(cancelled)
    ledger = query(tmp_path / "warehouse.db", "SELECT batch FROM _etl_loads ORDER BY batch")
    parts = sorted(tmp_path.joinpath("cancelled").glob("*.parquet"))
    assert len(parts) == len(ledger) == summary["batches"]      # same batches everywhere
    undo = cli("rollback", "last", "--yes")
    assert undo.returncode == 0, str(undo)
    assert not (tmp_path / "cancelled").exists()
    assert "orders" not in [r[0] for r in query(tmp_path / "warehouse.db",
                                                "SELECT name FROM sqlite_master")]


def test_bad_branch_filter_is_one_error_line(cli, tmp_path):
    p = branched(tmp_path)
    p.write_text(p.read_text().replace("status == 'cancelled'", "statu == 'cancelled'"))
    assert_user_error(cli("check", "b.toml"), "b.toml", "phase 5 (branch) > cancelled",
                      "filter", "statu")


def test_builder_pipeline_equals_the_file_and_gives_the_same_table(cli, tmp_path):
    write_orders_csv(tmp_path / "orders.csv", 800, seed=21)
    (tmp_path / "hand.toml").write_text(SAMPLE_PIPELINE_TOML, encoding="utf-8")
    hand = load_spec(tmp_path / "hand.toml")
    b = PipelineBuilder("orders").source("orders.csv")
    for p in hand.phases:
        b.phase(p.type, **p.options)
    spec = b.build()
    assert spec == hand
    spec.phases[-1].options["path"] = "built.db"
    spec.save(tmp_path / "built.toml")
    assert load_spec(tmp_path / "built.toml") == spec
    for name in ("hand.toml", "built.toml"):
        res = cli("run", name, "--no-ui", "--json")
        assert res.returncode == 0, str(res)
    cols = "id, customer_id, email, customer_name, status, quantity, unit_price, total, " \
           "currency, ordered_on, shipped_at, country"
    a = query(tmp_path / "warehouse.db", f"SELECT {cols} FROM orders ORDER BY id")
    c = query(tmp_path / "built.db", f"SELECT {cols} FROM orders ORDER BY id")
    assert a and a == c
