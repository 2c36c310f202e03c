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

from ..extract import Chunk
from ..line import Blamed, Work
from ..phases.base import Rejects

MAGIC = "etlconsole-spill-1"


def _ipc(batch: pa.RecordBatch) -> pa.Buffer:
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


class SpillWriter:
    """Frames of one part's pre-pass, then its trailer (``close``), renamed into place."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.f: BinaryIO = self.tmp.open("wb")
        pickle.dump(MAGIC, self.f, protocol=5)

    def add(self, work: Work) -> None:
        chunk = work.chunk
        # The chunk's own batch is what entered the chain: the load pass never reads it.
        meta = dataclasses.replace(chunk, batch=None, rejects=[], carried=[])
        frame = {"chunk": meta, "chunk_rejects": _pack_rejects(chunk.rejects),
                 "carried": chunk.carried, "batch": _ipc(work.batch),
                 "rejects": [(_pack_rejects([r])[0], phase, label) for r, phase, label in work.rejects],
                 "warnings": work.warnings}
        pickle.dump(("work", frame), self.f, protocol=5)

    def close(self, trailer: dict[str, Any]) -> None:
        pickle.dump(("end", trailer), self.f, protocol=5)
        self.f.close()
        os.replace(self.tmp, self.path)

    def abandon(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)


class Spill:
    """A whole spill: a file at its final name is whole (it is renamed there after its
    trailer). ``works()`` streams its chunks as the validate phase left them; the trailer
    (the pre-pass's figures) is read at the end."""

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
            while True:
                kind, frame = pickle.load(f)
                if kind == "end":
                    self.trailer = frame
                    return
                yield _work(frame)


def _work(frame: dict) -> Work:
    batch = _batch(frame["batch"])
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
    need = sum(f.size * (COMPRESSED_RATIO if f.compression else PLAIN_RATIO) for f in files)
    try:
        free = shutil.disk_usage(workspace).free
    except OSError:
        return False
    return need <= free / 2
