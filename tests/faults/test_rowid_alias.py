"""Issue 17: a source column named like one of SQLite's row id aliases (``rowid``,
``oid``, ``_rowid_``) loads, resumes after kill -9 and rolls back like any other column,
with text values and with integer values. Such a column shadows the alias in every query,
so the ledger and rollback must not depend on it (they go by lineage, ADR 0014).

Each case: another job's rows are in the table first (so the rollback cannot drop the
table whole and must find the job's rows by lineage); the job is killed after a few
batches, resumed, compared with an uninterrupted run, then rolled back: the table must be
exactly as before the job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .faultkit import Lab, assert_conservation, digest, exact_state, ledger, run_and_kill

ROWS = 30_000
TABLE = "t"


def write_source(path: Path, alias: str, kind: str, rows: int, first: int) -> None:
    """``alias,id,name`` with values of the alias column unlike the table's real row ids
    (counting down from a large number, or text); every 997th id is bad (a reject)."""
    lines = [f"{alias},id,name"]
    for k in range(rows):
        i = first + k
        value = str(5_000_000 - i) if kind == "int" else f"r-{i}"
        ident = "x" if i % 997 == 0 else str(i)
        lines.append(f"{value},{ident},name {i}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def pipeline(path: Path, source: Path, alias: str, kind: str) -> Path:
    cast = {"id": "int64"} | ({alias: "int64"} if kind == "int" else {})
    path.write_text(f'''name = "alias"
[source]
path = {json.dumps(str(source))}

[[phases]]
type = "validate"
rules = [{{ column = "id", required = true, type = "int64", unique = true }}]

[[phases]]
type = "transform"
cast = {{ {", ".join(f'{json.dumps(k)} = "{v}"' for k, v in cast.items())} }}

[[phases]]
type = "load"
path = "warehouse.db"
table = "{TABLE}"
''', encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["text", "int"])
@pytest.mark.parametrize("alias", ["rowid", "oid", "_rowid_"])
def test_a_rowid_alias_column_loads_resumes_and_rolls_back(tmp_path, alias, kind):
    src, other = tmp_path / "big.csv", tmp_path / "other.csv"
    write_source(src, alias, kind, ROWS, first=1)
    write_source(other, alias, kind, 500, first=900_001)

    ref = Lab(tmp_path / "ref", src)
    ref_job = ref.run(pipeline(ref.folder / "p.toml", src, alias, kind))
    assert ref_job["rows_rejected"] > 0 and ref_job["batches"] >= 10
    want = digest(ref.dest, TABLE)
    assert want.rows == ref_job["rows_loaded"] and alias in want.columns

    lab = Lab(tmp_path / "lab", src)
    first = lab.run(pipeline(lab.folder / "other.toml", other, alias, kind))
    before = exact_state(lab.dest)
    job = run_and_kill(lab, pipeline(lab.folder / "p.toml", src, alias, kind), batches=4)
    summary = lab.resume(job)
    assert summary["status"] == "succeeded", summary
    assert_conservation(summary)
    for key in ("rows_read", "rows_loaded", "rows_rejected"):
        assert summary[key] == ref_job[key], key
    assert digest(lab.dest, TABLE, where=f"WHERE _etl_job_id = '{job}'") == want

    dry = lab.cli("rollback", job, "--dry-run", "--json")
    assert dry.last_json()["rows"] == summary["rows_loaded"], str(dry)
    out = lab.rollback(job).last_json()
    assert out["rows"] == summary["rows_loaded"], out
    assert exact_state(lab.dest) == before                  # not one row of the job left
    assert ledger(lab.dest, job) == []
    assert len(ledger(lab.dest, first["job_id"])) == first["batches"]
