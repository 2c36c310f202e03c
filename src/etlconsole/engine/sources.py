"""Sources: which files a job reads, in which order, and how each is decompressed.

``[source] path`` names one file (as always), a glob (``drops/2026-12-*/orders_*.csv*``), a
directory (its CSV files, plain or compressed) or a list of any of these. ``resolve`` turns
it into ``SourceFile``s in a stated, stable order: sorted paths, so two runs of the same drop
read the same records under the same numbers.

Compression is decided by the name AND the first bytes, and both must agree: a ``.gz`` that
is not gzip data is refused (a half-renamed file, a download that saved an HTML error page),
and so is gzip data named ``.csv`` — guessing would turn a mistake into garbage rows.
Decompression is pyarrow's (streaming, in C++, the GIL released); nothing is hand-written.

This module knows files, not CSV: it imports nothing from the rest of the engine, so the
local executor and the Dask executor (which ships ``SourceFile``s to workers) share it.
"""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UserError

# Name endings -> pyarrow codec names ("lz4" is the LZ4 *frame* format, what the lz4 tool writes).
_EXTENSIONS = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd",
               ".lz4": "lz4"}
# The first bytes each format must start with (gzip: RFC 1952; bzip2: "BZh" and the block
# size digit; zstd and LZ4 frames: their little-endian magic numbers).
_MAGIC = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "zstd": b"\x28\xb5\x2f\xfd",
          "lz4": b"\x04\x22\x4d\x18"}
_NAMES = {"gzip": ".gz", "bz2": ".bz2", "zstd": ".zst", "lz4": ".lz4"}
COMPRESSED_SUFFIXES = tuple(_EXTENSIONS)     # the name endings read as compressed
# What a directory contributes: CSV files, plain or compressed (a folder of mixed files
# says which it read, and nothing else is picked up by accident).
_DATA_SUFFIXES = (".csv", ".tsv")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class SourceFile:
    """One file of a job's source."""

    path: Path
    index: int                 # 0-based position in the stated order (sorted paths)
    compression: str | None    # "gzip" | "bz2" | "zstd" | "lz4" | None
    size: int                  # bytes on disk (compressed size)
    # A part of a plain file (``part``): the records that begin at a byte p with
    # start <= p < end, read after the file's header line. None: the whole file.
    start: int = 0
    end: int | None = None

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def is_part(self) -> bool:
        return self.start > 0 or self.end is not None

    @property
    def span(self) -> int:
        """Bytes on disk of the part (about: its ends move onto record boundaries)."""
        return max(0, min(self.size if self.end is None else self.end, self.size) - self.start)

    @property
    def nothing(self) -> bool:
        """A part that holds no byte of the file (its range is empty)."""
        return self.end is not None and self.start >= min(self.end, self.size) and self.start > 0

    def part(self, start: int, end: int | None) -> SourceFile:
        """The records of this file that begin in bytes [start, end): splitting a file at
        any byte offsets gives parts that together hold each record exactly once.

        Only for a plain file whose records end with a newline and hold none (no quoted
        newlines): a part starts after the first newline at or after ``start - 1``, which
        is a record boundary only then. This cannot tell; ``resync`` moves a part's ends
        onto boundaries a scan of the file's quoting proves (what the Dask executor reads)."""
        if self.compression is not None:
            raise ValueError(f"{self.path}: a compressed file cannot be read in byte ranges")
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad byte range {start}..{end}")
        return SourceFile(self.path, self.index, None, self.size, start, end)

    def to_json(self) -> dict:
        return {"path": str(self.path), "index": self.index, "compression": self.compression,
                "size": self.size}


def resolve(path: str | Sequence[str], base: Path | None = None) -> list[SourceFile]:
    """The files ``path`` names, sorted, each with its compression checked.

    ``path`` is a file, a glob, a directory or a list of these; relative paths are taken
    from ``base`` (the pipeline file's folder). A name matching nothing is refused, one
    line naming it, before anything is read."""
    items = [path] if isinstance(path, str) else list(path)
    if not items:
        raise UserError("source.path: the list of source files is empty")
    found: dict[str, Path] = {}
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise UserError(f"source.path: {item!r} is not a path")
        for p in _expand(item, base):
            found.setdefault(str(p), p)
    paths = sorted(found.values(), key=str)
    return [SourceFile(p, i, compression_of(p), _size(p)) for i, p in enumerate(paths)]


