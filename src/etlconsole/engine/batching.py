"""Load batches: how big they are (an AIMD controller) and where they are cut.

A load batch is one destination transaction. It covers a contiguous range of source
records — its loaded rows and its rejects — so the resume position is always "after the
last committed record", whatever the batch sizes were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from .phases.base import ROW, Rejects


# A rejected record, as the dict the state store is given (its values as JSON, its rule
# and message), takes about this many times the memory of a row in an Arrow batch: a
# batch is full at ``size`` good rows or ``size // REJECT_WEIGHT`` rejects. Measured on
# the sample orders: ~750 bytes per reject record against ~170 per Arrow row.
REJECT_WEIGHT = 8


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
    outputs: list = field(default_factory=list)     # per target: (batch, data, rejects)
    proof: tuple[int, str] | None = None            # the source's head holding these records

    @property
    def rows(self) -> int:
        return self.batch.num_rows


class Pending:
    """What the phases produced and no batch has taken yet.

    ``take(n)`` cuts a batch of exactly ``n`` good rows with every reject and checkpoint
    row up to the last of them; ``take_through(record)`` cuts at a given record;
    ``flush()`` takes everything up to the last record read.
    """

    def __init__(self, row_start: int, schema: pa.Schema):
        self.row_start = row_start       # first record not yet in a batch
        self.schema = schema
        self.parts: list[pa.RecordBatch] = []
        self.rejects: list[dict] = []
        # Rejected rows still in Arrow, with the phase (type, label) that rejected them:
        # made the store's records only when a batch takes them (a record, a dict with
        # the row's values as JSON, takes ~4 times the memory of the row in Arrow).
        self.blamed: list[tuple[Rejects, str, str | None]] = []
        self.snapshots: dict[int, list[pa.RecordBatch]] = {}
        self.snapshot_schemas: dict[int, pa.Schema] = {}
        self.rows = 0
        self.last_row = row_start - 1    # last record read
        self.bytes_read = 0
        self.proof: tuple[int, str] | None = None

    def add(self, good: pa.RecordBatch, rejects: list[dict], snapshots: dict,
            last_row: int, bytes_read: int,
            blamed: Sequence[tuple[Rejects, str, str | None]] = (),
            proof: tuple[int, str] | None = None) -> None:
        """``rejects``: records (a rerun's carried ones); ``blamed``: rejected rows in
        Arrow, turned into records by the batch that takes them."""
        if good.num_rows:
            self.parts.append(good)
            self.rows += good.num_rows
        self.rejects += rejects
        self.blamed += [b for b in blamed if len(b[0])]
        for index, snap in snapshots.items():
            self.snapshots.setdefault(index, []).append(snap)
            self.snapshot_schemas[index] = snap.schema
        self.last_row, self.bytes_read, self.proof = last_row, bytes_read, proof

    @property
    def empty(self) -> bool:
        return self.last_row < self.row_start

    def take_next(self, size: int, number: int) -> LoadItem | None:
        """The next batch, once one is full: ``size`` good rows, or ``size // REJECT_WEIGHT``
        rejected records, whichever the file reaches first (None while neither is reached).

        Counting rejects too keeps memory flat where most rows are rejected (a file whose
        unique keys repeat): cut by good rows alone, a stretch of rejected rows piled up
        here — every reject record of it — until enough good rows came. Both ends depend
        only on the records, not on how they were chunked, so a batch holds the same
        records whatever the chunk sizes were."""
        through = self._reject_boundary(max(1, size // REJECT_WEIGHT))
        if self.rows >= size:
            table = self._table()
            last_good = table.column(ROW)[size - 1].as_py()
            if through is None or last_good <= through:
                return self._cut(table, size, last_good, number)
        if through is None:
            return None
        return self.take_through(through, number)

    def _reject_boundary(self, n: int) -> int | None:
        """The record of the n-th rejected record not yet in a batch, if there are n."""
        if len(self.rejects) + sum(len(r) for r, _, _ in self.blamed) < n:
            return None
        rows = pc.unique(pa.chunked_array(
            [pa.array([r["row"] for r in self.rejects], pa.int64())]
            + [r.rows.column(ROW).cast(pa.int64()) for r, _, _ in self.blamed], pa.int64()).drop_null())
        if len(rows) < n:
            return None
        return rows.take(pc.array_sort_indices(rows))[n - 1].as_py()

    def take(self, n: int, number: int) -> LoadItem:
        """A batch of exactly ``n`` good rows, through the record of the last of them."""
        table = self._table()
        return self._cut(table, n, table.column(ROW)[n - 1].as_py(), number)

    def take_through(self, record: int, number: int) -> LoadItem:
        """A batch of everything up to source record ``record`` (a resume cutting a batch
        again exactly where a destination's ledger says it ended)."""
        table = self._table()
        return self._cut(table, pc.sum(pc.less_equal(table.column(ROW), record)).as_py() or 0,
                         record, number)

    def flush(self, number: int) -> LoadItem:
        """Everything up to the last record read."""
        table = self._table()
        return self._cut(table, table.num_rows, self.last_row, number)

    def _table(self) -> pa.Table:
        return pa.Table.from_batches(self.parts, schema=self.schema)

    def _cut(self, table: pa.Table, n: int, through: int, number: int) -> LoadItem:
        """The first ``n`` good rows (rows are in record order) with every reject and
        checkpoint row up to record ``through``."""
        mine = [r for r in self.rejects if r["row"] is None or r["row"] <= through]
        self.rejects = [r for r in self.rejects if r["row"] is not None and r["row"] > through]
        later = []
        for rejects, phase, label in self.blamed:
            head, tail = _split_rejects(rejects, through)
            if head is not None:
                mine += head.records(phase, label)
            if tail is not None:
                later.append((tail, phase, label))
        self.blamed = later
        snaps = {}
        for index, parts in self.snapshots.items():
            snaps[index], self.snapshots[index] = _split_rows(parts, through)
        item = LoadItem(number, _one_batch(table.slice(0, n), self.schema), mine, self.row_start,
                        through, self.bytes_read, self._framed(snaps, through), proof=self.proof)
        self.parts = table.slice(n).to_batches()
        self.rows -= n
        self.row_start = through + 1
        return item

    def _framed(self, snaps: dict, last: int) -> dict:
        """One snapshot per checkpointed phase covering exactly the batch's records — even
        when no row survived, so a replay still finds the range (and its rejects)."""
        return {i: [(_one_batch(pa.Table.from_batches(parts, schema=self.snapshot_schemas[i]),
                                self.snapshot_schemas[i]), self.row_start, last)]
                for i, parts in snaps.items()}


def _split_rejects(rejects: Rejects, through: int) -> tuple[Rejects | None, Rejects | None]:
    """Rejected rows up to record ``through`` (and those without a number), and the rest."""
    mask = pc.fill_null(pc.less_equal(rejects.rows.column(ROW), through), True)
    first = pc.sum(mask).as_py() or 0
    if first == len(rejects):
        return rejects, None
    if first == 0:
        return None, rejects
    flags = mask.to_pylist()

    def part(keep: bool) -> Rejects:
        pick = [i for i, f in enumerate(flags) if f is keep]
        return Rejects(rejects.rows.filter(mask if keep else pc.invert(mask)),
                       [rejects.rule[i] for i in pick], [rejects.column[i] for i in pick],
                       [rejects.message[i] for i in pick])
    return part(True), part(False)


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
