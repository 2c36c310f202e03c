"""Fix a demo job's fix file the way an operator's script would (tests/e2e/test_replay.py).

``python fix_demo_rejects.py IN.csv OUT.csv [BROKEN]``: every reject of the sample data
(etlconsole.sample's defect kinds) gets a correct value, except the first BROKEN (default
20) rows rejected for their currency: those get a good currency but a quantity of 0, so
the replay rejects them again, for a new reason (validate/min/quantity).
"""

from __future__ import annotations

import csv
import sys


def fix(row: dict, header: list[str]) -> dict:
    reason = row["_etl_reason"]
    n = row["_etl_row"]
    if row["_etl_raw"]:                       # ragged: city and sku were missing
        fields = next(csv.reader([row["_etl_raw"]]))
        fields[11:11] = ["Lyon", "SKU-00001"]
        row.update(zip(header[:14], fields, strict=False))
        row["_etl_raw"] = ""
    elif "/order_id:" in reason:              # missing or duplicate: the record's own id
        row["order_id"] = n
    elif "/customer_email:" in reason:
        row["customer_email"] = f"fixed.{n}@example.com"
    elif "/status:" in reason:
        row["status"] = "paid"
    elif "/quantity:" in reason:
        row["quantity"] = "1"
    elif "/unit_price:" in reason:
        row["unit_price"] = "5.00"
    elif "/currency:" in reason:
        row["currency"] = "EUR"
    elif "/ordered_on:" in reason:
        row["ordered_on"] = "2024-01-01"
    elif "/shipped_at:" in reason:
        row["shipped_at"] = "2024-01-02T10:00:00"
    else:
        raise SystemExit(f"no fix for {reason!r}")
    return row


def main(src: str, dst: str, broken: int = 20) -> None:
    with open(src, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames)
        rows = list(reader)
    left = broken
    with open(dst, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        for row in rows:
            spoil = left > 0 and "/currency:" in row["_etl_reason"]
            row = fix(row, header)
            if spoil:
                row["quantity"] = "0"
                left -= 1
            w.writerow(row)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
