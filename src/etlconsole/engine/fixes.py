"""Fix files: a job's open rejects as the source had them, to be fixed and replayed.

``rejects JOB --fix FILE.csv`` writes the rejected records with the source's header and
dialect (delimiter, quote, encoding), plus ``_etl_row`` (the source record number),
``_etl_reason`` (phase/rule/column: message) and ``_etl_raw`` (the raw text of a record
that could not be split into fields: ragged or undecodable; its fields are left empty).

Where the values come from: a reject the replay of a fix rejected again carries the
values the fix gave it (``pipeline_rejects.source``); the others are read again from the
job's source file — streamed from the first rejected record, filtered in Arrow, so only
the rejected rows become Python objects — when the file is unchanged (fingerprint). If
the source is gone or changed, the values the store kept where the row was rejected are
used for the source's columns that still have them (after cleaning or mapping: the note
says so).

``read_fix_file`` is the other way: the rows of a fix file as (record, fields, raw).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UserError
from . import extract, manyfiles
from .phases.base import ROW

RAW = "_etl_raw"
REASON = "_etl_reason"
EXTRA = (ROW, REASON, RAW)


@dataclass
class FixRow:
    record: int
    fields: list[str] | None     # by the source's column order; None when only raw text
    raw: str | None              # a record to split again (ragged or undecodable)


def reason_text(r: dict) -> str:
    where = "/".join(x for x in (r["phase"], r["rule"], r["column"]) if x)
    return f"{where}: {r['message']}"


def dialect_of(job: dict) -> extract.Dialect:
    return extract.Dialect(**job["dialect"])


def _csv_encoding(d: extract.Dialect) -> str:
    name = codecs.lookup(d.encoding).name
    if name == "utf-8":
        return "utf-8-sig" if d.bom else "utf-8"
    return name


def _join(values: list, d: extract.Dialect) -> str:
    """Fields joined back into one record of the source's dialect."""
    buf = io.StringIO()
    csv.writer(buf, delimiter=d.delimiter, quotechar=d.quote, lineterminator="").writerow(
        ["" if v is None else v for v in values])
    return buf.getvalue()


def source_values(job: dict, records: set[int]) -> tuple[dict[int, tuple], str | None]:
    """{record: ("fields", [...]) | ("raw", text)} read again from the job's source for
    ``records``, and None; or ({}, why) when the source cannot be used."""
    if not records:
        return {}, None
    if manyfiles.files_of(job):     # a source of many files: each record from its own
        return _many_values(job, records)
    source = Path(job["source_path"] or "")
    if not source.is_file():
        return {}, f"{source}: the job's source file is gone"
    old = job["source_fingerprint"] or {}
    new = extract.fingerprint(source)
    if any(old.get(k) != new.get(k) for k in ("size", "sha256_head_tail", "mtime_ns")):
        return {}, f"{source}: changed since job {job['id']} read it"
    d = dialect_of(job)
    first = min(records)
    stream = extract.CsvStream(source, d, block_size=1 << 20, chunk_rows=32_768,
                               start_after=first - 1)
    return _collect(stream, records, d), None


def _many_values(job: dict, records: set[int]) -> tuple[dict[int, tuple], str | None]:
    """``source_values`` for a job of many files: each file holding some of ``records``,
    unchanged since the job read it, read from the first of them (numbered in the job's
    numbering, ADR 0025)."""
    d = dialect_of(job)
    found: dict[int, tuple] = {}
    by_file: dict[int, set[int]] = {}
    files = manyfiles.files_of(job)
    for r in records:
        by_file.setdefault(manyfiles.resume_point(files, r - 1)[0], set()).add(r)
    for index, wanted in sorted(by_file.items()):
        entry = files[index]
        path = Path(entry["path"])
        if not path.is_file():
            return found, f"{path}: a source file of the job is gone"
        new = extract.fingerprint(path)
        if any(entry.get(k) != new.get(k) for k in ("size", "sha256_head_tail", "mtime_ns")):
            return found, f"{path}: changed since job {job['id']} read it"
        f = extract.plain_file(path)
        own = extract.sniff(f, delimiter=d.delimiter, quote=d.quote, encoding=d.encoding,
                            header=d.header)          # its own BOM and blank lines
        offset = entry["first_record"] - 1
        stream = extract.CsvStream(f, own, block_size=1 << 20, chunk_rows=32_768,
                                   start_after=min(wanted) - offset - 1, offset=offset)
        found.update(_collect(stream, wanted, d))
    return found, None


