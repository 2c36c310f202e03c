"""A part's pre-pass output on the worker's disk, so its load pass does not read, clean and
validate the file a second time (ADR 0028).

The unique rule's pre-pass (``keys.part_keys``) runs a part's chain up to and including
the validate phase holding the rule; what leaves that phase — the surviving rows, every
reject so far, the chunk's record range — is written here, one frame per chunk, and the
load pass (``parts.run_part``) streams it back instead of the CSV. A spill is written
under a temporary name and renamed into place with its trailer last, so a reader finds a
whole spill or none; a load task that finds none runs from the file as before (a worker
on another machine, a spill deleted after a load whose result was then lost).

Arrow data crosses as IPC streams, not pickles: pickling a sliced batch serializes its
whole parent buffer (pyarrow 26), and extract's rejects are slices.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from .. import types
from ..extract import Chunk
from ..line import Blamed, Work
from ..phases.base import Rejects

MAGIC = "etlconsole-spill-1"


def _ipc(batch: pa.RecordBatch) -> pa.Buffer:
    """A (small) batch as IPC bytes: rejects."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def _batch(buf: pa.Buffer) -> pa.RecordBatch:
    return pa.ipc.open_stream(buf).read_next_batch()


def _pack_rejects(rejects: list[Rejects]) -> list[tuple]:
    return [(_ipc(r.rows), r.rule, r.column, r.message) for r in rejects]


def _unpack_rejects(packed: list[tuple]) -> list[Rejects]:
    return [Rejects(_batch(rows), rule, column, message) for rows, rule, column, message in packed]


TYPED = "\x00typed\x00"     # a typed column riding along with the survivors (see add)


class SpillWriter:
    """One part's pre-pass: the survivors as one Arrow IPC stream (``PATH.arrow``, written
    straight to the file: no copy), and frames of the rest (``PATH``: each chunk's record
    range and rejects, then the trailer). Both are renamed into place on ``close``, the
    frames last: a spill is whole where ``PATH`` exists."""

    def __init__(self, path: Path, typed: list[tuple[str, str, Any]]):
        self.path, self.typed = path, typed
        path.parent.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:8]
        self.tmp = path.with_name(f"{path.name}.{tag}.tmp")
        self.tmp_data = path.with_name(f"{path.name}.arrow.{tag}.tmp")
        self.f: BinaryIO = self.tmp.open("wb")
        pickle.dump(MAGIC, self.f, protocol=5)
        self.sink = pa.OSFile(str(self.tmp_data), "wb")
        self.data: pa.ipc.RecordBatchStreamWriter | None = None

    def add(self, work: Work) -> None:
        chunk = work.chunk
        batch = work.batch
        # The validate phase parsed its typed columns and told the parser (types.remember),
        # so a later cast of them is free; the load pass would parse them again. They
        # ride along as extra columns and are remembered again when read (types.parse
        # gives them back from the memo here, unless it has moved on).
        for i, (name, type_, formats) in enumerate(self.typed):
            batch = batch.append_column(f"{TYPED}{i}", types.parse(batch.column(name), type_, formats)[0])
        if self.data is None:
            self.data = pa.ipc.new_stream(self.sink, batch.schema)
        self.data.write_batch(batch)
        # The chunk's own batch is what entered the chain: the load pass never reads it.
        meta = dataclasses.replace(chunk, batch=None, rejects=[], carried=[])
        frame = {"chunk": meta, "chunk_rejects": _pack_rejects(chunk.rejects),
                 "carried": chunk.carried,
                 "rejects": [(_pack_rejects([r])[0], phase, label) for r, phase, label in work.rejects],
                 "warnings": work.warnings, "typed": self.typed}
        pickle.dump(("work", frame), self.f, protocol=5)

    def close(self, trailer: dict[str, Any]) -> None:
        if self.data is not None:
            self.data.close()
        self.sink.close()
        pickle.dump(("end", trailer), self.f, protocol=5)
        self.f.close()
        os.replace(self.tmp_data, _data(self.path))
        os.replace(self.tmp, self.path)

    def abandon(self) -> None:
        self.f.close()
        self.sink.close()
        self.tmp.unlink(missing_ok=True)
        self.tmp_data.unlink(missing_ok=True)


def _data(path: Path) -> Path:
    return path.with_name(path.name + ".arrow")


class Spill:
    """A whole spill: its frames are at their final name only once both files are whole
    (renamed there last). ``works()`` streams its chunks as the validate phase left them;
    the trailer (the pre-pass's figures) is read at the end."""

    def __init__(self, path: Path):
        self.path = path
        self.trailer: dict[str, Any] | None = None

    @classmethod
    def open(cls, path: Path | None) -> Spill | None:
        """The spill at ``path``, or None when there is none there."""
        if path is None or not path.is_file():
            return None
        return cls(path)

    def works(self) -> Iterator[Work]:
        with self.path.open("rb") as f:
            if pickle.load(f) != MAGIC:
                raise ValueError(f"{self.path}: not a spill of this version")
            # Mapped, not read: the batches point into the page cache (no copy).
            data = None
            try:
                while True:
                    kind, frame = pickle.load(f)
                    if kind == "end":
                        self.trailer = frame
                        return
                    if data is None:
                        data = pa.ipc.open_stream(pa.memory_map(str(_data(self.path))))
                    yield _work(frame, data.read_next_batch())
            finally:
                del data

    def remove(self) -> None:
        _data(self.path).unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)


def _work(frame: dict, batch: pa.RecordBatch) -> Work:
    typed = [i for i, name in enumerate(batch.schema.names) if name.startswith(TYPED)]
    if typed:
        plain = batch.select([i for i in range(batch.num_columns) if i not in typed])
        for i in typed:
            name, type_, formats = frame["typed"][int(batch.schema.names[i][len(TYPED):])]
            types.remember(plain.column(name), type_, formats, batch.column(i))
        batch = plain
    chunk: Chunk = dataclasses.replace(frame["chunk"], batch=batch,
                                       rejects=_unpack_rejects(frame["chunk_rejects"]),
                                       carried=frame["carried"])
    rejects: list[Blamed] = [(_unpack_rejects([packed])[0], phase, label)
                             for packed, phase, label in frame["rejects"]]
    return Work(chunk, batch, rejects, warnings=frame["warnings"])


# What a part's spill takes on disk for each byte of its file: Arrow strings of the
# survivors (a 4-byte offset per value on top of the text), measured ~1.2x for the sample
# drop's CSV; a compressed file's ratio is unknown until read, so a generous one.
PLAIN_RATIO, COMPRESSED_RATIO = 1.5, 10.0


def spill_fits(workspace: Path, files: list[Any]) -> bool:
    """Whether the parts' spills, all on disk at once at worst (the loads wait for every
    pre-pass), fit in half the free space of the job's workspace; if not, the load passes
    read their files again (ADR 0028)."""
    need = sum(f.span * (COMPRESSED_RATIO if f.compression else PLAIN_RATIO) for f in files)
    try:
        free = shutil.disk_usage(workspace).free
    except OSError:
        return False
    return need <= free / 2
