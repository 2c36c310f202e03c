"""Batch strategy end to end: rows the database refuses, phases that raise, a destination
locked by another process, max_reject_rate and batch sizes that adapt (issue 4)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from etlconsole.sample import SAMPLE_PIPELINE_TOML, write_orders_csv

from .helpers import SLOW_PHASE, Cli, assert_summary, assert_user_error, query

ROWS = 20_000
COLUMNS = ("id, customer_id, email, customer_name, status, quantity, unit_price, total, "
           "currency, ordered_on, shipped_at, country")

PLUGIN = '''
class Explode:
    """Raises on the batches holding one of ``values`` in ``column``."""
    def __init__(self, column, values, on_error="reject"):
        self.column, self.values, self.on_error = column, set(values), on_error
    def process(self, batch):
        hit = self.values & set(batch.column(self.column).to_pylist())
        if hit:
            raise ValueError(f"cannot handle {min(hit)!r}")
        return batch
''' + SLOW_PHASE


@pytest.fixture(scope="module")
def orders(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("orders")
    write_orders_csv(folder / "orders.csv", ROWS, seed=11)
    return folder / "orders.csv"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, orders) -> dict:
    """The sample pipeline into a fresh database: what every scenario is compared with."""
    folder = tmp_path_factory.mktemp("reference")
    pipeline = _pipeline(folder, orders)
    res = Cli(folder, folder / "state.db")("run", pipeline, "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    return {"summary": res.last_json(), "rows": _rows(folder / "warehouse.db")}


def _pipeline(folder: Path, source: Path, *, extra_phases: str = "", load_extra: str = "",
              top: str = "") -> Path:
    text = SAMPLE_PIPELINE_TOML.replace('path = "orders.csv"', f'path = {json.dumps(str(source))}')
    head, sep, load = text.rpartition("[[phases]]\ntype = \"load\"")
    text = f"{top}\n{head}{extra_phases}\n{sep}{load}{load_extra}\n"
    path = folder / "pipeline.toml"
    path.write_text(text, encoding="utf-8")
    (folder / "etl_test_phases.py").write_text(PLUGIN, encoding="utf-8")
    return path


def _rows(db: Path, where: str = "") -> list[tuple]:
    return query(db, f"SELECT {COLUMNS} FROM orders {where} ORDER BY id")


def _cli(folder: Path) -> Cli:
    return Cli(folder, folder / "state" / "state.db")


def _env(**settings) -> dict:
    return {"PYTHONPATH": ".", **{f"PIPELINE_{k.upper()}": str(v) for k, v in settings.items()}}


# -- rows the destination refuses -------------------------------------------------------
def _table_with_check(db: Path, check: str) -> None:
    query(db, f"CREATE TABLE orders (id INTEGER, customer_id INTEGER, email TEXT, "
              f"customer_name TEXT, status TEXT, quantity INTEGER, unit_price REAL, total REAL, "
              f"currency TEXT, ordered_on TEXT, shipped_at TEXT, country TEXT, CHECK ({check}))")


def test_check_constraint_rejects_only_the_violating_rows(tmp_path, orders, reference):
    _table_with_check(tmp_path / "warehouse.db", "quantity % 10 != 3")
    cli = _cli(tmp_path)
    res = cli("run", _pipeline(tmp_path, orders), "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    summary = res.last_json()
    assert_summary(summary)
    violating = [r for r in reference["rows"] if r[5] % 10 == 3]
    assert violating, "the sample data must hold rows the CHECK refuses"
    assert summary["rows_loaded"] == reference["summary"]["rows_loaded"] - len(violating)
    assert summary["rows_rejected"] == reference["summary"]["rows_rejected"] + len(violating)
    assert _rows(tmp_path / "warehouse.db") == [r for r in reference["rows"] if r[5] % 10 != 3]

    rejects = cli("rejects", "last", "--json").json_lines()
    load = [r for r in rejects if r["phase"] == "load"]
    assert len(load) == len(violating)
    assert {r["rule"] for r in load} == {"check"}
    assert all("CHECK constraint failed" in r["message"] for r in load)
    assert sorted(json.loads(r["values"])["id"] if isinstance(r["values"], str) else r["values"]["id"]
                  for r in load) == sorted(r[0] for r in violating)
    # record numbers point at the source: that record's order_id is the refused id
    lines = orders.read_text(encoding="utf-8").splitlines()
    for r in load[:50]:
        values = r["values"] if isinstance(r["values"], dict) else json.loads(r["values"])
        assert lines[r["row"]].split(",")[0].strip() == str(values["id"]), r


def test_on_error_fail_stops_the_job_resumably_at_the_first_refused_row(tmp_path, orders, reference):
    _table_with_check(tmp_path / "warehouse.db", "quantity % 10 != 3")
    cli = _cli(tmp_path)
    res = cli("run", _pipeline(tmp_path, orders, load_extra='on_error = "fail"'),
              "--no-ui", "--json")
    assert res.returncode == 1, str(res)
    summary = res.last_json()
    assert summary["status"] == "failed"
    assert "refused by the destination: CHECK constraint failed" in summary["error"]
    assert "record " in summary["error"] and "resumable" in summary["error"]
    loaded = _rows(tmp_path / "warehouse.db")
    assert all(r[5] % 10 != 3 for r in loaded)
    assert len(loaded) == summary["rows_loaded"]        # only whole batches before the row
    show = cli("show", "last", "--json").last_json()
    assert show["status"] == "failed"
    # Batches the main thread had begun (PENDING, with their rejects) but the loader never
    # took are forgotten when the job stops; only the batch the loader failed on stays.
    batches = cli("batches", "last", "--json").json_lines()
    pending = [b for b in batches if b["status"] != "COMMITTED"]
    last = max(b["batch_number"] for b in batches)
    assert len(pending) == 1 and pending[0]["batch_number"] == last, batches
    last = pending[0]["row_end"]
    assert all(r["row"] <= last for r in cli("rejects", "last", "--json").json_lines())


# -- a phase that raises -----------------------------------------------------------------
def _explode(values: list[int], on_error: str = "reject") -> str:
    return (f'\n[[phases]]\ntype = "etl_test_phases:Explode"\ncolumn = "id"\n'
            f'values = {json.dumps(values)}\non_error = "{on_error}"\n')


def test_a_raising_custom_phase_costs_only_its_rows(tmp_path, orders, reference):
    kept = reference["rows"]
    victims = [kept[5][0], kept[9_000][0], kept[-1][0]]
    cli = _cli(tmp_path)
    res = cli("run", _pipeline(tmp_path, orders, extra_phases=_explode(victims)), "--no-ui",
              "--json", env=_env())
    assert res.returncode == 0, str(res)
    summary = res.last_json()
    assert_summary(summary)
    assert summary["rows_loaded"] == reference["summary"]["rows_loaded"] - 3
    assert _rows(tmp_path / "warehouse.db") == [r for r in kept if r[0] not in victims]
    raised = [r for r in cli("rejects", "last", "--json").json_lines()
              if r["rule"] == "exception"]
    assert len(raised) == 3
    assert {r["phase"] for r in raised} == {"etl_test_phases:Explode"}
    assert all(r["message"].startswith("ValueError: cannot handle") for r in raised)
    assert sorted(int(r["message"].rsplit(" ", 1)[1]) for r in raised) == sorted(victims)


def test_a_raising_phase_with_on_error_fail_fails_the_job(tmp_path, orders, reference):
    victim = reference["rows"][100][0]
    res = _cli(tmp_path)("run", _pipeline(tmp_path, orders, extra_phases=_explode([victim], "fail")),
                         "--no-ui", "--json", env=_env())
    assert res.returncode == 1, str(res)
    summary = res.last_json()
    assert summary["status"] == "failed"
    assert f"ValueError: cannot handle {victim}" in summary["error"]
    assert "Traceback" not in res.stderr


# -- transient failures -------------------------------------------------------------------
LOCKER = textwrap.dedent('''
    import sqlite3, sys, time
    db, hold = sys.argv[1], float(sys.argv[2])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:      # wait until the job has committed two batches
        try:
            conn = sqlite3.connect(db, timeout=5, isolation_level=None)
            if conn.execute("SELECT count(*) FROM _etl_loads").fetchone()[0] >= 2:
                break
            conn.close()
        except sqlite3.Error:
            pass
        time.sleep(0.02)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    time.sleep(hold)
    conn.execute("COMMIT")
    print("released", flush=True)
''')


def test_a_destination_locked_by_another_process_costs_time_not_data(tmp_path, orders, reference):
    pipeline = _pipeline(tmp_path, orders,
                         extra_phases='\n[[phases]]\ntype = "etl_test_phases:Slow"\nseconds = 0.12\n')
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(tmp_path / "warehouse.db"), "2.0"],
                              stdout=subprocess.PIPE, text=True)
    env = _env(chunk_size=1000, batch_size_min=1000, batch_size_max=1000,
               transaction_timeout_ms=100, batch_retry_attempts=12, batch_retry_delay_ms=50)
    cli = _cli(tmp_path)
    res = cli("run", pipeline, "--no-ui", "--json", env=env, timeout=120)
    out, _ = locker.communicate(timeout=60)
    assert out.split() == ["locked", "released"], out
    assert res.returncode == 0, str(res)
    summary = res.last_json()
    assert summary["retries"] >= 1, summary
    assert _rows(tmp_path / "warehouse.db") == reference["rows"]
    batches = cli("batches", "last", "--json").json_lines()
    retried = [b for b in batches if b["attempts"] > 1]
    assert retried and all(b["status"] == "COMMITTED" for b in batches)
    assert sum(b["attempts"] - 1 for b in batches) == summary["retries"]


# -- max_reject_rate ------------------------------------------------------------------------
def test_max_reject_rate_fails_the_job_with_a_clear_message(tmp_path, orders, reference):
    rate = reference["summary"]["rows_rejected"] / reference["summary"]["rows_read"]
    assert 0.01 < rate < 0.05
    res = _cli(tmp_path)("run", _pipeline(tmp_path, orders, top="max_reject_rate = 0.01"),
                         "--no-ui", "--json")
    assert res.returncode == 1, str(res)
    summary = res.last_json()
    assert summary["status"] == "failed"
    assert "exceeds max_reject_rate 1.0%" in summary["error"], summary["error"]
    assert "Traceback" not in res.stderr


def test_max_reject_rate_above_the_rate_lets_the_job_succeed(tmp_path, orders, reference):
    res = _cli(tmp_path)("run", _pipeline(tmp_path, orders, top="max_reject_rate = 0.05"),
                         "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows_loaded"] == reference["summary"]["rows_loaded"]


@pytest.mark.parametrize("value", ["1.5", "-0.1", '"5%"', "true"])
def test_max_reject_rate_nonsense_is_refused(tmp_path, orders, value):
    res = _cli(tmp_path)("run", _pipeline(tmp_path, orders, top=f"max_reject_rate = {value}"),
                         "--no-ui")
    assert_user_error(res, "max_reject_rate", "fraction")
    assert not (tmp_path / "warehouse.db").exists()


# -- batch sizes ------------------------------------------------------------------------------
def test_batch_sizes_adapt_between_min_and_max(tmp_path, orders, reference):
    cli = _cli(tmp_path)
    res = cli("run", _pipeline(tmp_path, orders), "--no-ui", "--json",
              env=_env(batch_size_min=500, batch_size_max=2500, chunk_size=2000))
    assert res.returncode == 0, str(res)
    batches = cli("batches", "last", "--json").json_lines()
    sizes = [b["rows_loaded"] for b in batches]
    assert sizes[0] == 500                          # starts small
    # grew to the maximum (a few batches are cut before the first commit's feedback, so
    # the range must be climbable well within the file's 20,000 rows)
    assert max(sizes) == 2500
    assert all(500 <= s <= 2500 for s in sizes[:-1]) and sizes[-1] <= 2500
    assert sum(sizes) == reference["summary"]["rows_loaded"]
    ranges = [(b["row_start"], b["row_end"]) for b in batches]
    assert ranges[0][0] == 1 and ranges[-1][1] == ROWS
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))   # no gap, no overlap
    assert _rows(tmp_path / "warehouse.db") == reference["rows"]