def _collect(stream, records: set[int], d) -> dict[int, tuple]:
    """The ``records`` the stream holds: their fields, or for a record rejected on read
    its text as read."""
    wanted = pa.array(sorted(records), pa.int64())
    last = max(records)
    found: dict[int, tuple] = {}
    for chunk in stream:
        batch = chunk.batch
        if batch.num_rows:
            hit = batch.filter(pc.is_in(batch.column(ROW), value_set=wanted))
            for row in hit.to_pylist():
                found[row.pop(ROW)] = ("fields", [row[n] for n in d.names])
        for rejects in chunk.rejects:
            rows = rejects.rows
            hit = rows.filter(pc.fill_null(pc.is_in(rows.column(ROW), value_set=wanted), False))
            for row in hit.to_pylist():
                number = row.pop(ROW)
                if "raw" in row and len(row) == 1:           # ragged: its text as read
                    found[number] = ("raw", row["raw"])
                else:                                         # undecodable: fields, repaired
                    found[number] = ("raw", _join([row.get(n) for n in d.names], d))
        if chunk.last_row >= last:
            break
    return found


def rows_for(job: dict, rejects: list[dict]) -> tuple[list[tuple[dict, FixRow]], str | None]:
    """Each numbered open reject with its record as the source had it (or as the last fix
    gave it), and a note when values had to come from the store instead."""
    d = dialect_of(job)
    numbered = [r for r in rejects if r["row"] is not None]
    need = {r["row"] for r in numbered if not r["source"]}
    found, why = source_values(job, need)
    out = []
    for r in numbered:
        got: tuple[str, Any]
        if r["source"]:
            got = ("raw", r["source"]["raw"]) if "raw" in r["source"] else \
                ("fields", [r["source"].get(n, "") for n in d.names])
        elif r["row"] in found:
            got = found[r["row"]]
        else:
            values = r["values"] or {}
            if set(values) == {"raw"}:
                got = ("raw", values["raw"])
            else:
                got = ("fields", ["" if values.get(n) is None else str(values[n]) for n in d.names])
        kind, value = got
        out.append((r, FixRow(r["row"], value if kind == "fields" else None,
                              value if kind == "raw" else None)))
    note = None
    if why and need:
        note = (f"{why}: the values of {len(need - set(found)):,} rows are those kept where they "
                "were rejected (after the phases before that point)")
    return out, note


def write_fix_file(job: dict, rejects: list[dict], path: Path) -> dict:
    """Write the fix file; returns {"rows", "raw", "unnumbered", "note"}."""
    d = dialect_of(job)
    rows, note = rows_for(job, rejects)
    clash = [n for n in EXTRA if n in d.names]
    if clash:     # sniff refuses _etl_ headers; a header-less source is column_1, …
        raise UserError(f"{job['source_path']}: column {clash[0]!r} clashes with the fix file's own")
    raw_rows = 0
    try:
        with path.open("w", newline="", encoding=_csv_encoding(d)) as f:
            w = csv.writer(f, delimiter=d.delimiter, quotechar=d.quote, lineterminator="\n")
            w.writerow([*d.names, *EXTRA])
            for r, fix in rows:
                if fix.fields is None:
                    raw_rows += 1
                    w.writerow(["" for _ in d.names] + [fix.record, reason_text(r), fix.raw])
                else:
                    w.writerow([*(("" if v is None else v) for v in fix.fields), fix.record,
                                reason_text(r), ""])
    except OSError as exc:
        raise UserError(f"{path}: cannot write the fix file: {exc.strerror or exc}") from None
    return {"rows": len(rows), "raw": raw_rows,
            "unnumbered": sum(1 for r in rejects if r["row"] is None), "note": note}