def _expand(item: str, base: Path | None) -> list[Path]:
    """The files one entry names (resolved, absolute)."""
    p = Path(item).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    if _GLOB_CHARS & set(item) and not p.is_file():   # "[table].csv" is a name, when it is one
        matches = [Path(m).resolve() for m in glob.glob(str(p), recursive=True)]
        files = [m for m in matches if m.is_file()]
        if not files:
            raise UserError(f"{p}: no source file matches this pattern")
        return files
    p = p.resolve()
    if p.is_dir():
        files = [c for c in p.iterdir() if c.is_file() and _is_data_file(c)]
        if not files:
            raise UserError(f"{p}: the directory holds no CSV files (*.csv, or compressed: "
                            "*.csv.gz, *.csv.bz2, *.csv.zst, *.csv.lz4)")
        return files
    # One named file: whether it exists and reads as CSV is for the sniff to say, in the
    # words it always used ("source file not found").
    return [p]


def _is_data_file(p: Path) -> bool:
    if p.name.startswith("."):
        return False
    name = p.name.lower()
    for ext in _EXTENSIONS:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return name.endswith(_DATA_SUFFIXES)


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0            # missing: the sniff refuses it, naming it


def compression_of(p: Path) -> str | None:
    """The codec of ``p``, from its name, confirmed by its first bytes."""
    by_name = _EXTENSIONS.get(p.suffix.lower())
    try:
        with p.open("rb") as f:
            head = f.read(10)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return by_name       # the sniff says what is wrong with it
    except OSError as exc:
        raise UserError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    by_magic = _sniff_magic(head)
    if by_name is None:
        if by_magic is not None:
            raise UserError(f"{p}: holds {by_magic}-compressed data but its name does not say "
                            f"so; name it {p.name}{_NAMES[by_magic]} to have it decompressed")
        return None
    if not head:
        raise UserError(f"{p}: file is empty (expected {by_name}-compressed data)")
    if by_magic != by_name:
        what = f"{by_magic}-compressed data" if by_magic else f"bytes {head[:4].hex(' ')}"
        raise UserError(f"{p}: named {p.suffix} but does not hold {by_name} data (it starts "
                        f"with {what}); rename it, or replace it with a good copy")
    return by_name


def _sniff_magic(head: bytes) -> str | None:
    for codec, magic in _MAGIC.items():
        if head.startswith(magic):
            # "BZh" alone could be the start of a text header: bzip2 follows it with the
            # block size digit and the block magic 0x314159265359.
            if codec == "bz2" and not (head[3:4].isdigit() and head[4:10] == b"1AY&SY"):
                continue
            return codec
    return None


def open_decompressed(f: SourceFile) -> BinaryIO:
    """The file's content, decompressed while it is read (a forward-only stream).

    A damaged or truncated compressed file raises ``OSError`` from ``read`` when the
    fault is reached (pyarrow: "Truncated compressed stream", "zlib inflate failed" …);
    the reader turns it into a job failure naming the file (see extract.HashingFile)."""
    return open_counted(f)[0]


class _Counted(io.RawIOBase):
    """The file on disk, counting the bytes read from it (the compressed bytes behind a
    decompressing stream: what progress is measured in)."""

    def __init__(self, path: Path):
        super().__init__()
        self._raw = open(path, "rb", buffering=0)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer) or 0
        self.pos += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_counted(f: SourceFile) -> tuple[BinaryIO, _Counted]:
    """(the decompressed content, the file on disk counting what was read of it). For a
    plain file both are the same object; for a part, the header line then the part."""
    if f.is_part:
        part = _Part(f)
        return cast(BinaryIO, part), part
    raw = _Counted(f.path)
    if f.compression is None:
        return cast(BinaryIO, raw), raw
    stream = pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), f.compression)
    return cast(BinaryIO, stream), raw


class _Part(_Counted):
    """A part of a plain file as a CSV reader wants it: the header line, then the records
    that begin in [start, end) (see ``SourceFile.part``). ``pos`` counts the part's own
    bytes on disk."""

    def __init__(self, f: SourceFile):
        super().__init__(f.path)
        raw = self._raw
        header = _header_end(raw)
        first = header if f.start <= header else _line_after(raw, f.start - 1)
        last = f.size if f.end is None or f.end >= f.size else _line_after(raw, f.end - 1)
        self.first, self.last = first, max(first, last)
        raw.seek(0)
        self._pending = raw.read(header)        # the header line (and blank lines before it)
        raw.seek(self.first)
        self._left = self.last - self.first

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)
        if self._pending:
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        if self._left <= 0:
            return 0
        n = self._raw.readinto(view[: min(len(view), self._left)]) or 0
        self._left -= n
        self.pos += n
        return n


