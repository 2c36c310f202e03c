"""A job-wide "seen keys" index for the ``unique`` rule, kept in SQLite.

Why SQLite and not a Python set: a set of millions of keys costs tens of bytes per key
and grows with the file, breaking flat memory; an on-disk B-tree costs a few MB of page
cache whatever the size. Keys are tagged with the last source record of the chunk that introduced them so
a resumed job can forget keys of records that never committed (``forget_after``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc


class UniqueIndex:
    def __init__(self, path: Path | str = ":memory:"):
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")   # rebuilt from batches on resume
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (name TEXT, key, tag INTEGER,"
                         " PRIMARY KEY (name, key)) WITHOUT ROWID")

    def duplicates(self, name: str, keys: pa.Array, tag: int) -> pa.Array:
        """Mask of keys already seen (earlier in this array or in earlier calls); records the new ones."""
        n = len(keys)
        if n == 0:
            return pa.array([], pa.bool_())
        positions = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), 1)
        table = pa.table({"k": keys, "i": positions})
        firsts = table.group_by("k", use_threads=False).aggregate([("i", "min")]).column("i_min")
        repeated = pc.invert(pc.is_in(positions, firsts))
        valid = pc.is_valid(keys)
        candidates = pc.filter(keys, pc.and_(valid, pc.invert(repeated)))
        values = candidates.to_pylist()
        cur = self._db.cursor()
        cur.execute("BEGIN")
        # Insert-or-ignore tells us which keys were new; the rest were seen before.
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS incoming (key)")
        cur.execute("DELETE FROM incoming")
        cur.executemany("INSERT INTO incoming VALUES (?)", zip(values))
        seen_before = [r[0] for r in cur.execute(
            "SELECT key FROM incoming WHERE key IN (SELECT key FROM seen WHERE name = ?)", (name,))]
        cur.execute("INSERT OR IGNORE INTO seen SELECT ?, key, ? FROM incoming", (name, tag))
        cur.execute("COMMIT")
        old = pc.is_in(keys, pa.array(seen_before, keys.type)) if seen_before else pa.repeat(
            pa.scalar(False), n)
        return pc.and_(valid, pc.or_(repeated, old))

    def forget_after(self, record: int) -> None:
        self._db.execute("DELETE FROM seen WHERE tag > ?", (record,))

    def close(self) -> None:
        self._db.close()
