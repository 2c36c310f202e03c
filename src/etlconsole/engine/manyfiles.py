"""A job whose source is many files (ADR 0025): planned, streamed, recorded and resumed.

The files are read one after the other in their stated order (sorted paths), and their
records are numbered through all of them, as if the files were one file with one header:
record r of file k is the job's record (records of files 0..k-1) + r. Everything that
counts or orders records (batches, ledgers, rejects, ``unique``, checkpoints) keeps working
on those numbers; the job keeps, per file, where its records start, so any number
can be told as (file, record within it).

Where each file starts is only known once the files before it were read, so it is
recorded as the reading gets there: ``ManyFiles`` hands the cutter, with the first chunk
after a boundary, what it learned (the files it finished: their record count and a hash of
their whole content; the file it started: its first record), and the cutter writes it to
the state store (a row per file, ``StateStore.note_files``) before the first batch of that
file is begun. Reading the job record merges it into the fingerprint's files; resume reads
it back from there.

One file (a glob or a directory matching one file, too) is a job exactly as before: this
module then hands out the plain ``CsvStream`` and the job record keeps its plain
fingerprint.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..store.store import FILE_FACTS
from . import extract, hashes, sources
from .sources import SourceFile

if TYPE_CHECKING:
    from ..spec import PipelineSpec
    from .job import Job
    from .plan import Plan


# -- planning ----------------------------------------------------------------------
def plan_source(spec: PipelineSpec, source: Any) -> tuple[Path, list[SourceFile],
                                                          list[extract.Dialect]]:
    """(the path a job names as its source, its files, each file's dialect).

    Every file is sniffed before anything is written, with the first file's delimiter and
    quote (a file that splits otherwise shows it in its header), and a file whose columns
    differ from the first's is refused, naming both."""
    s = spec.source
    if source is None:
        files = sources.resolve(s.where(), spec.base_dir)
    elif isinstance(source, (str, Path)):
        files = sources.resolve(str(source))
    else:
        files = sources.resolve([str(x) for x in source])
    first = extract.sniff(files[0], delimiter=s.delimiter, quote=s.quote, encoding=s.encoding,
                          header=s.header)
    dialects = [first]
    for f in files[1:]:
        d = extract.sniff(f, delimiter=first.delimiter, quote=first.quote, encoding=s.encoding,
                          header=s.header)
        if [n.casefold() for n in d.names] != [n.casefold() for n in first.names]:
            raise UserError(f"{f.path}: its header ({_columns(d.names)}) differs from the "
                            f"header of {files[0].path} ({_columns(first.names)}); every file "
                            "of a source must have the same columns in the same order")
        dialects.append(d)
    return (files[0].path if len(files) == 1 else common_folder(files)), files, dialects


def _columns(names: list[str]) -> str:
    shown = ", ".join(names[:8])
    return f"{len(names)} columns: {shown}{', …' if len(names) > 8 else ''}"


def common_folder(files: Sequence[SourceFile]) -> Path:
    """The deepest folder holding every file (what the job shows as its source)."""
    parts = [f.path.parent.parts for f in files]
    common = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return Path(*common) if common else Path("/")


def is_many(plan: Plan) -> bool:
    return len(plan.files) > 1


# -- the job record ----------------------------------------------------------------
def fingerprint(plan: Plan, record: dict | None = None) -> dict:
    """What identifies the source. One file: as always (size, mtime, head and tail hash).
    Many: that per file, with the total size (progress is over the bytes on disk); a
    resumed job keeps what its record learned while reading (where each file starts)."""
    if not is_many(plan):
        return extract.fingerprint(plan.source)
    files = [{**f.to_json(), **extract.fingerprint(f.path)} for f in plan.files]
    recorded = files_of(record or {})
    if recorded:      # a resume: where each file starts, learned while reading, stays
        files = [{**now, **{k: then[k] for k in FILE_FACTS if k in then}}
                 for now, then in zip(files, recorded, strict=True)]
    return {"size": sources.total_size(plan.files), "files": files}


def note(job: Job, events: list[dict]) -> None:
    """Record what the stream learned at file boundaries in the job's record (the cutter
    calls this before it begins the first batch of a new file)."""
    if not job.fingerprint.get("files"):
        return
    job.fingerprint = noted(job.fingerprint, events)
    job.store.note_files(job.job_id, events)


def noted(fingerprint: dict, events: list[dict]) -> dict:
    """The job's fingerprint with what ``events`` tell of its files: new dicts for the
    fingerprint, its list and the files that changed, never a change in place (a rerun's
    fingerprint comes from its parent's record, whose files its stream still reads); the
    files that did not change are shared, not copied at every file's end."""
    files = list(fingerprint["files"])
    for e in events:
        files[e["index"]] = files[e["index"]] | {k: v for k, v in e.items() if k != "index"}
    return {**fingerprint, "files": files}


def finish(job: Job, stream: Any) -> None:
    """The stream ended: record the ends of the files no chunk came after."""
    if isinstance(stream, ManyFiles) and stream.leftover:
        note(job, stream.leftover)
        stream.leftover = []


def files_of(record: dict) -> list[dict]:
    """The job's files as recorded (empty for a job of one file)."""
    return list((record.get("source_fingerprint") or {}).get("files") or [])


def locator(files: list[dict]) -> Callable[[int | None], tuple[str, int] | None]:
    """record ``row`` of the job -> (its file, its record there); None when not known. A
    bisection over where the files start, in their order (a file not read yet is not
    known; an empty file starts where the next one does, which holds the record): a
    listing of a drop of thousands of files asks it for every row."""
    known = [(f["first_record"], f["path"]) for f in files if f.get("first_record") is not None]
    starts = [start for start, _ in known]

    def locate(row: int | None) -> tuple[str, int] | None:
        if row is None or (i := bisect_right(starts, row) - 1) < 0:
            return None
        start, path = known[i]
        return path, row - start + 1
    return locate


def file_locator(files: list[dict]) -> Callable[[int | None], dict]:
    """record ``row`` -> ``{"file": path, "file_record": n}`` for a job of many files (what
    ``rejects --json``, ``batches --json`` and ``checkpoints --json`` add); ``{}`` for a
    job of one file, whose record numbers are already the file's."""
    locate = locator(files)

    def where(row: int | None) -> dict:
        found = locate(row)
        return {"file": found[0], "file_record": found[1]} if found else {}
    return where


# ``show`` and the console's details list a drop of up to this many files whole; of more,
# the first and last few and the file reading is at (or stopped in) — a drop of 2,000 files
# was 2,000 lines before the job's figures — with how many are left out between them.
FILES_SHOWN = 12
FILES_AT_EACH_END = 5


def file_lines(record: dict, *, every: bool = False) -> list[str]:
    """``show``'s lines for a job of many files: each file, its size and its records, or
    (``every`` False and more than FILES_SHOWN files) the first and last FILES_AT_EACH_END
    and the last file reading began, with a line "… N more files" for each gap."""
    files = files_of(record)
    if every or len(files) <= FILES_SHOWN:
        return [_file_line(f) for f in files]
    keep = {*range(FILES_AT_EACH_END), *range(len(files) - FILES_AT_EACH_END, len(files))}
    began = [i for i, f in enumerate(files) if f.get("first_record") is not None]
    if began:
        keep.add(began[-1])
    lines, shown = [], -1
    for i in sorted(keep):
        if i > shown + 1:
            lines.append(f"… {i - shown - 1:,} more files")
        lines.append(_file_line(files[i]))
        shown = i
    return lines


def _file_line(f: dict) -> str:
    start, n = f.get("first_record"), f.get("records")
    span = ("not read yet" if start is None else "no records" if n == 0 else
            f"records {start:,}-{start + n - 1:,} ({n:,})" if n is not None else
            f"records from {start:,}")
    codec = f" {f['compression']}" if f.get("compression") else ""
    return f"{f['path']}  ({f['size']:,} bytes{codec})  {span}"


# -- streaming -----------------------------------------------------------------------
def open_stream(job: Job, chunk_rows: int) -> Any:
    """The job's source stream: the plain CsvStream for one file, else ``ManyFiles``
    (from the record the job resumes after)."""
    plan, settings = job.plan, job.settings
    if not is_many(plan):
        return extract.CsvStream(plan.files[0] if plan.files else plan.source, plan.dialect,
                                 block_size=settings.stream_high_water_mark,
                                 chunk_rows=chunk_rows, start_after=job.start_after,
                                 prefixes=job.prefixes)
    index, offset = resume_point(job.fingerprint["files"], job.start_after)
    return ManyFiles(plan.files, plan.dialects, block_size=settings.stream_high_water_mark,
                     chunk_rows=chunk_rows, index=index, offset=offset,
                     skip=job.start_after - offset)


def resume_point(files: list[dict], done: int) -> tuple[int, int]:
    """(the file record ``done + 1`` is in, the job's records before that file): the last
    file whose recorded start is at or before it. Files never started have no start;
    resuming then reads the last started file past its end and goes on from there."""
    index, offset = 0, 0
    for i, f in enumerate(files):
        start = f.get("first_record")
        if start is not None and start <= done + 1:
            index, offset = i, start - 1
    return index, offset


class ManyFiles:
    """The chunks of every file, in order, numbered through them all; a chunk never holds
    records of two files. Bytes read are counted over the files on disk."""

    def __init__(self, files: list[SourceFile], dialects: list[extract.Dialect], *,
                 block_size: int, chunk_rows: int, index: int = 0, offset: int = 0,
                 skip: int = 0):
        self.files, self.dialects = files, dialects
        self.block_size, self._chunk_rows = block_size, chunk_rows
        self.index, self.offset, self.skip = index, offset, skip
        self.size = sources.total_size(files)
        self._current: extract.CsvStream | None = None
        self.leftover: list[dict] = []

    @property
    def chunk_rows(self) -> int:
        return self._chunk_rows

    @chunk_rows.setter
    def chunk_rows(self, rows: int) -> None:   # the sampler's memory governor sets it
        self._chunk_rows = rows
        if self._current is not None:
            self._current.chunk_rows = rows

    def __iter__(self) -> Iterator[extract.Chunk]:
        offset, skip = self.offset, self.skip
        before = sum(f.size for f in self.files[: self.index])   # bytes on disk done
        events: list[dict] = []
        for f in self.files[self.index:]:
            stream = extract.CsvStream(f, self.dialects[f.index], block_size=self.block_size,
                                       chunk_rows=self._chunk_rows, start_after=skip,
                                       offset=offset)
            self._current = stream
            events.append({"index": f.index, "first_record": offset + 1})
            for chunk in stream:
                chunk.bytes_read += before
                chunk.files, events = events, []
                yield chunk
            records = stream.records_done()
            content = stream.content_proof() or _content_proof(f)
            events.append({"index": f.index, "records": records, "content_bytes": content[0],
                           "content_sha256": content[1]})
            before += f.size
            offset, skip = offset + records, 0
        self._current = None
        self.leftover = events      # the last files' ends: no chunk follows to carry them


def _content_proof(f: SourceFile, algorithm: str = hashes.PROOF) -> tuple[int, str]:
    """(bytes, hash) of the whole decompressed content, for a file the stream did not
    read to its end itself (a file of nothing but its header)."""
    h, n = hashes.new(algorithm), 0
    with sources.open_decompressed(f) as stream:
        while block := stream.read(4 << 20):
            h.update(block)
            n += len(block)
    return n, hashes.text(h, algorithm)


# -- resume ------------------------------------------------------------------------
def check_present(record: dict) -> list[str]:
    """The job's files (the ones it recorded, in their order), each still there.

    A file whose size or modification time changed is not refused here, unlike a source
    of one file: what matters is that the records resume skips are the ones loaded, and
    ``prove`` checks exactly that (each file wholly before the resume point by its whole
    content, the resume file by the head its batches were read from). So a truncated
    file replaced by a whole copy resumes; an edit of loaded records is refused."""
    out = []
    for f in files_of(record):
        path = Path(f["path"])
        if not path.is_file():
            raise UserError(f"{path}: a source file of job {record['id']} is gone; it cannot be "
                            f"resumed (roll it back with 'etlconsole rollback {record['id']}')")
        out.append(str(path))
    return out


def prove(job: Job, proof: dict | None, held_rows: dict[int, int]) -> None:
    """Resume skips the records the destinations hold: every file wholly before the one
    resume continues in must still hold exactly the content it was read with (its
    recorded whole-content hash), and the file of the furthest batch must still begin
    with the bytes that batch was read from (ADR 0017). For a compressed file the bytes
    are the decompressed ones: decompressing again and hashing proves the same text."""
    files = job.fingerprint["files"]
    if proof is None:
        return
    row_end = held_rows[proof["batch"]]
    index, _ = resume_point(files, row_end - 1)   # the file holding record row_end
    by_index = {f.index: f for f in job.plan.files}
    for i in range(index):
        entry = files[i]
        if entry.get("content_sha256") is None:
            continue       # a file without records: never started, nothing skipped in it
        try:
            recorded = (entry["content_bytes"], entry["content_sha256"])
            algorithm = hashes.algorithm_of(recorded[1])
            same = algorithm is not None and _content_proof(by_index[i], algorithm) == recorded
        except OSError:
            same = False
        if not same:
            raise _changed(job, entry["path"], "content")
    size, recorded = proof["source_bytes"], proof["source_sha256"]
    if not extract.same_prefix(by_index[index], size, recorded):
        raise _changed(job, files[index]["path"], f"first {size:,} bytes")


def _changed(job: Job, path: str, what: str) -> UserError:
    return UserError(
        f"{path}: its {what} changed since job {job.job_id} loaded records from it (same size "
        "and modification time, other content); resuming would mix two versions of the "
        f"file. Restore it, or roll the job back ('etlconsole rollback {job.job_id}') and "
        "run the pipeline again")


def estimate_rows(files: Sequence[SourceFile], dialect: extract.Dialect,
                  sample_bytes: int = 1 << 20) -> tuple[int, bool]:
    """Records in all the files (for ``when`` conditions), never exact: the first file's
    decompressed head gives records per byte on disk, scaled to the total size on disk."""
    f = files[0]
    stream, disk = sources.open_counted(f)
    with stream:
        head = stream.read(sample_bytes)
    cut = head.rfind(b"\n")
    lines = head[: cut + 1].count(b"\n") if cut >= 0 else 0
    records = max(0, lines - dialect.skip_lines - (1 if dialect.header else 0))
    if not head or disk.pos == 0:
        return 0, False
    whole = len(head) < sample_bytes
    per_byte = records / (f.size if whole else disk.pos)
    return int(per_byte * sources.total_size(files)), False
