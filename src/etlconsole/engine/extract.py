"""Extract: sniff the dialect, then stream the CSV as text in bounded record batches.

Every column is read as text: pyarrow infers types from the first block only, and one
odd value later would abort the stream. Malformed records never abort it either: rows
with the wrong number of fields come back through pyarrow's invalid-row handler and
rows with undecodable bytes are found per batch; both become rejects carrying their
1-based record number (the header is not a record), which every batch carries along in
the hidden ``_etl_row`` column.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ..errors import JobFailed, UserError
from . import hashes, sources
from .phases.base import ROW, Rejects
from .sources import SourceFile
from .types import text_bytes

SAMPLE_BYTES = 256 * 1024
_DELIMITERS = ",;\t|"
_MAX_BLOCK = 1 << 30


@dataclass
class Dialect:
    """How the file is read, and why (each sniffed choice says what it saw)."""

    encoding: str
    delimiter: str
    quote: str
    header: bool
    names: list[str]
    bom: bool = False
    notes: list[str] = field(default_factory=list)
    skip_lines: int = 0          # blank lines before the header
    empty: bool = False          # nothing but the header

    def to_json(self) -> dict:
        return asdict(self)


def _refuse(path: Path, message: str) -> UserError:
    return UserError(f"{path}: {message}")


_BLANK_LINES = re.compile(r"(?:[ \t]*(?:\r\n|\r|\n))*")
_LINE_END = re.compile(r"\r\n|\r|\n")


def sniff(source: Path | SourceFile, *, delimiter: str | None = None, quote: str | None = None,
          encoding: str | None = None, header: bool = True) -> Dialect:
    """Decide encoding, delimiter, quote and column names from the head of the file (its
    decompressed head, for a compressed file)."""
    path = source.path if isinstance(source, SourceFile) else source
    _check_readable(path)
    head = _read_head(source if isinstance(source, SourceFile) else plain_file(path))
    if not head:            # a compressed file of nothing, said as a plain empty file is
        raise _refuse(path, "file is empty (expected a header line)")
    notes: list[str] = []
    encoding, bom, note = _choose_encoding(head, encoding)
    notes.append(note)
    text = _decode_head(path, head, encoding, bom)
    if len(head) == SAMPLE_BYTES:   # drop a possibly cut last line
        text = text[: text.rfind("\n") + 1] or text
    if not text.strip():
        raise _refuse(path, "file has no header line (only blank lines)")

    if delimiter is None:
        delimiter, why = _sniff_delimiter(text, quote or '"')
        notes.append(f"delimiter {delimiter!r} ({why})")
    if quote is None:
        quote = '"'
    # Blank lines before the header are skipped (pyarrow counts them as lines to skip).
    blank_match = _BLANK_LINES.match(text)
    blank = blank_match.group(0) if blank_match else ""
    skip_lines = len(_LINE_END.findall(blank))
    first, empty = _first_record(path, text[len(blank):], delimiter, quote,
                                 header and len(head) < SAMPLE_BYTES)
    names = _header_names(path, first, encoding) if header else [
        f"column_{i + 1}" for i in range(len(first))]
    if not names:
        raise _refuse(path, "no header line found")
    if skip_lines:
        notes.append(f"skipped {skip_lines} blank line(s) before the header")
    return Dialect(encoding=encoding, delimiter=delimiter, quote=quote, header=header,
                   names=names, bom=bom, notes=notes, skip_lines=skip_lines, empty=empty)


def _read_head(file: SourceFile) -> bytes:
    """The first SAMPLE_BYTES of the content (fewer if the file is shorter)."""
    parts, left = [], SAMPLE_BYTES
    try:
        with sources.open_decompressed(file) as f:
            while left > 0 and (block := f.read(left)):
                parts.append(block)
                left -= len(block)
    except OSError as exc:     # a compressed file damaged within its head
        raise _refuse(file.path, f"cannot be decompressed as {file.compression}: {exc}") from None
    return b"".join(parts)


def sniff_source(path: str | list[str], base: Path, *, delimiter: str | None = None,
                 quote: str | None = None, encoding: str | None = None,
                 header: bool = True) -> tuple[Dialect, list[SourceFile]]:
    """What a pipeline's ``[source] path`` names (a file, a glob, a directory or a list)
    and the sniff of its first file: what the builder's source form shows. A job checks
    every file's header against the first's when it starts (engine.manyfiles)."""
    files = sources.resolve(path, base)
    return sniff(files[0], delimiter=delimiter, quote=quote, encoding=encoding,
                 header=header), files


def _check_readable(path: Path) -> None:
    """Refuse a missing path, a directory or an empty file before reading anything."""
    if not path.exists():
        raise _refuse(path, "source file not found")
    if path.is_dir():
        raise _refuse(path, "is a directory, expected a CSV file")
    if path.stat().st_size == 0:
        raise _refuse(path, "file is empty (expected a header line)")


def _choose_encoding(head: bytes, encoding: str | None) -> tuple[str, bool, str]:
    """(encoding, whether the head starts with its byte order mark, the note saying why)."""
    if encoding is None:
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8", True, "encoding utf-8 (byte order mark)"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16", True, "encoding utf-16 (byte order mark)"
        return "utf-8", False, "encoding utf-8 (default; undecodable rows are rejected)"
    try:
        encoding = codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"unknown encoding {encoding!r} in source.encoding") from None
    bom = encoding == "utf-8" and head.startswith(codecs.BOM_UTF8)
    return encoding, bom, f"encoding {encoding} (from the pipeline file)"


def _decode_head(path: Path, head: bytes, encoding: str, bom: bool) -> str:
    """The head as text; refuses UTF-16 or binary read as a single-byte text, and text that
    is mostly not UTF-8."""
    if encoding.startswith("utf-16"):
        return head.decode(encoding, errors="replace")
    if b"\x00" in head:
        utf16 = _utf16_signs(head)
        if utf16:
            raise _refuse(path, f"looks like UTF-16 text ({utf16}), not {encoding}; read it "
                          f"with encoding = \"{_utf16_codec(head)}\" in [source]")
        raise _refuse(path, "looks like binary data (NUL bytes in the first "
                      f"{len(head) // 1024 or 1} KB), not a CSV text file")
    text = head.decode(encoding, errors="replace")
    if bom:
        text = text.lstrip("\ufeff")
    bad = text.count("\ufffd")
    if bad > max(16, len(text) // 10) and encoding == "utf-8":
        raise _refuse(path, f"not UTF-8 text ({bad} undecodable bytes in the first "
                      f"{len(head) // 1024 or 1} KB); set source.encoding, e.g. \"latin-1\"")
    return text


def _first_record(path: Path, rest: str, delimiter: str, quote: str,
                  whole_with_header: bool) -> tuple[list[str], bool]:
    """The first record of ``rest`` and whether nothing follows it (only decided when the
    whole file is in the sample and has a header: then it holds no data)."""
    try:
        records = csv.reader(io.StringIO(rest, newline=""), delimiter=delimiter, quotechar=quote)
        first = next(records, [])
        empty = whole_with_header and not any(r for r in records)
    except csv.Error as exc:
        raise _refuse(path, f"cannot read the header line: {exc}") from None
    return first, empty


def _header_names(path: Path, first: list[str], encoding: str) -> list[str]:
    """The header's column names, stripped; refuses undecodable, empty, duplicate (ignoring
    case) and reserved names."""
    names = [n.strip() for n in first]
    if any("\ufffd" in n for n in names):
        raise _refuse(path, f"header line is not valid {encoding} text; set source.encoding "
                      "(e.g. \"latin-1\") or check that this is a CSV file")
    for i, n in enumerate(names):
        if not n:
            raise _refuse(path, f"header column {i + 1} is empty; name it, or set "
                          "source.header = false to use column_1, column_2, …")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        key = n.casefold()            # SQLite identifiers ignore case
        if key in seen:
            raise _refuse(path, f"header name {n!r} appears twice (columns {seen[key] + 1} "
                          f"and {i + 1}; names differing only in case count as the same); "
                          "column names must be unique")
        seen[key] = i
    if any(n.casefold().startswith("_etl_") for n in names):
        raise _refuse(path, "header names starting with _etl_ are reserved for etlconsole")
    return names


def _utf16_signs(head: bytes) -> str | None:
    """Why ``head`` looks like UTF-16: its byte order mark, or NUL bytes at every other
    position (ASCII text in UTF-16: each character's high byte is 0). None otherwise."""
    if head.startswith(codecs.BOM_UTF16_LE):
        return "byte order mark FF FE, little-endian"
    if head.startswith(codecs.BOM_UTF16_BE):
        return "byte order mark FE FF, big-endian"
    sample = head[: 4096 - 4096 % 2]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    for nuls, other, order in ((odd, even, "little-endian"), (even, odd, "big-endian")):
        if nuls.count(0) >= 0.9 * len(nuls) and other.count(0) <= 0.1 * len(other):
            return f"a NUL byte after every other character, {order} without a byte order mark"
    return None


def _utf16_codec(head: bytes) -> str:
    """The codec name to read it: "utf-16" when a BOM tells the byte order, else the order."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-16-le" if head[1:2] == b"\x00" else "utf-16-be"


def _sniff_delimiter(text: str, quote: str) -> tuple[str, str]:
    """The candidate that splits the first lines into the same, largest number of fields."""
    lines = text.splitlines()[:50]
    best, best_score = ",", (0, 0)
    for cand in _DELIMITERS:
        try:
            counts = [len(r) for r in csv.reader(lines, delimiter=cand, quotechar=quote) if r]
        except csv.Error:
            continue
        if not counts or max(counts) < 2:
            continue
        modal = max(set(counts), key=counts.count)
        score = (counts.count(modal), modal)
        if score > best_score:
            best, best_score = cand, score
    if best_score == (0, 0):
        return ",", "default; no candidate split the first lines"
    return best, f"sniffed: {best_score[1]} fields on {best_score[0]} of the first {len(lines)} lines"


# pyarrow's CSV reader raises ArrowInvalid for every problem, with no code or subclass to
# tell them apart. The two the stream recovers from are recognised by their wording here,
# and only here; tests/unit/test_arrow_messages.py provokes both, so a pyarrow that words
# them differently fails a test instead of failing jobs.
def skips_past_the_end(exc: pa.ArrowInvalid) -> bool:
    """The records to skip (the header, or those a resume skips) run past the end."""
    return "Could not skip initial" in str(exc)


def straddles_blocks(exc: pa.ArrowInvalid) -> bool:
    """A record does not end within the reader's block (a huge field, or an open quote)."""
    return "straddl" in str(exc)


@dataclass
class Chunk:
    """One bounded piece of the source: good rows as text, plus rows rejected on read."""

    batch: pa.RecordBatch
    rejects: list[Rejects]
    first_row: int            # first record number this chunk covers
    last_row: int             # last record number this chunk covers (rejects included)
    bytes_read: int
    carried: list = field(default_factory=list)   # rejects of earlier phases (rerun)
    # (n, "xxh3_128:hex") of the file's first n bytes, read by the time this chunk was cut:
    # they hold every record of the chunk and those before it (see HashingFile)
    proof: tuple[int, str] | None = None
    file: int = 0             # the source file it comes from (SourceFile.index)
    # what a stream of many files learned since its previous chunk: files it finished,
    # the file this chunk starts (engine.manyfiles, recorded by the cutter)
    files: list[dict] = field(default_factory=list)


class CsvStream:
    """Iterate a CSV file as Chunks of at most ``chunk_rows`` rows, memory bounded."""

    def __init__(self, path: Path | SourceFile, dialect: Dialect, *, block_size: int,
                 chunk_rows: int, start_after: int = 0, offset: int = 0,
                 prefixes: PrefixHashes | None = None):
        # One file of a source (sources.SourceFile, maybe compressed) or a plain path.
        self.file = path if isinstance(path, SourceFile) else plain_file(path)
        self.prefixes = prefixes      # the job's one hash pass over the file, if it makes one
        self.path, self.dialect = self.file.path, dialect
        self.block_size, self.chunk_rows = block_size, chunk_rows
        self.size = self.file.size             # on disk: progress is over compressed bytes
        # Records of a source of many files are numbered through all of them: this file's
        # record r is the job's record offset + r. ``start_after`` counts this file's.
        self.offset = offset
        self._next = start_after + 1           # next record number (of this file) to hand out
        self._ragged: dict[int, tuple[str, str]] = {}   # record number -> (why, raw text), not yet emitted
        self._unnumbered: list[str] = []
        self._file: HashingFile | ArrowFile | None = None

    # pyarrow calls this for rows with the wrong number of fields.
    def _on_invalid(self, row) -> str:
        if row.number is None:
            self._unnumbered.append(row.text)
        else:
            record = row.number - self.dialect.skip_lines - (1 if self.dialect.header else 0)
            self._ragged[record] = (self._ragged_reason(record, row), row.text)
        return "skip"

    def _ragged_reason(self, record: int, row) -> str:
        """Why a record has the wrong number of fields. A quote opened and never closed
        makes the parser read the rest of the file as one field: the record then holds an
        odd number of quote characters (a doubled quote inside a field adds two) and ends
        only with the file; said so, with the number of lines it swallowed."""
        fields = f"{row.actual_columns} fields instead of {row.expected_columns}"
        text, quote = row.text or "", self.dialect.quote
        lines = len(re.findall(r"\r\n|\r|\n", text))
        if not quote or not lines or text.count(quote) % 2 == 0:
            return fields
        return (f"a quote ({quote}) opened in record {record:,} was never closed: it swallowed "
                f"the {lines:,} line(s) after it, to the end of the file, into this record "
                f"({fields})")

    def _open(self):
        d = self.dialect
        read = pcsv.ReadOptions(
            use_threads=False,      # record numbers of bad rows are only known single-threaded
            block_size=self.block_size,
            # Names are given and the header is skipped as a parsed *row*, so a header
            # with a quoted newline or longer than a block is skipped correctly.
            column_names=d.names,
            skip_rows=d.skip_lines,
            skip_rows_after_names=(1 if d.header else 0) + self._next - 1,
            encoding="utf8" if d.encoding == "utf-8" else d.encoding,
        )
        parse = pcsv.ParseOptions(delimiter=d.delimiter, quote_char=d.quote,
                                  newlines_in_values=True, invalid_row_handler=self._on_invalid)
        convert = pcsv.ConvertOptions(column_types={n: pa.string() for n in d.names},
                                      check_utf8=False, strings_can_be_null=False,
                                      quoted_strings_can_be_null=False)
        self._file = (ArrowFile(self.file, self.prefixes) if self.prefixes is not None
                      else HashingFile(self.file))
        return pcsv.open_csv(self._file.source(), read_options=read,
                             parse_options=parse, convert_options=convert)

    def bytes_read(self) -> int:
        """Bytes of the file on disk read so far (compressed bytes for a compressed file)."""
        try:
            return min(self._file.disk_pos(), self.size) if self._file else 0
        except (OSError, ValueError):
            return self.size

    def __iter__(self) -> Iterator[Chunk]:
        if self.dialect.empty:
            return
        reader: Any = None                      # pyarrow.csv.CSVStreamingReader
        pending: list[pa.RecordBatch] = []
        held, fresh = 0, True
        while True:
            try:
                if reader is None:
                    reader, fresh = self._open(), True
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except OSError as exc:
                self._close()
                raise self._fault(exc) from None
            except pa.ArrowInvalid as exc:
                self._close()
                if skips_past_the_end(exc):   # header only, no final newline
                    break
                if straddles_blocks(exc) and self.block_size >= self.size:
                    # The block holds all that is left, yet a record does not end: either
                    # the records to skip run to the end of the file (resume at the end)
                    # or the last record has an unterminated quote.
                    if not (fresh and self._next > 1):
                        self._ragged[self._next] = (
                            f"a quote opened in record {self._next:,} or after it was never "
                            "closed: the rest of the file was read as one field", "")
                    break
                if straddles_blocks(exc) and self.block_size < _MAX_BLOCK:
                    # A record larger than a block (a 10 MB field, say): reopen with
                    # bigger blocks, skip the records already handed out, and read the
                    # gathered-but-not-emitted ones again.
                    self.block_size *= 4
                    reader, pending, held = None, [], 0
                    continue
                raise JobFailed(f"{self.path}: cannot parse CSV after record "
                                f"{self._next - 1}: {exc}") from None
            fresh = False
            # Reader blocks are small (memory); phases work best on bigger chunks
            # (fewer calls), so blocks are gathered up to chunk_rows.
            pending.append(batch)
            held += batch.num_rows
            if held >= self.chunk_rows:
                pending = yield from self._emit(pending, keep_rest=True)
                held = sum(b.num_rows for b in pending)
        if pending:
            yield from self._emit(pending, keep_rest=False)
        self._close()
        if self._ragged or self._unnumbered:   # bad rows after the last good one
            empty = pa.RecordBatch.from_pylist([], schema=pa.schema(
                [(n, pa.string()) for n in self.dialect.names]))
            yield self._chunk(empty, final=True)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()

    def records_done(self) -> int:
        """Records of this file handed out (or skipped) so far: all of them at its end."""
        return self._next - 1

    def content_proof(self) -> tuple[int, str] | None:
        """(bytes, hash) of the whole content, once the reader read it to its end."""
        if self._file is None or not self._file.at_end:
            return None
        return self._file.proof()

    def _fault(self, exc: OSError) -> JobFailed:
        """A file that cannot be read to its end (a truncated or damaged compressed file,
        an I/O error) fails the job, resumably (ADR 0025): the batches committed before
        the fault stay, the rows read since are not loaded, and the message says where."""
        fault = (self._file.fault if self._file is not None else None) or exc
        at = self._file.tell() if self._file is not None else 0
        what = (f"cannot be decompressed past byte {at:,} of its {self.file.compression} "
                "content" if self.file.compression else f"cannot be read past byte {at:,}")
        return JobFailed(f"{self.path}: {what} ({fault}); the job stopped there, after "
                         f"record {self._next - 1:,} of this file; what it committed stays, "
                         "the rest is not loaded; it is resumable once the file is whole")

    def _emit(self, batches: list[pa.RecordBatch], *, keep_rest: bool):
        """Chunks of ``chunk_rows`` from the gathered blocks. With ``keep_rest``, rows short
        of a whole chunk are returned, to be gathered with the next blocks: emitted, they
        would be a chunk of a few hundred rows costing every phase a call."""
        size = self.chunk_rows   # read once: the consumer may change it between chunks
        rows = pa.Table.from_batches(batches).combine_chunks()
        whole = rows.num_rows - rows.num_rows % size if keep_rest else rows.num_rows
        for start in range(0, whole, size):
            for batch in rows.slice(start, min(size, whole - start)).to_batches():
                yield self._chunk(batch)
        return rows.slice(whole).to_batches()

    def _chunk(self, raw: pa.RecordBatch, final: bool = False) -> Chunk:
        first = self._next
        n = raw.num_rows
        # Record numbers of the good rows: consecutive, skipping the ragged ones.
        end = first + n
        while True:
            skipped = sorted(r for r in self._ragged if first <= r < end)
            if end - first - len(skipped) >= n:
                break
            end = first + n + len(skipped)
        if final:
            skipped = sorted(self._ragged)
            end = max(skipped, default=first - 1) + 1
        numbers = pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), end - first)),
                         first - 1)
        if skipped:
            numbers = pc.filter(numbers, pc.invert(pc.is_in(numbers, pa.array(skipped, pa.int64()))))
        batch = raw.append_column(ROW, numbers)
        batch, bad_utf8 = _split_undecodable(batch)
        ragged = [self._ragged.pop(r) for r in skipped]
        rejects = [bad_utf8] if bad_utf8 else []  # different shapes: kept apart
        if ragged or (final and self._unnumbered):
            texts = [t for _, t in ragged] + self._unnumbered
            reasons = [w for w, _ in ragged] + ["wrong number of fields"] * len(self._unnumbered)
            rows = pa.RecordBatch.from_pydict({"raw": texts, ROW: pa.array(
                skipped + [None] * len(self._unnumbered), pa.int64())})
            self._unnumbered = [] if final else self._unnumbered
            rejects.append(Rejects(rows, ["fields"] * len(texts), [None] * len(texts), reasons))
        self._next = max(end, self._next)
        if self.offset:
            batch = _shift(batch, self.offset)
            rejects = [replace(r, rows=_shift(r.rows, self.offset)) for r in rejects]
        return Chunk(batch, rejects, first + self.offset, end - 1 + self.offset,
                     self.bytes_read(), proof=self._file.proof() if self._file is not None else None,
                     file=self.file.index)


