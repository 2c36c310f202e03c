"""A job's event as one line of text: what ``show`` and the console's monitor print of it.

Most events print as their details (``key=value``). Two a Dask job records are made for
the store, not for reading: ``parts`` holds the job's split (a part per file, or byte
ranges: 2,000 entries for a drop of 2,000 files; ``executor`` held it before) and
``workers`` each worker's figures as dicts; they print as what they say. A value still
longer than a line is cut, saying its length (``show --json`` has every event whole).
"""

from __future__ import annotations

from typing import Any

WIDTH = 160     # of one value; a line holds several


def event_detail(event: str, details: dict[str, Any]) -> str:
    if event == "workers" and isinstance(details.get("workers"), list):
        return _workers(details["workers"])
    shown = dict(details)
    if event in ("executor", "parts") and isinstance(shown.get("split"), list):
        # a part per whole file says nothing the parts' count does not
        ranged = len({entry[0] for entry in shown.pop("split") if entry[1:] != [0, None]})
        if ranged:
            shown["split"] = f"{ranged:,} file{'s' if ranged != 1 else ''} in byte ranges"
    return ", ".join(f"{k}={_cut(v)}" for k, v in shown.items() if v is not None and k != "traceback")


def _workers(workers: list[dict[str, Any]]) -> str:
    """'2 workers: p7 250,000 records 389,980 rows/s 251 MB; p6 …' (their parts, in the
    order the driver sampled them)."""
    each = [f"p{w.get('part')} {w.get('records') or 0:,} records {w.get('rows_per_s') or 0:,.0f} rows/s "
            f"{w.get('rss_mb') or 0:,.0f} MB" for w in workers]
    return f"{len(workers)} worker{'s' if len(workers) != 1 else ''}: " + "; ".join(each)


def _cut(value: Any, width: int = WIDTH) -> str:
    text = str(value)
    if len(text) <= width:
        return text
    items = f", {len(value):,} items" if isinstance(value, (list, dict)) else ""
    return f"{text[:width]}… ({len(text):,} characters{items}; show --json has it whole)"
