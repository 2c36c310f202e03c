"""Rejected rows: the record, its JSON and text, and the one rejects-CSV writer."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


REJECT_CSV_COLUMNS = ("row", "phase", "rule", "column", "message", "values")


@dataclass(frozen=True)
class Reject:
    """A rejected row: where (record number, phase, rule, column), why, and its values;
    ``resolved_by``: the replay that loaded it since, if any."""

    row: int | None
    phase: str
    rule: str
    column: str | None
    message: str
    values: Any
    resolved_by: int | None = None
    resolved_at: str | None = None

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> Reject:
        return cls(r["row"], r["phase"], r["rule"], r["column"], r["message"], r["values"],
                   r.get("resolved_by"), r.get("resolved_at"))

    def resolved(self, by: int | None, at: str | None) -> Reject:
        return Reject(self.row, self.phase, self.rule, self.column, self.message, self.values,
                      by, at)

    def to_json(self) -> dict[str, Any]:
        """``rejects --json``'s line: the one place its keys are chosen."""
        return {"row": self.row, "phase": self.phase, "rule": self.rule, "column": self.column,
                "message": self.message, "values": self.values,
                "resolved_by": self.resolved_by, "resolved_at": self.resolved_at}

    def where(self) -> str:
        """'phase/rule/column' (no column: 'phase/rule')."""
        return f"{self.phase}/{self.rule}" + (f"/{self.column}" if self.column else "")

    def line(self) -> str:
        return (f"row {self.row}: {self.where()}: {self.message}"
                + (f"  [resolved by replay {self.resolved_by}]" if self.resolved_by else ""))

    def csv_row(self) -> list[Any]:
        return [self.row, self.phase, self.rule, self.column, self.message,
                json.dumps(self.values, ensure_ascii=False)]


def write_rejects_csv(rejects: Iterable[Reject], path: Path) -> int:
    """The rejects as CSV (``REJECT_CSV_COLUMNS``), for the CLI's ``rejects --csv`` and the
    console's export alike; returns the rows written."""
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(REJECT_CSV_COLUMNS)
        for r in rejects:
            w.writerow(r.csv_row())
            n += 1
    return n