def _shift(batch: pa.RecordBatch, offset: int) -> pa.RecordBatch:
    """The batch with its record numbers moved by ``offset`` (this file's place in the job)."""
    i = batch.schema.get_field_index(ROW)
    return batch.set_column(i, ROW, pc.add(batch.column(i), pa.scalar(offset, pa.int64())))


def _split_undecodable(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, Rejects | None]:
    """Move rows holding invalid UTF-8 out of the batch (checked in C; rows found in Python
    only for the rare batch that has some)."""
    bad_columns = []
    for name, col in zip(batch.schema.names, batch.columns, strict=False):
        if name == ROW or text_bytes(col).isascii():   # ASCII is valid UTF-8; a 10x cheaper look
            continue
        try:
            col.validate(full=True)
        except pa.ArrowInvalid:
            bad_columns.append(name)
    if not bad_columns:
        return batch, None
    masks: list[pa.Array] = []
    where: dict[int, tuple[str, int]] = {}
    for name in bad_columns:
        raw = pc.cast(batch.column(name), pa.binary()).to_pylist()
        flags = []
        for i, v in enumerate(raw):
            try:
                v is None or v.decode("utf-8")
                flags.append(False)
            except UnicodeDecodeError as exc:
                flags.append(True)
                where.setdefault(i, (name, exc.start))
        masks.append(pa.array(flags))
    bad = masks[0]
    for m in masks[1:]:
        bad = pc.or_(bad, m)
    idx = pc.indices_nonzero(bad).to_pylist()
    rows = batch.take(pa.array(idx, pa.int64()))
    fixed = {}
    for name in batch.schema.names:
        col = rows.column(name)
        if name != ROW:
            col = pa.array([None if v is None else v.decode("utf-8", "replace")
                            for v in pc.cast(col, pa.binary()).to_pylist()], pa.string())
        fixed[name] = col
    rejects = Rejects(pa.RecordBatch.from_pydict(fixed), ["encoding"] * len(idx),
                      [where[i][0] for i in idx],
                      [f"invalid UTF-8 at byte {where[i][1]} of column {where[i][0]!r}; "
                       "set source.encoding if the file is not UTF-8" for i in idx])
    return batch.filter(pc.invert(bad)), rejects


