"""How a part reads its records: a whole file, or a byte range of a large plain file
(ADR 0029). A range is cut by byte counts in the driver (``executors.part_files``); here,
in the worker, its ends are moved onto record boundaries that a scan of the file's quoting
from its first byte proves (``sources.resync``), so the range before and the range after
agree on where one ends and the other begins without talking to each other, and every
record is read once, whole.

The proof rests on a model of the CSV reader's quoting (RFC 4180's). The reader itself
checks it at the range's end: a range that is not the file's last must end on a closed
record. If the reader finds a quote still open there, the range split a record — the
model and the reader disagree — and the part fails the job, naming the file and the
bytes, before that record reaches a batch (``PartStream``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...errors import JobFailed
from .. import extract, sources

class PartStream(extract.CsvStream):
    """The records of one part, numbered from 1 within it (the driver numbers them in the
    job, after the parts before it). ``read_bytes()``: its bytes on disk, once read."""

    def __init__(self, part: sources.SourceFile, dialect: extract.Dialect, *, block_size: int,
                 chunk_rows: int, resync: bool = True, points: dict[int, int] | None = None):
        if part.is_part and resync:
            part = sources.resync(part, dialect.quote, dialect.delimiter, points)
        super().__init__(part, dialect, block_size=block_size, chunk_rows=chunk_rows)
        # another range of the file starts where this one ends: its last record must close
        self.followed = part.is_part and part.end is not None and part.end < part.size

    def __iter__(self) -> Iterator[extract.Chunk]:
        if self.file.nothing:       # its range holds no record boundary: the range before reads on
            return
        if not self.followed:
            yield from super().__iter__()
            return
        # One chunk held back: the record a bad split would cut is the range's last, so
        # the check below runs before it can reach a batch.
        held = None
        for chunk in super().__iter__():
            if held is not None:
                yield held
            held = chunk
        self._check_end(held)
        if held is not None:
            yield held

    def _check_end(self, last: extract.Chunk | None) -> None:
        """The range's last record ends where the next range starts reading: its bytes hold
        an even number of quotes (a range starting outside quotes ends outside them), and
        the reader met no record with a quote left open (an odd count in its raw text).
        The CSV reader alone cannot tell: at the end of its input it closes an open quoted
        field silently when the field count fits."""
        quote = self.dialect.quote
        opened = quote and last is not None and any(
            str(t).count(quote) % 2 for r in last.rejects if "raw" in r.rows.schema.names
            for t in r.rows.column("raw").to_pylist())
        if opened or sources.quotes_in(self.file, quote) % 2:
            f = self.file
            raise JobFailed(
                f"{f.path}: the byte range {f.start:,}-{f.end:,} read by one task ends inside a "
                f"quoted field (a quote opened before byte {f.end:,} is still open there), so "
                "the split would cut a record in two; its last records were not loaded. Roll "
                "the job back and run it with PIPELINE_PART_SIZE_KB=0 (whole files)")

    def read_bytes(self) -> int:
        """The part's bytes on disk: the file's, or the range's (what progress adds up)."""
        return self.bytes_read() if self.file.is_part else self.size


def stream(part: sources.SourceFile, dialect: extract.Dialect, settings: Any,
           points: dict[int, int] | list[dict] | None = None) -> PartStream:
    """``points``: the proven boundaries of the part's ends (``boundaries`` steps, or a
    dict of them); None: the part finds them itself."""
    if isinstance(points, list):      # the steps of the chain this range waited for
        points = {int(c): b for step in points for c, b in step["points"].items()}
    return PartStream(part, dialect, block_size=settings.stream_high_water_mark,
                      chunk_rows=settings.chunk_size, points=points)


def split_of(parts: list[sources.SourceFile]) -> list[list]:
    """[file index, start, end or None] of each part: what a job records of its split
    (its ``executor`` event), what ``resume`` and the console read back."""
    return [[p.index, p.start, p.end] for p in parts]


def cuts_of(parts: list[sources.SourceFile]) -> list[int]:
    """The nominal cuts between a file's ranges, ascending."""
    return sorted({c for p in parts for c in (p.start, p.end) if c})


def boundaries(parts: list[sources.SourceFile], dialect: extract.Dialect, step: int,
               before: dict | None = None) -> dict:
    """One step of a chain of tasks per cut file: the proven boundary of its cut ``step``
    (``sources.scan_cuts``), scanning on from where step ``step - 1`` (``before``)
    stopped — so each range starts as soon as the steps up to its own end are done,
    instead of after one scan of the whole file, and the file is scanned once."""
    cut = cuts_of(parts)[step]
    found, where = sources.scan_cuts(parts[0], [cut], dialect.quote, dialect.delimiter,
                                     None if before is None else tuple(before["where"]))
    return {"points": found, "where": list(where)}
