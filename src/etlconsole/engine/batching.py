"""Load batches: how big they are (an AIMD controller) and where they are cut.

A load batch is one destination transaction. It covers a contiguous range of source
records — its loaded rows and its rejects — so the resume position is always "after the
last committed record", whatever the batch sizes were.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from .phases.base import ROW


class BatchSizer:
    """Additive increase, multiplicative decrease, between ``low`` and ``high`` rows.

    It starts small (a first batch that fails or commits slowly costs little), grows by an
    eighth of the range after every comfortable commit, and halves on a retry, a row the
    database refused, a commit slower than ``slow_s`` or memory pressure. TCP's congestion
    control has the same problem — find the largest safe size without knowing it — and the
    same answer.
    """

    def __init__(self, low: int, high: int, *, slow_s: float):
        self.low, self.high, self.slow_s = low, high, slow_s
        self.step = max(1, -(-(high - low) // 8))     # eight comfortable commits to the top
        self.size = low
        self.shrinks = 0

    def committed(self, seconds: float, *, retried: bool = False, refused_rows: int = 0) -> None:
        if retried or refused_rows or seconds > self.slow_s:
            self.shrink()
        else:
            self.size = min(self.high, self.size + self.step)

    def shrink(self) -> None:
        self.size = max(self.low, self.size // 2)
        self.shrinks += 1


@dataclass
class LoadItem:
    """One load batch, cut from the phases' output. ``batch`` keeps the ``_etl_row``
    column (record numbers) until the loader, so a row the database refuses is traced."""

    number: int
    batch: pa.RecordBatch
    rejects: list[dict]
    row_start: int
    row_end: int
    bytes_read: int
    snapshots: dict = field(default_factory=dict)   # phase index -> [(batch, first, last)]

    @property
    def rows(self) -> int:
        return self.batch.num_rows


class Pending:
    """What the phases produced and no batch has taken yet.

    ``take(n)`` cuts a batch of exactly ``n`` good rows with every reject and checkpoint
    row up to the last of them; ``flush()`` takes everything up to the last record read.
    """

    def __init__(self, row_start: int, schema: pa.Schema):
        self.row_start = row_start       # first record not yet in a batch
        self.schema = schema
        self.parts: list[pa.RecordBatch] = []
        self.rejects: list[dict] = []
        self.snapshots: dict[int, list[pa.RecordBatch]] = {}
        self.snapshot_schemas: dict[int, pa.Schema] = {}
        self.rows = 0
        self.last_row = row_start - 1    # last record read
        self.bytes_read = 0

    def add(self, good: pa.RecordBatch, rejects: list[dict], snapshots: dict,
            last_row: int, bytes_read: int) -> None:
        if good.num_rows:
            self.parts.append(good)
            self.rows += good.num_rows
        self.rejects += rejects
        for index, snap in snapshots.items():
            self.snapshots.setdefault(index, []).append(snap)
            self.snapshot_schemas[index] = snap.schema
        self.last_row, self.bytes_read = last_row, bytes_read

    @property
    def empty(self) -> bool:
        return self.last_row < self.row_start

    def take(self, n: int, number: int) -> LoadItem:
        table = pa.Table.from_batches(self.parts, schema=self.schema)
        head, tail = table.slice(0, n), table.slice(n)
        boundary = head.column(ROW)[-1].as_py()
        mine = [r for r in self.rejects if r["row"] is None or r["row"] <= boundary]
        self.rejects = [r for r in self.rejects if r["row"] is not None and r["row"] > boundary]
        snaps = {}
        for index, parts in self.snapshots.items():
            snaps[index], self.snapshots[index] = _split_rows(parts, boundary)
        item = LoadItem(number, _one_batch(head, self.schema), mine, self.row_start, boundary,
                        self.bytes_read, self._framed(snaps, boundary))
        self.parts = tail.to_batches()
        self.rows -= n
        self.row_start = boundary + 1
        return item

    def take_through(self, record: int, number: int) -> LoadItem:
        """A batch of everything up to source record ``record`` (a resume cutting a batch
        again exactly where a destination's ledger says it ended)."""
        rows = self.parts and pa.Table.from_batches(self.parts, schema=self.schema).column(ROW)
        n = pc.sum(pc.less_equal(rows, record)).as_py() if self.rows else 0
        if n == 0:          # no good row in the range: only rejects (or nothing)
            item = LoadItem(number, _one_batch(pa.Table.from_batches([], schema=self.schema),
                                               self.schema), [], self.row_start, record,
                            self.bytes_read)
            item.rejects = [r for r in self.rejects if r["row"] is None or r["row"] <= record]
            self.rejects = [r for r in self.rejects if r["row"] is not None and r["row"] > record]
            snaps = {}
            for index, parts in self.snapshots.items():
                snaps[index], self.snapshots[index] = _split_rows(parts, record)
            item.snapshots = self._framed(snaps, record)
            self.row_start = record + 1
            return item
        item = self.take(n, number)
        # take() ends at the last good row; the batch ends at the ledger's record
        more = [r for r in self.rejects if r["row"] is not None and r["row"] <= record]
        item.rejects += more
        self.rejects = [r for r in self.rejects if r not in more]
        for index, parts in self.snapshots.items():
            extra, self.snapshots[index] = _split_rows(parts, record)
            if index in item.snapshots and any(b.num_rows for b in extra):
                batch, first, _ = item.snapshots[index][0]
                merged = pa.Table.from_batches([batch, *extra]).combine_chunks().to_batches()
                item.snapshots[index] = [(merged[0] if merged else batch, first, record)]
        item.snapshots = {i: [(b, f, record) for b, f, _ in v] for i, v in item.snapshots.items()}
        item.row_end = record
        self.row_start = record + 1
        return item

    def flush(self, number: int) -> LoadItem:
        table = pa.Table.from_batches(self.parts, schema=self.schema)
        item = LoadItem(number, _one_batch(table, self.schema), self.rejects, self.row_start,
                        self.last_row, self.bytes_read, self._framed(self.snapshots, self.last_row))
        self.parts, self.rejects, self.snapshots, self.rows = [], [], {}, 0
        self.row_start = self.last_row + 1
        return item

    def _framed(self, snaps: dict, last: int) -> dict:
        """One snapshot per checkpointed phase covering exactly the batch's records — even
        when no row survived, so a replay still finds the range (and its rejects)."""
        return {i: [(_one_batch(pa.Table.from_batches(parts, schema=self.snapshot_schemas[i]),
                                self.snapshot_schemas[i]), self.row_start, last)]
                for i, parts in snaps.items()}


def _one_batch(table: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    if table.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=schema)
    return table.combine_chunks().to_batches()[0]


def _split_rows(parts: list[pa.RecordBatch], boundary: int):
    """Batches' rows up to record ``boundary``, and the rest."""
    head, tail = [], []
    for batch in parts:
        upto = pc.less_equal(batch.column(ROW), boundary)
        head.append(batch.filter(upto))
        rest = batch.filter(pc.invert(upto))
        if rest.num_rows:
            tail.append(rest)
    return head, tail