class HashingFile(io.RawIOBase):
    """The source file as the CSV reader reads it, hashed on the way (from byte 0).

    Each chunk carries ``proof()``: the hash of the bytes read so far. A committed batch
    keeps its last chunk's proof, and resume checks that the file still starts with those
    bytes before skipping the records they hold (ADR 0017). The reader reads ahead, so a
    proof covers a little more than its records (up to a few blocks): an edit there is
    refused too. The hash releases the GIL on these block-sized updates. (A plain file
    whose whole-file digest the job computes anyway is read as an ``ArrowFile``.)"""

    def __init__(self, path: Path | SourceFile):
        super().__init__()
        file = path if isinstance(path, SourceFile) else plain_file(path)
        # For a compressed file the bytes hashed and counted are the decompressed ones:
        # the proof is about the CSV text, and resume decompresses again to check it.
        raw, self._disk = sources.open_counted(file)
        self._raw: Any = raw      # a file object, or pyarrow's stream: both have readinto
        self._hash = hashes.new()
        self._pos = 0
        self._lock = threading.Lock()
        self.fault: OSError | None = None     # why the file could not be read on
        self.at_end = False                   # the content was read to its end

    def readable(self) -> bool:
        return True

    def disk_pos(self) -> int:
        """Bytes read of the file on disk (compressed bytes when it is compressed)."""
        return self._disk.pos

    def readinto(self, buffer) -> int:
        try:
            n = self._raw.readinto(buffer)
        except OSError as exc:   # pyarrow hands it back to the CSV reader's caller
            self.fault = exc
            raise
        if not n and len(buffer):
            self.at_end = True
        if n:
            with self._lock:
                self._hash.update(memoryview(buffer)[:n])
                self._pos += n
        return n

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return False

    def source(self) -> pa.NativeFile:
        """What the CSV reader reads: this object, through Arrow's Python file adapter."""
        return pa.PythonFile(self, mode="r")

    def proof(self) -> tuple[int, str] | None:
        with self._lock:
            return self._pos, hashes.text(self._hash.copy())

    def close(self) -> None:
        self._raw.close()
        super().close()


