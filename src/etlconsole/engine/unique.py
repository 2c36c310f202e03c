"""A job-wide "seen keys" index for the ``unique`` rule, kept in SQLite.

Why SQLite and not a Python set: a set of millions of keys costs tens of bytes per key
and grows with the file, breaking flat memory; an on-disk B-tree costs a few MB of page
cache whatever the size. Each key is tagged with the source record that introduced it, so
a resumed job can forget exactly the keys of records that never committed
(``forget_after``) — a load batch may end in the middle of a chunk.
"""

from __future__ import annotations

import json
import hashlib
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc


class UniqueIndex:
    def __init__(self, path: Path | str = ":memory:"):
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        # WAL + FULL: a kill -9 or a power cut at any moment leaves the index intact, and
        # the keys of a chunk are durable before its batch commits (one fsync per chunk).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._tables: dict[str, str] = {}

    def _table(self, name: str, integer: bool) -> str:
        if name not in self._tables:
            # Same name, same table in every process: a resumed job finds its keys.
            table = "seen_" + hashlib.sha1(name.encode()).hexdigest()[:16]
            # Integer keys are the rowid itself (half the cost of looking them up again).
            key = "key INTEGER PRIMARY KEY, tag INTEGER)" if integer else \
                "key PRIMARY KEY, tag INTEGER) WITHOUT ROWID"
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({key}")
            self._tables[name] = table
        return self._tables[name]

    def duplicates(self, name: str, keys: pa.Array, rows: pa.Array) -> pa.Array:
        """Mask of keys seen before (earlier in this array or in earlier calls); records the
        new ones, each tagged with its record number from ``rows``."""
        if len(keys) == 0:
            return pa.array([], pa.bool_())
        values = keys if pa.types.is_integer(keys.type) or pa.types.is_floating(keys.type) \
            else pc.cast(keys, pa.string())
        integer = pa.types.is_integer(values.type)
        table = self._table(name, integer)
        # The keys cross into SQLite as one JSON parameter, parsed in C by json_each. A
        # key's tag is its record: the array is laid out one slot per record from the
        # first (null where a record has no key), so json_each's index gives it.
        first, spread = _by_record(values, rows)
        text = _json_array(spread)
        before = self._db.total_changes
        with self._db:
            if integer:
                top = self._db.execute(f"SELECT max(key) FROM {table}").fetchone()[0]
            self._db.execute(f"INSERT OR IGNORE INTO {table} SELECT value, ? + key "
                             "FROM json_each(?) WHERE type != 'null'", (first, text))
            if self._db.total_changes - before == len(values) - values.null_count:
                return pa.repeat(pa.scalar(False), len(keys))   # every key new: the usual case
            if integer:
                dups = self._integer_duplicates(table, spread, first, top)
                return pc.is_in(rows, pc.add(dups, first))
            # Some keys were ignored. A row is a duplicate exactly when the tag stored for
            # its key is not its own record (an earlier call's, or an earlier row's here);
            # only those records come back as Python objects.
            dups = [r[0] for r in self._db.execute(
                f"SELECT ? + j.key FROM json_each(?) j JOIN {table} t ON t.key = j.value "
                "WHERE j.type != 'null' AND t.tag != ? + j.key", (first, text, first))]
        return pc.is_in(rows, pa.array(dups, pa.int64()))

    def _integer_duplicates(self, table: str, spread: pa.Array, first: int, top: int | None) -> pa.Array:
        """Positions in ``spread`` holding a duplicate, for integer keys: repeats within the
        array (found by sorting, in Arrow) and keys an earlier call stored. Only keys up to
        the largest one stored before (``top``) can be the latter, and ids mostly grow, so
        SQLite is usually asked about a handful of keys, not the whole array."""
        order = pc.sort_indices(spread)                       # stable: first occurrence first
        ordered = spread.take(order)
        again = pc.fill_null(pc.equal(ordered.slice(1), ordered.slice(0, len(ordered) - 1)), False)
        repeats = pc.filter(order.slice(1), again)
        if top is None:
            return repeats.cast(pa.int64())
        suspects = pc.indices_nonzero(pc.fill_null(pc.less_equal(spread, top), False))
        found = [i for (i,) in self._db.execute(
            f"SELECT j.key FROM json_each(?) j JOIN {table} t ON t.key = j.value WHERE t.tag < ?",
            (_json_array(spread.take(suspects)), first))]
        earlier = suspects.take(pa.array(found, pa.int64()))
        return pa.concat_arrays([repeats.cast(pa.int64()), earlier.cast(pa.int64())])

    def forget_after(self, record: int) -> None:
        tables = [t for (t,) in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'seen%'")]
        for table in tables:
            self._db.execute(f"DELETE FROM {table} WHERE tag > ?", (record,))
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def _json_array(values: pa.Array) -> str:
    """The values as a JSON array. Integer keys (the usual ids) are written by Arrow in one
    pass; other types go through Python, which also escapes strings for JSON."""
    if not pa.types.is_integer(values.type):
        return json.dumps(values.to_pylist())
    text = pc.fill_null(pc.cast(values, pa.string()), "null")
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(text)], pa.int32()), text), ",")
    return "[" + joined[0].as_py() + "]"


def _by_record(values: pa.Array, rows: pa.Array) -> tuple[int, pa.Array]:
    """(first record, values laid out one slot per record from it, null in the gaps)."""
    rows = rows.cast(pa.int64())
    if len(rows) > 1 and not pc.all(pc.greater(rows[1:], rows[:-1])).as_py():
        order = pc.sort_indices(rows)             # a plugin phase reordered the rows
        rows, values = pc.take(rows, order), pc.take(values, order)
    first, last = rows[0].as_py(), rows[-1].as_py()
    if last - first + 1 == len(rows):
        return first, values                      # consecutive records: the usual case
    # A few gaps (records rejected earlier): runs of values with nulls between them.
    breaks = pc.indices_nonzero(pc.greater(pc.pairwise_diff(rows), 1)).to_pylist()
    pieces, start = [], 0
    for b in breaks:
        pieces.append(values.slice(start, b - start))
        pieces.append(pa.nulls(rows[b].as_py() - rows[b - 1].as_py() - 1, values.type))
        start = b
    pieces.append(values.slice(start))
    return first, pa.concat_arrays(pieces)
