"""RollbackSummary.change_lines: one description of a rollback report, for the CLI and the console."""

from etlconsole import api


def rollback_lines(report: dict) -> list[str]:
    return api.rollback_summary(report).change_lines()


def report(dry_run: bool) -> dict:
    return {"job_id": "j1", "dry_run": dry_run, "to_checkpoint": None, "rows": 7,
            "destinations": [
                {"path": "w.db", "kind": "sqlite", "rows": {"orders": 7}, "dropped": ["orders"],
                 "restored": ["stock"]},
                {"path": "out", "kind": "folder", "rows": {}, "dropped": [], "restored": ["out"]}]}


def test_preview_says_what_would_happen():
    assert rollback_lines(report(True)) == [
        "w.db: 7 rows from orders",
        "w.db: would drop table orders",
        "w.db: would restore the table stock as it was before the job",
        "out: would restore out"]


def test_done_says_what_happened():
    assert rollback_lines(report(False))[1:] == [
        "w.db: dropped table orders",
        "w.db: restored the table stock as it was before the job",
        "out: restored out"]