def _header_end(raw) -> int:
    """Where the first non-blank line of the file ends (the header's end; a header with a
    quoted newline makes the file unsplittable anyway)."""
    raw.seek(0)
    pos = 0
    for line in iter(lambda: _readline(raw), b""):
        pos += len(line)
        if line.strip():
            return pos
    return pos


def _line_after(raw, offset: int) -> int:
    """The position after the first newline at or after ``offset`` (the file's size when
    there is none)."""
    raw.seek(offset)
    line = _readline(raw)
    return offset + len(line)


def _readline(raw, block: int = 1 << 16) -> bytes:
    """One line (through its newline) from an unbuffered file, leaving it just after."""
    start, parts = raw.tell(), []
    while True:
        chunk = raw.read(block)
        if not chunk:
            break
        cut = chunk.find(b"\n")
        if cut >= 0:
            parts.append(chunk[: cut + 1])
            break
        parts.append(chunk)
    line = b"".join(parts)
    raw.seek(start + len(line))
    return line


# -- byte-range parts: record boundaries proven, not guessed ------------------------------
_SCAN_BLOCK = 4 << 20       # bytes per step of the boundary scan (bounded memory, any file)
_IOTA: list[pa.Array] = []  # 0, 1, 2 … per byte of a block: quote positions by one filter
_BOM = b"\xef\xbb\xbf"


def splittable(f: SourceFile, encoding: str, quote: str, delimiter: str, header: bool) -> bool:
    """Whether ``f`` may be read in byte ranges at all: a plain file of an ASCII-compatible
    encoding (a newline byte is a newline), one-byte quote and delimiter, and a header line
    (each part is read after it; a file without one would have a record read twice)."""
    ascii_like = encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig", "ascii",
                                                         "latin-1", "latin1", "iso-8859-1",
                                                         "cp1252", "windows-1252")
    one_byte = all(len(c.encode("latin-1", "replace")) == 1 for c in (quote, delimiter) if c)
    return f.compression is None and not f.is_part and header and ascii_like and one_byte \
        and len(delimiter) == 1 and len(quote) <= 1


def cut_points(f: SourceFile, cuts: list[int], quote: str, delimiter: str) -> dict[int, int]:
    """The proven record boundary of each nominal cut of file ``f`` (what ``resync``
    moves a range's ends to), in one scan of the file up to its last cut. Keyed by cut;
    ``-1``: the header's end when the header's own quoting is proven."""
    return scan_cuts(f, cuts, quote, delimiter)[0]


def scan_cuts(f: SourceFile, cuts: list[int], quote: str, delimiter: str,
              since: tuple[int, int, bool] | None = None) -> tuple[dict[int, int], tuple[int, int, bool]]:
    """``cut_points`` in steps: the boundaries of ``cuts``, scanning on from ``since`` (what
    the step before returned; None: the file's start, its header checked first), and where
    the next step scans on from: (header's end, the start of a block of the scan, whether
    that byte is inside quotes; -1: nothing after can be proven). The steps of a file
    together find exactly what one scan finds: a step resumes at the start of the block in
    which the step before stopped, with the quoting state there."""
    if since is None:
        with open(f.path, "rb", buffering=0) as raw:
            header = _header_end(raw)
        scan = _QuoteScan(f.path, quote, delimiter)
        proven = scan.boundary_from(max(header - 1, 0)) == header
        found = {-1: header if proven else f.size}
    else:
        header, at, inside = since
        proven = at >= 0
        scan = _QuoteScan(f.path, quote, delimiter, resume=(max(at, 0), inside))
        found = {}
    try:
        for c in sorted(set(cuts)):
            found[c] = (header if c <= header else f.size if c >= f.size or not proven
                        else scan.boundary_from(c - 1))
        where = (header, scan.at, scan.inside) if proven else (header, -1, False)
    finally:
        scan.close()
    return found, where


