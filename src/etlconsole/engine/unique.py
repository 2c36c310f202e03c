"""A job-wide "seen keys" index for the ``unique`` rule, kept in SQLite.

Why SQLite and not a Python set: a set of millions of keys costs tens of bytes per key
and grows with the file, breaking flat memory; an on-disk B-tree costs a few MB of page
cache whatever the size. Each key is tagged with the source record that introduced it, so
a resumed job can forget exactly the keys of records that never committed
(``forget_after``) — a load batch may end in the middle of a chunk.

Integer keys are stored as runs: keys ``lo..hi`` introduced by records ``tag..tag+hi-lo``.
Ids in a CSV mostly count up with the records, so a million keys are a few thousand runs
(one per gap) instead of a million B-tree rows, which cost more than every other rule
together; keys in no order are runs of one, as before.
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
            digest = hashlib.sha1(name.encode()).hexdigest()[:16]
            seen = "seen_" + digest
            if not integer:
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {seen} (key PRIMARY KEY, tag INTEGER) "
                                 "WITHOUT ROWID")
                self._tables[name] = seen
                return seen
            table = "runs_" + digest
            with self._db:
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} (lo INTEGER PRIMARY KEY, "
                                 "hi INTEGER NOT NULL, tag INTEGER NOT NULL)")
                # A job begun by a version that kept one row per integer key: its keys
                # become runs of one.
                if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (seen,)).fetchone():
                    self._db.execute(f"INSERT INTO {table} SELECT key, key, tag FROM {seen}")
                    self._db.execute(f"DROP TABLE {seen}")
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
        if integer:
            with self._db:
                dups = self._runs(table, spread, first)
            return pc.is_in(rows, pc.add(dups, first))
        text = _json_array(spread)
        before = self._db.total_changes
        with self._db:
            self._db.execute(f"INSERT OR IGNORE INTO {table} SELECT value, ? + key "
                             "FROM json_each(?) WHERE type != 'null'", (first, text))
            if self._db.total_changes - before == len(values) - values.null_count:
                return pa.repeat(pa.scalar(False), len(keys))   # every key new: the usual case
            # Some keys were ignored. A row is a duplicate exactly when the tag stored for
            # its key is not its own record (an earlier call's, or an earlier row's here);
            # only those records come back as Python objects.
            dups = [r[0] for r in self._db.execute(
                f"SELECT ? + j.key FROM json_each(?) j JOIN {table} t ON t.key = j.value "
                "WHERE j.type != 'null' AND t.tag != ? + j.key", (first, text, first))]
        return pc.is_in(rows, pa.array(dups, pa.int64()))

    def _runs(self, table: str, spread: pa.Array, first: int) -> pa.Array:
        """Positions in ``spread`` holding a duplicate integer key, a repeat within the
        array (found by sorting, in Arrow) or a key of an earlier call (only keys up to the
        largest stored can be, and ids mostly grow, so SQLite is usually asked about a
        handful); the new keys are stored as runs."""
        order = pc.sort_indices(spread)               # stable: first occurrence first, nulls last
        ordered = spread.take(order)
        n = len(ordered)
        repeat = pa.concat_arrays([pa.array([False]), pc.fill_null(
            pc.equal(ordered.slice(1), ordered.slice(0, n - 1)), False)]) if n else pa.array([], pa.bool_())
        dup = repeat
        last = self._db.execute(f"SELECT hi FROM {table} ORDER BY lo DESC LIMIT 1").fetchone()
        if last is not None:
            suspects = ordered.filter(pc.fill_null(pc.less_equal(ordered, last[0]), False))
            found = [v for (v,) in self._db.execute(
                f"SELECT j.value FROM json_each(?) j WHERE (SELECT r.hi FROM {table} r WHERE "
                "r.lo <= j.value ORDER BY r.lo DESC LIMIT 1) >= j.value", (_json_array(suspects),))]
            if found:      # every occurrence of a key stored before is a duplicate
                dup = pc.or_(dup, pc.is_in(ordered, pa.array(found, ordered.type)))
        new = pc.and_(pc.is_valid(ordered), pc.invert(dup))
        keys, tags = ordered.filter(new), pc.add(order.filter(new).cast(pa.int64()), first)
        if len(keys):
            # A run starts where the key or the record does not follow the one before.
            breaks = pc.or_(pc.not_equal(pc.pairwise_diff(keys), 1), pc.not_equal(pc.pairwise_diff(tags), 1))
            starts = pc.indices_nonzero(pc.fill_null(breaks, True)).cast(pa.int64())
            ends = pa.concat_arrays([pc.subtract(starts.slice(1), 1), pa.array([len(keys) - 1], pa.int64())])
            runs = pc.binary_join_element_wise(*(pc.cast(a, pa.string()) for a in (
                keys.take(starts), keys.take(ends), tags.take(starts))), ",")
            self._db.execute(f"INSERT INTO {table} (lo, hi, tag) SELECT json_extract(value, '$[0]'), "
                             "json_extract(value, '$[1]'), json_extract(value, '$[2]') FROM json_each(?)",
                             ("[[" + _joined(runs, "],[") + "]]",))
        return order.filter(dup).cast(pa.int64())

    def forget_after(self, record: int) -> None:
        names = [t for (t,) in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND "
            "(name LIKE 'seen%' OR name LIKE 'runs%')")]
        for table in names:
            self._db.execute(f"DELETE FROM {table} WHERE tag > ?", (record,))
            if table.startswith("runs"):      # a run that goes past the record is cut there
                self._db.execute(f"UPDATE {table} SET hi = lo + (? - tag) WHERE tag + (hi - lo) > ?",
                                 (record, record))
        self._db.commit()

    def forget_records(self, records: list[int]) -> None:
        """Forget the keys tagged with these records (a replay's records: their rows are not
        in the destination, whatever an earlier attempt recorded). Runs that hold one are
        cut around it."""
        if not records:
            return
        names = [t for (t,) in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND "
            "(name LIKE 'seen%' OR name LIKE 'runs%')")]
        with self._db:
            for table in names:
                if table.startswith("seen"):
                    self._db.executemany(f"DELETE FROM {table} WHERE tag = ?", [(r,) for r in records])
                    continue
                for r in records:
                    hit = self._db.execute(f"SELECT lo, hi, tag FROM {table} WHERE tag <= ? AND "
                                           "tag + (hi - lo) >= ?", (r, r)).fetchone()
                    if hit is None:
                        continue
                    lo, hi, tag = hit
                    key = lo + (r - tag)
                    self._db.execute(f"DELETE FROM {table} WHERE lo = ?", (lo,))
                    if key > lo:
                        self._db.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", (lo, key - 1, tag))
                    if key < hi:
                        self._db.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", (key + 1, hi, r + 1))

    def close(self) -> None:
        self._db.close()


def _json_array(values: pa.Array) -> str:
    """The values as a JSON array. Integer keys (the usual ids) are written by Arrow in one
    pass; other types go through Python, which also escapes strings for JSON."""
    if not pa.types.is_integer(values.type):
        return json.dumps(values.to_pylist())
    return "[" + _joined(pc.fill_null(pc.cast(values, pa.string()), "null"), ",") + "]"


def _joined(text: pa.Array, separator: str) -> str:
    """The strings joined into one, by Arrow."""
    whole = pa.ListArray.from_arrays(pa.array([0, len(text)], pa.int32()), text)
    return pc.binary_join(whole, separator)[0].as_py()


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
