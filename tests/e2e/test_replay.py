"""Fixing and replaying rejects (issue 16), end to end: the real CLI in subprocesses, real
SQLite files.

The "done when" scenario: a demo job (20,000 rows, 400 rejects) -> fix file -> 380 rows
fixed by a script -> replayed: 380 resolved, 20 rejected again with new reasons; the
warehouse holds 19,980 rows, each once; ``rollback --replay 1`` removes exactly the 380;
the job's counters add up at every step.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from etlconsole.sample import COLUMNS

from .helpers import Cli, assert_user_error, query, write_pipeline

FIX_SCRIPT = Path(__file__).with_name("fix_demo_rejects.py")
EXTRA = ["_etl_row", "_etl_reason", "_etl_raw"]


def counters(cli: Cli, job: str) -> dict:
    res = cli("show", job, "--json")
    assert res.returncode == 0, str(res)
    j = res.last_json()
    # conservation: read = loaded + open rejects (resolved rows count as loaded)
    assert j["rows_read"] == j["rows_loaded"] + j["rows_rejected"], j
    return j


def table_state(db: Path) -> tuple:
    return query(db, "SELECT count(*), count(DISTINCT id), coalesce(sum(id), 0) FROM orders")[0]


def data_digest(db: Path) -> list[tuple]:
    return query(db, "SELECT id, email, status, quantity, currency, _etl_job_id, _etl_batch "
                     "FROM orders ORDER BY id")


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


@pytest.fixture
def lab(tmp_path):
    """A demo job of its own (the store and the ledger name absolute paths: no copies)."""
    cli = Cli(tmp_path, tmp_path / "state" / "state.db")
    res = cli("demo", "--no-ui", "--json", timeout=120)
    assert res.returncode == 0, str(res)
    summary = res.last_json()
    assert (summary["rows_read"], summary["rows_loaded"], summary["rows_rejected"]) == (20_000, 19_600, 400)
    return cli, summary["job_id"], tmp_path / "etlconsole-demo" / "warehouse.db"


def fixed_file(cli: Cli, job: str, broken: int = 20) -> Path:
    res = cli("rejects", job, "--fix", "fix.csv")
    assert res.returncode == 0, str(res)
    subprocess.run([sys.executable, str(FIX_SCRIPT), "fix.csv", "fixed.csv", str(broken)],
                   cwd=cli.cwd, check=True)
    return cli.cwd / "fixed.csv"


def test_done_when(lab):
    cli, job, db = lab
    before = data_digest(db)
    assert table_state(db)[:2] == (19_600, 19_600)
    j = counters(cli, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (19_600, 400, 0)

    # 1. the fix file: the source's header and values, plus record number, reason, raw text
    res = cli("rejects", job, "--fix", "fix.csv")
    assert res.returncode == 0, str(res)
    assert "wrote 400 open rejects" in res.stdout
    header, rows = read_csv(cli.cwd / "fix.csv")
    assert header == [*COLUMNS, *EXTRA]
    assert len(rows) == 400
    raw = [r for r in rows if r["_etl_raw"]]
    assert len(raw) == 40 and all(r["_etl_reason"].startswith("extract/fields") for r in raw)
    assert all(len(next(csv.reader([r["_etl_raw"]]))) == 12 for r in raw)   # ragged as read
    emails = [r for r in rows if r["_etl_reason"].startswith("validate/pattern/customer_email")]
    assert emails and all(r["customer_email"] for r in emails)
    # values as the source had them (before the clean phase): the source file's own text
    with (cli.cwd / "etlconsole-demo" / "orders.csv").open(newline="", encoding="utf-8") as f:
        source = list(csv.reader(f))[1:]
    for r in rows:
        if not r["_etl_raw"]:
            assert [r[c] for c in COLUMNS] == source[int(r["_etl_row"]) - 1], r
        else:
            assert next(csv.reader([r["_etl_raw"]])) == source[int(r["_etl_row"]) - 1], r

    # 2. fixed by a script: 380 good, 20 with a new defect
    subprocess.run([sys.executable, str(FIX_SCRIPT), "fix.csv", "fixed.csv", "20"], cwd=cli.cwd,
                   check=True)

    # 3. dry run: what would load, what would be rejected; nothing written
    store_before = query(cli.state, "SELECT count(*), count(resolved_at) FROM pipeline_rejects")
    res = cli("replay", job, "fixed.csv", "--dry-run", "--json")
    assert res.returncode == 0, str(res)
    dry = res.last_json()
    figures = (dry["rows_in"], dry["rows_loaded"], dry["rows_rejected"], dry["rows_refused"])
    assert figures == (400, 380, 20, 0)
    kinds = {(r["phase"], r["rule"], r["column"]) for r in dry["rejected"]}
    assert kinds == {("validate", "min", "quantity")}
    assert data_digest(db) == before
    assert query(cli.state, "SELECT count(*), count(resolved_at) FROM pipeline_rejects") == store_before
    assert query(cli.state, "SELECT count(*) FROM pipeline_replays") == [(0,)]
    assert counters(cli, job)["rows_rejected"] == 400

    # 4. the replay: 380 resolved, 20 rejected again with their new reasons
    res = cli("replay", job, "fixed.csv", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert (s["replay"], s["status"], s["rows_loaded"], s["rows_rejected"], s["rows_refused"]) == \
        (1, "succeeded", 380, 20, 0)
    j = counters(cli, job)
    assert (j["rows_read"], j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == \
        (20_000, 19_980, 20, 380)
    assert [r["number"] for r in j["replays"]] == [1]
    count, distinct, _ = table_state(db)
    assert count == distinct == 19_980                       # each row exactly once
    assert query(db, "SELECT count(*) FROM orders WHERE _etl_job_id = ?", (job,)) == [(19_980,)]
    # the replay's rows are a new batch of the same job, in the same ledger
    ledger = query(db, "SELECT batch, rows, row_start, row_end FROM _etl_loads WHERE job_id = ? "
                       "ORDER BY batch", (job,))
    last = ledger[-1]
    assert last[1] == 380 and last[0] == len(ledger)
    assert query(db, "SELECT count(*) FROM orders WHERE _etl_batch = ?", (last[0],)) == [(380,)]
    res = cli("rejects", job, "--json")
    rejects = res.json_lines()
    assert len(rejects) == 400       # the list keeps every reject; 380 of them are resolved
    assert sum(1 for r in rejects if r["resolved_by"] == 1) == 380
    assert all(r["resolved_at"] for r in rejects if r["resolved_by"])
    assert sum("[resolved by replay 1]" in line for line in cli("rejects", job).stdout_lines) == 380
    assert query(cli.state, "SELECT count(*), count(DISTINCT resolved_by) FROM pipeline_rejects "
                            "WHERE job_id = ? AND resolved_at IS NOT NULL", (job,)) == [(380, 1)]
    open_now = query(cli.state, "SELECT phase, rule, column_name, count(*) FROM pipeline_rejects "
                                "WHERE job_id = ? AND resolved_at IS NULL GROUP BY 1, 2, 3", (job,))
    assert open_now == [("validate", "min", "quantity", 20)]
    # the next fix file holds the 20, with the values the fix gave them
    res = cli("rejects", job, "--fix", "again.csv")
    assert res.returncode == 0, str(res)
    _, again = read_csv(cli.cwd / "again.csv")
    assert len(again) == 20 and {r["quantity"] for r in again} == {"0"}
    assert {r["currency"] for r in again} == {"EUR"}

    # 5. replaying the same file again: every row refused (never a duplicate)
    res = cli("replay", job, "fixed.csv", "--json")
    assert res.returncode == 0, str(res)
    s2 = res.last_json()
    assert (s2["rows_loaded"], s2["rows_refused"], s2["rows_rejected"]) == (0, 380, 20)
    assert table_state(db)[:2] == (19_980, 19_980)
    counters(cli, job)

    # 6. rollback of replay 1 removes exactly the 380
    res = cli("rollback", job, "--replay", "1", "--dry-run", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows"] == 380
    assert table_state(db)[0] == 19_980
    res = cli("rollback", job, "--replay", "1", "--yes", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows"] == 380
    assert data_digest(db) == before
    j = counters(cli, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"], j["status"]) == \
        (19_600, 400, 0, "succeeded")
    res = cli("rollback", job, "--replay", "1", "--yes")
    assert_user_error(res, "rolled back already")

    # 7. and it can be replayed again, exactly once
    res = cli("replay", job, "fixed.csv", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows_loaded"] == 380
    assert table_state(db)[:2] == (19_980, 19_980)
    counters(cli, job)


def test_rollback_of_the_job_removes_replayed_rows(lab):
    cli, job, db = lab
    fixed_file(cli, job)
    assert cli("replay", job, "fixed.csv").returncode == 0
    assert table_state(db)[0] == 19_980
    res = cli("rollback", job, "--yes", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows"] == 19_980
    assert "orders" not in [r[0] for r in query(db, "SELECT name FROM sqlite_master")]
    j = counters(cli, job)
    assert (j["status"], j["rows_resolved"]) == ("rolled_back", 0)
    assert_user_error(cli("replay", job, "fixed.csv"), "rolled back")


def test_bulk_set_where(lab):
    cli, job, db = lab
    where = "rule == 'allowed' and column == 'status'"
    res = cli("replay", job, "--set", "status=paid", "--where", where, "--dry-run", "--json")
    assert res.returncode == 0, str(res)
    dry = res.last_json()
    assert (dry["rows_in"], dry["rows_loaded"], dry["rows_rejected"]) == (40, 40, 0)
    assert table_state(db)[0] == 19_600
    res = cli("replay", job, "--set", "status=paid", "--where", where, "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert (s["rows_loaded"], s["rows_rejected"]) == (40, 0)
    assert table_state(db)[:2] == (19_640, 19_640)
    assert query(db, "SELECT count(*) FROM orders WHERE _etl_batch = (SELECT max(batch) FROM "
                     "_etl_loads)")[0][0] == 40
    j = counters(cli, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (19_640, 360, 40)
    # nothing left for that condition: one line, exit 2
    assert_user_error(cli("replay", job, "--set", "status=paid", "--where", where), "holds for none")
    # a wrong value: rejected again, with the reason of the rule it breaks now
    res = cli("replay", job, "--set", "currency=EURO2", "--where", "column == 'currency'", "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert (s["rows_loaded"], s["rows_rejected"]) == (0, 40)
    assert {r["rule"] for r in s["rejected"]} == {"allowed"}
    assert "'EURO2'" in s["rejected"][0]["message"]
    counters(cli, job)


def test_refusals(lab):
    cli, job, db = lab
    before = data_digest(db)
    fixed_file(cli, job)
    header, rows = read_csv(cli.cwd / "fixed.csv")

    def write(name, header, rows):
        with (cli.cwd / name).open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=header, lineterminator="\n", extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        return name

    # a record of the job that was loaded, not rejected: the file is refused
    loaded = dict(rows[0], _etl_row="1")
    assert_user_error(cli("replay", job, write("a.csv", header, [loaded, *rows[1:]])),
                      "a.csv", "not rejects of job", "_etl_row 1")
    assert_user_error(cli("replay", job, write("b.csv", header, [dict(rows[0], _etl_row="x")])),
                      "b.csv", "line 2", "not a record number")
    assert_user_error(cli("replay", job, write("c.csv", [h for h in header if h != "status"], rows)),
                      "c.csv", "'status'", "missing")
    assert_user_error(cli("replay", job, write("d.csv", [h for h in header if h != "_etl_row"], rows)),
                      "d.csv", "no _etl_row")
    assert_user_error(cli("replay", job, write("e.csv", header + ["extra"], rows)),
                      "e.csv", "'extra'")
    assert_user_error(cli("replay", job, write("f.csv", header, [rows[0], rows[0]])),
                      "f.csv", "appears twice")
    assert_user_error(cli("replay", job, "missing.csv"), "missing.csv", "not found")
    assert_user_error(cli("replay", job), "fix file")
    assert_user_error(cli("replay", job, "--set", "nope=1"), "no column 'nope'")
    assert_user_error(cli("replay", job, "--set", "status"), "COLUMN=VALUE")
    assert_user_error(cli("replay", job, "--where", "__import__('os')"), "--where")
    assert_user_error(cli("replay", "nosuchjob", "fixed.csv"), "no job")
    assert_user_error(cli("rollback", job, "--replay", "7", "--yes"), "no replay 7")
    assert data_digest(db) == before
    assert query(cli.state, "SELECT count(*) FROM pipeline_replays") == [(0,)]
    assert counters(cli, job)["rows_rejected"] == 400


def test_rollback_replay_order_and_job_rollback_to_checkpoint(tmp_path):
    """Two replays: the earlier one can be undone only after the later one; rolling the
    job back to a checkpoint takes every replay's rows and opens their rejects again."""
    cli = Cli(tmp_path, tmp_path / "state.db")
    lines = ["id,status"] + [f"{i},{'bad' if i % 10 == 0 else 'ok'}" for i in range(1, 3001)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml", phases='''
[[phases]]
type = "validate"
rules = [{ column = "status", allowed = ["ok"] }]
''')
    env = {"PIPELINE_BATCH_SIZE_MIN": "1000", "PIPELINE_BATCH_SIZE_MAX": "1000",
           "PIPELINE_CHUNK_SIZE": "1000", "PIPELINE_CHECKPOINT_INTERVAL": "1000"}
    res = cli("run", "p.toml", "--no-ui", "--json", env=env)
    assert res.returncode == 0, str(res)
    job = res.last_json()["job_id"]
    db = tmp_path / "out.db"
    assert query(db, "SELECT count(*) FROM t") == [(2700,)]
    r1 = cli("replay", job, "--set", "status=ok", "--where", "row <= 1500", "--json")
    r2 = cli("replay", job, "--set", "status=ok", "--where", "row > 2500", "--json")
    assert (r1.last_json()["rows_loaded"], r2.last_json()["rows_loaded"]) == (150, 50), str(r2)
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM t") == [(2900, 2900)]
    assert_user_error(cli("rollback", job, "--replay", "1", "--yes"), "roll it back first")
    checkpoints = cli("checkpoints", job, "--json").json_lines()
    first = checkpoints[0]
    assert first["checkpoint_data"]["batch"] == 1
    res = cli("rollback", job, "--to", str(first["id"]), "--yes", "--json")
    assert res.returncode == 0, str(res)
    kept = first["checkpoint_data"]["last_row"]          # batches hold 1000 loaded rows
    assert query(db, "SELECT count(*) FROM t") == [(1000,)]
    j = counters(cli, job)
    assert (j["rows_read"], j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == \
        (kept, 1000, kept // 10, 0)
    assert {r["status"] for r in j["replays"]} == {"rolled_back"}
    res = cli("resume", job, "--json", env=env)
    assert res.returncode == 0, str(res)
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM t") == [(2700, 2700)]
    j = counters(cli, job)
    assert (j["rows_loaded"], j["rows_rejected"]) == (2700, 300)
    res = cli("replay", job, "--set", "status=ok", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows_loaded"] == 300
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM t") == [(3000, 3000)]
    j = counters(cli, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (3000, 0, 300)


def test_dialect_raw_records_and_database_refusals(tmp_path):
    """A ';' source with quotes: the fix file keeps its dialect; a ragged record is fixed in
    _etl_raw; a row the database refuses (a CHECK of the table) is refused again at phase
    load inside the replay's own batch, and loads once fixed."""
    cli = Cli(tmp_path, tmp_path / "state.db")
    (tmp_path / "data.csv").write_text('id;name;qty\n1;"A;a";5\n2;B;0\n3;C;x\n4;D\n5;"E ""e""";7\n',
                                       encoding="utf-8")
    db = tmp_path / "out.db"
    query(db, "CREATE TABLE t (id TEXT, name TEXT, qty INTEGER CHECK (qty > 0))")
    write_pipeline(tmp_path / "p.toml", phases='''
[[phases]]
type = "validate"
rules = [{ column = "qty", type = "int64" }]

[[phases]]
type = "transform"
cast = { qty = "int64" }
''')
    res = cli("run", "p.toml", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    job = s["job_id"]
    assert (s["rows_loaded"], s["rows_rejected"]) == (2, 3)
    res = cli("rejects", job, "--fix", "fix.csv")
    assert res.returncode == 0, str(res)
    text = (tmp_path / "fix.csv").read_text(encoding="utf-8").splitlines()
    assert text[0] == "id;name;qty;_etl_row;_etl_reason;_etl_raw"
    assert text[1].startswith("2;B;0;2;load/check: CHECK constraint failed")
    assert text[2] == "3;C;x;3;validate/type/qty: 'x' is not a valid int64;"
    assert text[3] == ';;;4;extract/fields: 2 fields instead of 3;"4;D"'
    fixed = [text[0], text[1], "3;C;3;3;;", ';;;4;;"4;D;2"']
    (tmp_path / "fixed.csv").write_text("\n".join(fixed) + "\n", encoding="utf-8")
    res = cli("replay", job, "fixed.csv", "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert (s["rows_loaded"], s["rows_rejected"]) == (2, 1)
    assert [(r["row"], r["phase"], r["rule"]) for r in s["rejected"]] == [(2, "load", "check")]
    assert query(db, "SELECT id, name, qty FROM t ORDER BY id") == [
        ("1", "A;a", 5), ("3", "C", 3), ("4", "D", 2), ("5", 'E "e"', 7)]
    res = cli("replay", job, "--set", "qty=9", "--where", "row == 2", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows_loaded"] == 1
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM t") == [(5, 5)]
    j = counters(cli, job)
    assert (j["rows_read"], j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (5, 5, 0, 3)


@pytest.mark.parametrize("kind,mode", [("sqlite", "atomic"), ("sqlite", "replace"),
                                       ("parquet", "append"), ("csv", "atomic")])
def test_other_modes_and_folders(tmp_path, kind, mode):
    """A succeeded atomic or replace job has published its table (or folder): a replay
    appends to it; rollback of the replay, then of the job, are exact."""
    import pyarrow.dataset as ds
    cli = Cli(tmp_path, tmp_path / "state.db")
    lines = ["id,status"] + [f"{i},{'bad' if i % 10 == 0 else 'ok'}" for i in range(1, 201)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    dest = "out.db" if kind == "sqlite" else "out"
    if kind == "sqlite" and mode == "replace":
        import sqlite3
        conn = sqlite3.connect(str(tmp_path / "out.db"))
        with conn:
            conn.execute("CREATE TABLE t (id TEXT, status TEXT)")
            conn.execute("INSERT INTO t VALUES ('old', 'ok')")
        conn.close()
    text = write_pipeline(tmp_path / "p.toml", dest=dest, phases='''
[[phases]]
type = "validate"
rules = [{ column = "status", allowed = ["ok"] }]
''').read_text().replace('mode = "append"', f'mode = "{mode}"')
    if kind != "sqlite":
        text = text.replace('destination = "sqlite"', f'destination = "{kind}"').replace('table = "t"\n', "")
    (tmp_path / "p.toml").write_text(text)
    res = cli("run", "p.toml", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    job = res.last_json()["job_id"]

    def ids():
        if kind == "sqlite":
            return sorted(r[0] for r in query(tmp_path / "out.db", "SELECT id FROM t"))
        return sorted(str(v) for v in ds.dataset(str(tmp_path / "out"), format=kind)
                      .to_table().column("id").to_pylist())

    before = ids()
    assert len([i for i in before if i != "old"]) == 180
    res = cli("replay", job, "--set", "status=ok", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows_loaded"] == 20
    after = ids()
    assert len(after) == len(before) + 20 and len(set(after)) == len(after)
    j = counters(cli, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (200, 0, 20)
    res = cli("rollback", job, "--replay", "1", "--yes")
    assert res.returncode == 0, str(res)
    assert ids() == before
    assert cli("replay", job, "--set", "status=ok").returncode == 0
    res = cli("rollback", job, "--yes")
    assert res.returncode == 0, str(res)
    if kind == "sqlite" and mode == "replace":
        assert ids() == ["old"]
    elif kind == "sqlite":
        assert "t" not in [r[0] for r in query(tmp_path / "out.db", "SELECT name FROM sqlite_master")]
    else:
        assert not (tmp_path / "out").exists() or ids() == []


def test_replay_needs_the_unique_index(lab):
    """A workspace removed by cleanup: the unique rule cannot be checked; one line, exit 2."""
    import shutil
    cli, job, db = lab
    shutil.rmtree(cli.state.parent / "jobs" / job)
    before = data_digest(db)
    assert_user_error(cli("replay", job, "--set", "status=paid", "--where", "column == 'status'"),
                      "unique-key index", "cannot be replayed")
    assert_user_error(cli("replay", job, "--set", "status=paid", "--dry-run"), "unique-key index")
    assert data_digest(db) == before
    assert counters(cli, job)["rows_rejected"] == 400


def test_rerun_after_a_replay_accounts_for_every_record(tmp_path):
    """A record rejected at validate, replayed and rejected again at the load: a rerun
    from validate's checkpoint still carries it (conservation in the new job), and the
    old job's replayed rows go with its load."""
    cli = Cli(tmp_path, tmp_path / "state.db")
    lines = ["id,status,qty"] + [f"{i},{'bad' if i % 10 == 0 else 'ok'},{i}" for i in range(1, 101)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    query(tmp_path / "out.db", "CREATE TABLE t (id TEXT, status TEXT, qty INTEGER CHECK (qty > 0))")
    write_pipeline(tmp_path / "p.toml", phases='''
[[phases]]
type = "validate"
checkpoint = true
rules = [{ column = "status", allowed = ["ok"] }]

[[phases]]
type = "transform"
cast = { qty = "int64" }
''')
    res = cli("run", "p.toml", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    job = res.last_json()["job_id"]
    res = cli("replay", job, "--set", "status=ok", "--set", "qty=0", "--where", "row == 10", "--json")
    assert res.returncode == 0, str(res)
    assert [(r["row"], r["phase"], r["rule"]) for r in res.last_json()["rejected"]] == [(10, "load", "check")]
    res = cli("replay", job, "--set", "status=ok", "--where", "row > 50", "--json")
    assert res.last_json()["rows_loaded"] == 5
    assert query(tmp_path / "out.db", "SELECT count(*) FROM t") == [(95,)]
    res = cli("rerun", job, "--from", "validate", "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert (s["rows_read"], s["rows_loaded"], s["rows_rejected"]) == (100, 90, 10), s
    assert query(tmp_path / "out.db", "SELECT count(*), count(DISTINCT id) FROM t") == [(90, 90)]
    j = counters(cli, job)
    assert (j["status"], j["rows_resolved"]) == ("rolled_back", 0)


def test_a_replay_rollback_cut_short_is_settled(lab):
    """The destination lost a replay's batches but the store did not hear of it (a rollback
    killed between the destination's transaction and the store's): the next replay finds
    them missing from the ledger, opens their rejects again and loads them, once."""
    from etlconsole.engine import destinations
    cli, job, db = lab
    fixed_file(cli, job)
    res = cli("replay", job, "fixed.csv", "--json")
    assert res.returncode == 0, str(res)
    first = res.last_json()["batches"][0]
    destinations.rollback(db, job, "sqlite", after_batch=first - 1)     # the destination only
    assert table_state(db)[0] == 19_600
    res = cli("replay", job, "fixed.csv", "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert (s["rows_loaded"], s["rows_refused"], s["rows_rejected"]) == (380, 0, 20)
    assert table_state(db)[:2] == (19_980, 19_980)
    j = counters(cli, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (19_980, 20, 380)


def test_undecodable_record_is_fixed_in_raw(tmp_path):
    """A record with bytes that are not UTF-8 comes in _etl_raw (the bad byte as U+FFFD)."""
    cli = Cli(tmp_path, tmp_path / "state.db")
    (tmp_path / "data.csv").write_bytes(b"id,name\n1,Ann\n2,Bj\xf6rn\n3,Cy\n")
    write_pipeline(tmp_path / "p.toml")
    res = cli("run", "p.toml", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    job = res.last_json()["job_id"]
    assert res.last_json()["rows_rejected"] == 1
    assert cli("rejects", job, "--fix", "fix.csv").returncode == 0
    _, rows = read_csv(tmp_path / "fix.csv")
    assert [(r["id"], r["_etl_row"], r["_etl_raw"]) for r in rows] == [("", "2", "2,Bj\ufffdrn")]
    assert rows[0]["_etl_reason"].startswith("extract/encoding/name: invalid UTF-8")
    text = (tmp_path / "fix.csv").read_text(encoding="utf-8").replace("Bj\ufffdrn", "Björn")
    (tmp_path / "fix.csv").write_text(text, encoding="utf-8")
    res = cli("replay", job, "fix.csv", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows_loaded"] == 1
    assert query(tmp_path / "out.db", "SELECT id, name FROM t ORDER BY id") == [
        ("1", "Ann"), ("2", "Björn"), ("3", "Cy")]
    counters(cli, job)


BRANCHED = '''name = "branched"

[source]
path = "data.csv"

[[phases]]
type = "validate"
rules = [{ column = "status", allowed = ["ok"] }]

[[phases]]
type = "transform"
cast = { qty = "int64" }

[[phases]]
type = "branch"

[[phases.branches]]
name = "big"
filter = "qty > 50"

[[phases.branches.phases]]
type = "load"
destination = "sqlite"
path = "a.db"
table = "t"

[[phases.branches]]
name = "all"

[[phases.branches.phases]]
type = "load"
destination = "sqlite"
path = "b.db"
table = "t"
'''


def test_branched_job(tmp_path):
    """Main-line rejects of a branched job are replayed into every branch (its filter, its
    destination); a row one branch's table refuses is a reject of that branch; rolling the
    replay back, or losing it from one destination only, leaves every destination exact."""
    from etlconsole.engine import destinations
    cli = Cli(tmp_path, tmp_path / "state.db")
    lines = ["id,status,qty"] + [f"{i},{'bad' if i % 10 == 0 else 'ok'},{i}" for i in range(1, 101)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    query(tmp_path / "b.db", "CREATE TABLE t (id TEXT, status TEXT, qty INTEGER CHECK (qty != 70))")
    (tmp_path / "p.toml").write_text(BRANCHED, encoding="utf-8")
    res = cli("run", "p.toml", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    job = res.last_json()["job_id"]

    def state():
        return (query(tmp_path / "a.db", "SELECT count(*), count(DISTINCT id) FROM t")[0],
                query(tmp_path / "b.db", "SELECT count(*), count(DISTINCT id) FROM t")[0])

    before = state()
    assert before == ((45, 45), (90, 90))
    assert counters(cli, job)["rows_rejected"] == 10
    res = cli("rejects", job, "--fix", "fix.csv")
    assert res.returncode == 0 and "wrote 10 open rejects" in res.stdout, str(res)
    res = cli("replay", job, "--set", "status=ok", "--dry-run", "--json")
    assert res.returncode == 0, str(res)
    dry = res.last_json()
    assert (dry["rows_loaded"], dry["rows_rejected"]) == (10, 0)
    assert state() == before
    res = cli("replay", job, "--set", "status=ok", "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert (s["rows_loaded"], s["rows_rejected"], s["branch_rejected"]) == (10, 0, 1)
    assert [(r["row"], r["phase"], r["rule"]) for r in s["rejected"]] == [(70, "load", "check")]
    assert state() == ((50, 50), (99, 99))
    j = counters(cli, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (100, 0, 10)
    # the branch's refusal is a reject of the branch, not an open reject of the job
    res = cli("rejects", job, "--fix", "again.csv")
    assert "wrote 0 open rejects" in res.stdout, str(res)
    # one destination lost the replay (a rollback cut short): the next replay settles it
    destinations.rollback(tmp_path / "a.db", job, "sqlite", after_batch=s["batches"][0] - 1)
    res = cli("replay", job, "--set", "status=ok", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows_loaded"] == 10
    assert state() == ((50, 50), (99, 99))
    j = counters(cli, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (100, 0, 10)
    assert query(cli.state, "SELECT count(*) FROM pipeline_rejects WHERE job_id = ? AND "
                            "phase = 'load'", (job,)) == [(1,)]
    last = j["replays"][-1]["number"]
    res = cli("rollback", job, "--replay", str(last), "--yes", "--json")
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows"] == 5 + 9
    assert state() == before
    j = counters(cli, job)
    assert (j["rows_loaded"], j["rows_rejected"], j["rows_resolved"]) == (90, 10, 0)
    assert query(cli.state, "SELECT count(*) FROM pipeline_rejects WHERE job_id = ? AND "
                            "phase = 'load'", (job,)) == [(0,)]


def test_fix_file_with_where_and_set(lab):
    """With a fix file, --where picks the file's rows to replay and --set changes them."""
    cli, job, db = lab
    assert cli("rejects", job, "--fix", "fix.csv").returncode == 0
    res = cli("replay", job, "fix.csv", "--where", "column == 'status'", "--set", "status=new",
              "--json")
    assert res.returncode == 0, str(res)
    s = res.last_json()
    assert (s["rows_in"], s["rows_loaded"], s["rows_rejected"]) == (40, 40, 0)
    assert query(db, "SELECT count(*) FROM orders WHERE status = 'new' AND _etl_batch = "
                     "(SELECT max(batch) FROM _etl_loads)") == [(40,)]
    counters(cli, job)


def test_fix_file_when_the_source_changed(tmp_path):
    """Source gone or changed: the values kept with the rejects, and a note saying so."""
    cli = Cli(tmp_path, tmp_path / "state.db")
    (tmp_path / "data.csv").write_text("id,status\n1, ok\n2, BAD \n3,ok\n", encoding="utf-8")
    write_pipeline(tmp_path / "p.toml", phases='''
[[phases]]
type = "clean"
trim = true

[[phases]]
type = "validate"
rules = [{ column = "status", allowed = ["ok"] }]
''')
    res = cli("run", "p.toml", "--no-ui", "--json")
    assert res.returncode == 0, str(res)
    job = res.last_json()["job_id"]
    assert cli("rejects", job, "--fix", "a.csv").returncode == 0
    assert (tmp_path / "a.csv").read_text().splitlines()[1].startswith("2, BAD ,2,")   # as read
    (tmp_path / "data.csv").write_text("id,status\n9,changed\n", encoding="utf-8")
    res = cli("rejects", job, "--fix", "b.csv")
    assert res.returncode == 0, str(res)
    assert "changed since job" in res.stdout and "kept where they were rejected" in res.stdout
    assert (tmp_path / "b.csv").read_text().splitlines()[1].startswith("2,BAD,2,")    # cleaned
    (tmp_path / "data.csv").unlink()
    res = cli("replay", job, "--set", "status=ok", "--json")            # no source needed
    assert res.returncode == 0, str(res)
    assert res.last_json()["rows_loaded"] == 1
    assert query(tmp_path / "out.db", "SELECT count(*) FROM t") == [(3,)]