def resync(f: SourceFile, quote: str, delimiter: str,
           points: dict[int, int] | None = None) -> SourceFile:
    """Part ``f`` with both ends moved onto proven record boundaries (the nominal split is
    a byte count, blind to records). A boundary at byte ``b`` is the end of the first
    newline at or after ``b - 1`` that a scan from the file's first byte proves is outside
    quotes; the part before and the part after compute the same boundary from the same
    bytes, so every record is read by exactly one part, whole — quoted newlines included.
    Where the scan cannot follow the quoting (a quote in the middle of an unquoted field,
    text after a closing quote: CSV that parsers read differently), nothing after that
    point is a boundary: the part before it reads to the end of the file, those after
    it are empty. A plain (unsplit) file is returned as is."""
    if not f.is_part:
        return f
    ends = [c for c in (f.start, f.end) if c]
    if points is None or any(c not in points for c in ends):
        points = cut_points(f, ends, quote, delimiter)
    first = points[f.start] if f.start else 0
    last = f.size if f.end is None or f.end >= f.size else points[f.end]
    return f.part(first, max(first, last))


class _QuoteScan:
    """A forward scan of a file's quoting, one block at a time (each block ends with a
    newline, so no run of quotes straddles two). The model is RFC 4180's, as the CSV reader
    reads it: a quote opens a field only at its start (after the delimiter, a line end or
    the file's start), a doubled quote inside quotes is one quote, a closing quote is
    followed by the delimiter or a line end. Each run of quotes is checked against that
    (vectorized: pyarrow.compute over the block), the state after it is the parity of
    the quotes before; the first run that breaks the model ends what can be proven."""

    def __init__(self, path: Path, quote: str, delimiter: str,
                 resume: tuple[int, bool] | None = None):
        self.raw = open(path, "rb", buffering=0)
        # one byte each (``splittable``); no quote: every newline ends a record
        self.q, self.d = quote.encode("latin-1") if quote else b"", delimiter.encode("latin-1")
        self.size = os.fstat(self.raw.fileno()).st_size
        head = self.raw.read(len(_BOM))
        self.pos = len(_BOM) if head == _BOM else 0    # where the next block starts
        if resume is not None:                          # a block start an earlier scan reached
            self.pos = max(self.pos, resume[0])
        self.raw.seek(self.pos)
        self.block, self.at = b"", self.pos             # the block in hand and its offset
        self.inside = bool(resume and resume[1])        # in quotes at the block's start
        self.quotes = 0                                 # quotes in the block in hand
        self.broken: int | None = None                  # where the model stopped holding

    def boundary_from(self, offset: int) -> int:
        """The end of the first newline at or after ``offset`` (ascending calls) that is
        proven outside quotes; the file's size when there is none."""
        while True:
            if self.at + len(self.block) <= offset and not self._next_block():
                return self.size
            if self.at + len(self.block) > offset:
                found = self._in_block(offset)
                if found is not None:
                    return found
                if self.broken is not None or not self._next_block():
                    return self.size
                offset = self.at

    def _next_block(self) -> bool:
        """Step past the block in hand (its quotes' parity carried) to the next one."""
        if self.broken is not None:
            return False
        self.inside ^= bool(self.quotes % 2)
        self.at += len(self.block)
        data = self.raw.read(_SCAN_BLOCK) if not self.raw.closed else b""
        if not data:
            self.block = b""
            return False
        while True:      # cut after the block's last newline; a line longer than a block grows it
            cut = data.rfind(b"\n")
            more = self.raw.read(_SCAN_BLOCK) if cut < 0 else b""
            if cut >= 0 or not more:
                break
            data += more
        if cut >= 0 and cut + 1 < len(data):
            self.raw.seek(self.at + cut + 1)
            data = data[:cut + 1]
        self.block = data
        self.broken = self._check(data) if self.q else None
        return True

    def _check(self, block: bytes) -> int | None:
        """Where in the file the first run of quotes of ``block`` breaks the model, if any
        (and ``quotes``: how many the block holds)."""
        self.quotes = 0
        if self.q not in block:
            return None
        arr = pa.Array.from_buffers(pa.uint8(), len(block), [None, pa.py_buffer(block)])
        if not _IOTA or len(_IOTA[0]) < len(block):
            _IOTA[:] = [pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int32()), len(block)))]
        iota = _IOTA[0].slice(0, len(block))
        at = pc.subtract(pc.filter(iota, pc.equal(arr, pa.scalar(self.q[0], pa.uint8()))), 1)
        n = self.quotes = len(at)
        step = pc.subtract(at.slice(1), at.slice(0, n - 1))     # 1 inside a run of quotes
        gap = pc.not_equal(step, 1)
        true = pa.array([True])
        starts = at.filter(pa.concat_arrays([true, gap]))
        ends = at.filter(pa.concat_arrays([gap, true]))
        odd = pc.bit_wise_and(pc.add(pc.subtract(ends, starts), 1), 1)
        after = pc.cumulative_sum(odd)
        base = int(self.inside)
        open_before = pc.equal(pc.bit_wise_and(pc.add(pc.subtract(after, odd), base), 1), 0)
        closed_after = pc.equal(pc.bit_wise_and(pc.add(after, base), 1), 0)
        bounds = pa.array([self.d[0], 10, 13], pa.uint8())
        # the byte before a run (a block starts after a newline: a boundary) and after it
        # (a block ends with a newline, never a quote; the file's last line may not)
        before = pc.is_in(arr.take(pc.max_element_wise(pc.subtract(starts, 1), 0)), value_set=bounds)
        before = pc.or_(before, pc.equal(starts, 0))
        after_i = pc.min_element_wise(pc.add(ends, 1), len(block) - 1)
        follow = pc.or_(pc.is_in(arr.take(after_i), value_set=bounds),
                        pc.equal(pc.add(ends, 1), len(block)))
        bad = pc.or_(pc.and_(open_before, pc.invert(before)),      # opens mid-field
                     pc.and_(closed_after, pc.invert(follow)))     # text after a close
        hits = pc.indices_nonzero(bad)
        return self.at + starts[hits[0].as_py()].as_py() if len(hits) else None

    def _in_block(self, offset: int) -> int | None:
        """The first proven boundary at or after ``offset`` within the block in hand."""
        block, q = self.block, self.q
        i = max(offset - self.at, 0)
        state = self.inside ^ bool(block.count(q, 0, i) % 2) if q else False
        limit = len(block) if self.broken is None else self.broken - self.at
        while True:
            nl = block.find(b"\n", i)
            if nl < 0 or nl >= limit:
                return None
            if q:
                state ^= bool(block.count(q, i, nl) % 2)
            if not state:
                return self.at + nl + 1
            i = nl + 1

    def close(self) -> None:
        self.raw.close()