class ArrowFile:
    """A plain file read by Arrow itself, for a job that hashes it once anyway
    (``PrefixHashes``): no call back into Python per block. Each such call needs the GIL,
    which the phase threads hold most of the time: through a Python file object the
    reader's blocks waited up to a switch interval each (measured: 2-3 s of wall for
    0.6 s of parsing in a 1M-row job). Same interface as HashingFile."""

    fault: OSError | None = None

    def __init__(self, file: SourceFile, prefixes: PrefixHashes):
        self.size = file.size
        self._native = pa.OSFile(str(file.path), mode="r")
        self._prefixes = prefixes

    def source(self) -> pa.NativeFile:
        return self._native

    def tell(self) -> int:
        try:
            return self._native.tell()
        except (OSError, ValueError):    # closed
            return self.size

    disk_pos = tell

    @property
    def at_end(self) -> bool:
        return self.tell() >= self.size

    def proof(self) -> tuple[int, str] | None:
        return self._prefixes.covering(self.tell())

    def close(self) -> None:
        self._native.close()


class PrefixHashes:
    """One hash pass over a plain file serving two readers: the job's digest thread
    runs it to the end (the whole-file digest resume compares), and the CSV reader asks it
    for proofs of the bytes it has read (``covering``). Each ``STEP`` bytes the hash state
    is kept, so a proof is the hash of the first multiple of STEP at or past the bytes
    read (a few MB more than its records: an edit there is refused too, as the reader's
    read-ahead already was). Whoever needs bytes not hashed yet hashes them, under the
    lock: one block at a time, so neither waits long on the other."""

    STEP = 4 << 20

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._hash = hashes.new()
        self._pos = 0
        self._marks: list[tuple[int, Any]] = []   # (bytes, hash state) at each step, ascending
        self._file: Any = None
        self._ended = False                       # hashed to the end of the file

    def _advance(self) -> bool:
        """Hash one more step (the lock held); False at the end of the file."""
        if self._ended:
            return False
        try:
            if self._file is None:
                self._file = self.path.open("rb")
                self._file.seek(self._pos)
            block = self._file.read(self.STEP)
        except OSError:         # the reader meets it too, and says so; here: no proof
            self.close_locked()
            return False
        if block:
            self._hash.update(block)
            self._pos += len(block)
        if not block or len(block) < self.STEP:
            self.close_locked()
        if block:
            self._marks.append((self._pos, self._hash.copy()))
        return bool(block)

    def covering(self, n: int) -> tuple[int, str] | None:
        """(m, "xxh3_128:hex" of the first m bytes) for the first kept m >= n; None if the
        file ends before n (it grew or changed while being read: no proof)."""
        with self._lock:
            while self._pos < n and self._advance():
                pass
            # the reader only moves forward: marks before n are not asked for again
            keep = next((i for i, (m, _) in enumerate(self._marks) if m >= n), len(self._marks))
            del self._marks[:keep]
            if not self._marks:
                return None if n > 0 else (0, hashes.text(hashes.new()))
            m, state = self._marks[0]
        return m, hashes.text(state)

    def run_to_end(self, stop: threading.Event) -> str | None:
        """The whole file's "xxh3_128:hex", or None if ``stop`` came first."""
        while True:
            if stop.is_set():
                return None
            with self._lock:
                if not self._advance():
                    return hashes.text(self._hash)

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def close_locked(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._ended = True


def prefix_digest(path: Path | SourceFile, size: int, algorithm: str = hashes.PROOF) -> str | None:
    """'algorithm:hex' of the file's first ``size`` bytes (decompressed, for a compressed
    file), or None if it is shorter or cannot be decompressed that far."""
    file = path if isinstance(path, SourceFile) else plain_file(path)
    try:
        return _hash_prefix(file, algorithm, size)
    except OSError:
        return None


def same_prefix(path: Path | SourceFile, size: int, recorded: str) -> bool:
    """Whether the file still begins with the ``size`` bytes a job recorded the hash of
    (with the algorithm it was recorded with)."""
    algorithm = hashes.algorithm_of(recorded)
    return algorithm is not None and prefix_digest(path, size, algorithm) == recorded


def _hash_prefix(file: SourceFile, algorithm: str, left: int) -> str | None:
    h = hashes.new(algorithm)
    with sources.open_decompressed(file) as f:
        while left > 0:
            block = f.read(min(left, 4 << 20))
            if not block:
                return None
            h.update(block)
            left -= len(block)
    return hashes.text(h, algorithm)


def plain_file(path: Path) -> SourceFile:
    """A single named file as a source file, its compression checked (name and bytes)."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return SourceFile(path, 0, sources.compression_of(path), size)


def fingerprint(path: Path) -> dict:
    """What identifies the source file: size, mtime, and a hash of its head and tail."""
    st = path.stat()
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_head_tail": h.hexdigest()}


def digest(path: Path, stop: threading.Event | None = None,
           algorithm: str = hashes.PROOF) -> str | None:
    """'algorithm:hex' of the whole file (the hash releases the GIL), or None if stopped
    first. Resume compares it, so an edit anywhere in the file is caught."""
    h = hashes.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(4 << 20):
            if stop is not None and stop.is_set():
                return None
            h.update(chunk)
    return hashes.text(h, algorithm)


def same_content(path: Path, recorded: str) -> bool:
    """Whether the file still hashes to the digest a job recorded (jobs recorded before
    the algorithm was named carry a bare blake2b hex digest)."""
    algorithm = hashes.algorithm_of(recorded)
    if algorithm is None:
        return False
    if ":" not in recorded:
        recorded = f"{algorithm}:{recorded}"
    return digest(path, algorithm=algorithm) == recorded
