"""The branch of a reject is a column (schema migration 7), not a guess from its label."""

import sqlite3

from etlconsole import api
from etlconsole.config import Settings
from etlconsole.sample import SAMPLE_PIPELINE_TOML, write_orders_csv
from etlconsole.store import StateStore
from etlconsole.store.replays import open_rejects
from etlconsole.store.schema import MIGRATIONS, _statements


def reject(row: int, label: str | None, branch: str | None = None, phase: str = "validate") -> dict:
    out = {"row": row, "phase": phase, "phase_label": label, "rule": "required",
           "column": "id", "message": "missing", "values": "{}"}
    if branch is not None:
        out["branch"] = branch
    return out


def test_old_rejects_get_their_branch_from_their_label(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:6]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 6")
    conn.execute("INSERT INTO import_jobs (id, pipeline_name, status, created_at) "
                 "VALUES ('old', 'p', 'succeeded', '2025-01-01T00:00:00')")
    for row, label in [(1, "phase 2 (validate)"), (2, "phase 5 (branch) > eu > phase 1 (validate)"),
                       (3, "phase 5 (branch) > us > phase 2 (load)"), (4, None)]:
        conn.execute("INSERT INTO pipeline_rejects (job_id, batch_number, row, phase, phase_label, "
                     "rule, message) VALUES ('old', 1, ?, 'validate', ?, 'r', 'm')", (row, label))
    conn.close()
    store = StateStore(path)
    try:
        got = store.conn.execute("SELECT row, branch FROM pipeline_rejects ORDER BY row").fetchall()
        assert got == [(1, None), (2, "eu"), (3, "us"), (4, None)]
    finally:
        store.close()


def test_the_main_line_is_told_by_the_column_not_the_label(tmp_path):
    """A main-line phase whose label holds " > " (a phase named so) stays on the main line;
    a branch's reject counts in its branch whatever its label says."""
    store = StateStore(tmp_path / "s.db")
    try:
        store.create_job("j", pipeline_name="p")
        store.begin_batch("j", 1, row_start=1, row_end=10, rejects=[
            reject(1, "phase 2 (a > b)"), reject(2, "tidy", branch="eu"), reject(3, None, phase="extract")])
        counters = store.reconcile("j", [{"batch": 1, "row_start": 1, "row_end": 10, "rows": 7}],
                                   branched=True)
        assert counters["rows_rejected"] == 2
        assert sorted(r["row"] for r in open_rejects(store, "j")) == [1, 3]
        assert store.conn.execute("SELECT row, branch FROM pipeline_rejects ORDER BY row"
                                     ).fetchall() == [(1, None), (2, "eu"), (3, None)]
    finally:
        store.close()


BRANCHED = '''
[[phases]]
type = "branch"

[[phases.branches]]
name = "strict"

[[phases.branches.phases]]
type = "validate"
on_error = "reject"
rules = [{ column = "status", allowed = ["paid"] }]

[[phases.branches.phases]]
type = "load"
path = "strict.db"
table = "orders"

[[phases.branches]]
name = "all"

[[phases.branches.phases]]
type = "load"
path = "warehouse.db"
table = "orders"
'''


def test_the_engine_writes_the_branch_of_a_branchs_rejects(tmp_path):
    write_orders_csv(tmp_path / "orders.csv", 400, seed=5)
    head = SAMPLE_PIPELINE_TOML[: SAMPLE_PIPELINE_TOML.rindex("[[phases]]")]
    (tmp_path / "b.toml").write_text(head + BRANCHED, encoding="utf-8")
    # The job runs in pytest's own process, whose memory depends on the tests before it
    # (a Dask cluster's driver side, the console's apps): a budget that cannot bind here.
    settings = Settings(state_db=str(tmp_path / "state.db"), max_memory_mb=8192)
    summary = api.run(tmp_path / "b.toml", settings)
    assert summary.exit_code == 0, summary.to_json()
    store = StateStore(tmp_path / "state.db")
    try:
        by_branch = dict(store.conn.execute(
            "SELECT coalesce(branch, '-'), count(*) FROM pipeline_rejects WHERE job_id = ? "
            "GROUP BY 1", (summary.job_id,)).fetchall())
        strict = next(b for b in summary.data["branches"] if b["branch"] == "strict")
        assert by_branch["strict"] == strict["rejected"] > 0
        assert by_branch["-"] == summary.data["rows_rejected"] > 0     # the main line's
        assert "all" not in by_branch
    finally:
        store.close()