def quotes_in(f: SourceFile, quote: str) -> int:
    """Quote characters in the bytes part ``f`` reads (after the header): even exactly when
    a range that starts outside quotes ends outside them (RFC 4180 quoting)."""
    if not quote:
        return 0
    q, n = quote.encode("latin-1"), 0
    with _Part(f) as part:
        raw, left = part._raw, part.last - part.first
        raw.seek(part.first)
        while left > 0:
            block = raw.read(min(_SCAN_BLOCK, left))
            if not block:
                break
            n += block.count(q)
            left -= len(block)
    return n


def records_before(f: SourceFile) -> int:
    """Records of the file before part ``f`` (non-blank lines from the header's end to the
    part's first byte): what numbers the part's records in the file. Reads that far."""
    if not f.is_part:
        return 0
    with _Part(f) as part, open(f.path, "rb") as raw:
        raw.seek(_header_end(raw))
        left, n = part.first - raw.tell(), 0
        for line in raw:
            if left <= 0:
                break
            left -= len(line)
            n += bool(line.strip(b"\r\n"))
    return n


def total_size(files: Sequence[SourceFile]) -> int:
    """Bytes on disk of all the files: what progress is measured against."""
    return sum(f.size for f in files)


def describe(files: Sequence[SourceFile], base: Path | None = None) -> str:
    """'one.csv' or 'orders_1.csv … orders_6.csv.gz (6 files)' for messages."""
    if len(files) == 1:
        return str(files[0].path)
    first, last = files[0].path, files[-1].path
    return f"{first} … {last.name} ({len(files)} files)"


def is_many(path: str | Sequence[str]) -> bool:
    """Whether ``path`` may name more than one file (a list, a glob or a directory)."""
    if not isinstance(path, str):
        return True
    return bool(_GLOB_CHARS & set(path)) or os.path.isdir(os.path.expanduser(path))