def read_fix_file(job: dict, path: Path) -> list[FixRow]:
    """The rows of a fix file (the job's source dialect, header = the source's columns plus
    ``_etl_row``, optionally ``_etl_reason`` and ``_etl_raw``). Every problem is a
    UserError naming the file and the line."""
    d = dialect_of(job)
    if not path.is_file():
        raise UserError(f"{path}: fix file not found")
    try:
        text = path.read_bytes().decode(_csv_encoding(d))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not {d.encoding} text (byte {exc.start}); write the fix file "
                        "in the source's encoding") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the fix file: {exc.strerror or exc}") from None
    text = text.lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=d.delimiter, quotechar=d.quote,
                        strict=True)
    try:
        header = _fix_header(job, d, path, next(reader, None))
        return _fix_rows(path, reader, header, d.names)
    except csv.Error as exc:
        raise UserError(f"{path}: line {reader.line_num}: {exc}") from None


def _fix_header(job: dict, d: extract.Dialect, path: Path, header: list[str] | None) -> list[str]:
    """The fix file's header, stripped: the source's columns, ``_etl_row``, optionally the
    other extra columns, each once."""
    if not header:
        raise UserError(f"{path}: empty file (expected the fix file's header line)")
    header = [h.strip() for h in header]
    if ROW not in header:
        raise UserError(f"{path}: no {ROW} column (write the file with 'etlconsole rejects "
                        f"{job['id']} --fix FILE')")
    missing = [n for n in d.names if n not in header]
    if missing:
        raise UserError(f"{path}: column {missing[0]!r} of job {job['id']}'s source is "
                        "missing (the fix file keeps the source's header)")
    unknown = [h for h in header if h not in d.names and h not in EXTRA]
    if unknown:
        raise UserError(f"{path}: column {unknown[0]!r} is not in job {job['id']}'s source "
                        f"(its columns: {', '.join(d.names)})")
    if len(set(header)) != len(header):
        raise UserError(f"{path}: a column appears twice in the header")
    return header


def _fix_rows(path: Path, reader: Any, header: list[str], names: list[str]) -> list[FixRow]:
    """The records after the header (``reader`` is a csv reader); blank lines are skipped."""
    at = {h: i for i, h in enumerate(header)}
    out: list[FixRow] = []
    seen: set[int] = set()
    for values in reader:
        line = reader.line_num
        if not values or values == [""]:
            continue
        if len(values) != len(header):
            raise UserError(f"{path}: line {line}: {len(values)} fields instead of "
                            f"{len(header)}; put a record that does not split into {RAW}")
        text_row = values[at[ROW]].strip()
        try:
            record = int(text_row)
        except ValueError:
            raise UserError(f"{path}: line {line}: {ROW} {text_row!r} is not a record "
                            "number") from None
        if record in seen:
            raise UserError(f"{path}: line {line}: record {record} appears twice")
        seen.add(record)
        raw = values[at[RAW]] if RAW in at else ""
        if raw:
            out.append(FixRow(record, None, raw))
        else:
            out.append(FixRow(record, [values[at[n]] for n in names], None))
    return out


def split_raw(job: dict, raw: str) -> tuple[list[str] | None, str | None]:
    """A raw record split with the source's dialect: (fields, None) or (None, why not)."""
    d = dialect_of(job)
    try:
        rows = list(csv.reader(io.StringIO(raw, newline=""), delimiter=d.delimiter,
                               quotechar=d.quote, strict=True))
    except csv.Error as exc:
        return None, f"cannot split the record: {exc}"
    rows = [r for r in rows if r]
    if len(rows) != 1:
        return None, f"{len(rows)} records instead of 1"
    if len(rows[0]) != len(d.names):
        return None, f"{len(rows[0])} fields instead of {len(d.names)}"
    return rows[0], None


def source_json(job: dict, fix: FixRow) -> str:
    """What the store keeps of a fixed record (for the next fix file)."""
    d = dialect_of(job)
    if fix.fields is None:
        return json.dumps({"raw": fix.raw}, ensure_ascii=False)
    return json.dumps(dict(zip(d.names, fix.fields, strict=False)), ensure_ascii=False)
