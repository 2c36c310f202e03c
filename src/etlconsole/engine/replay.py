"""Replay a phase checkpoint: the Arrow IPC files a `checkpoint = true` phase wrote, one
per committed load batch, read back as Chunks so `rerun --from PHASE` runs only the
phases after it — without reading the source again."""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.ipc

from .extract import Chunk


class CheckpointStream:
    def __init__(self, folder: Path, batches: list[int], carried: list[dict], size: int,
                 sources: list[dict] | None = None):
        self.files = [folder / f"{n:08d}.arrows" for n in batches]
        # A job of many source files: each chunk says its file, so the rerun's batches
        # are cut at the files' ends too (ADR 0025).
        self.starts = [(f["first_record"], i) for i, f in enumerate(sources or [])
                       if f.get("first_record") is not None]
        # Rejects of the phases before the checkpoint travel with the chunk that covers them.
        self.carried = sorted(carried, key=lambda r: r["row"] or 0)
        self.rows = [r["row"] or 0 for r in self.carried]
        self.size = size
        self.chunk_rows = 0            # the runner may set it; replayed chunks keep their size

    def schema(self) -> pa.Schema:
        with pa.OSFile(str(self.files[0])) as f:
            return pa.ipc.open_stream(f).schema

    def __iter__(self) -> Iterator[Chunk]:
        for done, path in enumerate(self.files, start=1):
            with pa.OSFile(str(path)) as f:
                reader = pa.ipc.open_stream(f)
                while True:
                    try:
                        batch, meta = reader.read_next_batch_with_custom_metadata()
                    except StopIteration:
                        break
                    first, last = int(meta[b"first_row"]), int(meta[b"last_row"])
                    lo = bisect.bisect_left(self.rows, first)
                    hi = bisect.bisect_right(self.rows, last)
                    carried = self.carried[lo:hi]
                    if first == 1:                # rejects without a record number
                        carried = [r for r in self.carried if not r["row"]] + carried
                    yield Chunk(batch, [], first, last, self.size * done // len(self.files),
                                carried=carried, file=self._file_of(first))

    def _file_of(self, record: int) -> int:
        at = bisect.bisect_right(self.starts, (record, len(self.starts)))
        return self.starts[at - 1][1] if at else 0
