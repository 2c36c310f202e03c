"""The ``unique`` rule across parts (ADR 0026): a key pre-pass per part, a tree reduce of
their keys, and the keys held by more than one part seeded into the load tasks' indexes.

A local run of the files rejects a key at every occurrence after the first one that passed
the validate phase's other rules, in file order. Here each part's pre-pass returns the keys
a local run of its file alone would register (the survivors of the validate phase); the
merge finds, for each key, its first part and how many parts hold it; a load task of part
``k`` starts with the keys an earlier part owns already in its index, so the rule rejects
their rows there exactly as the local run does (same rule, same message).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import types
from ..governor import use_lean_allocator
from ..job import JobContext
from ..line import PhaseLine
from ..plan import Plan
from ..unique import UniqueIndex
from .parts import PartTask, plan_part, stats_for, stream_of


def unique_rule(plan: Plan) -> tuple[int, int, Any] | None:
    """(phase position, rule index, rule) of the pipeline's unique rule, if any. The Dask
    executor handles one (the driver refuses more before anything is written)."""
    for pos, p in enumerate(plan.phases):
        for i, rule in enumerate(getattr(p.phase, "rules", None) or []):
            if p.type == "validate" and rule.unique:
                return pos, i, rule
    return None


def part_keys(task: PartTask) -> pa.Table:
    """The keys this part's unique rule registers, as a local run of this file alone
    would: the chain up to the validate phase holding the rule, its survivors' typed keys
    (first occurrences in the file; rows failing another rule register nothing). Columns
    ``key``, ``part``, ``count`` (1): the input of ``merge_keys``."""
    use_lean_allocator()
    plan = plan_part(task)
    found = unique_rule(plan)
    assert found is not None
    pos, _, rule = found
    phases = plan.phases[:pos + 1]
    stats, clocks = stats_for(phases)
    scratch = Path(tempfile.mkdtemp(prefix=f"keys-{task.part}-", dir=task.workspace))
    ctx = JobContext(task.job_id, scratch, task.settings)
    # The validate phase is not attached: its unique index stays in memory (the pre-pass
    # is never resumed, and the on-disk index fsyncs every chunk, for resume's sake).
    for p in phases[:-1]:
        p.phase.attach(ctx)
    keys: list[pa.Array] = []
    line = PhaseLine(phases, stats, clocks, scratch).run(stream_of(task, plan))
    try:
        for work in line:
            keys.append(_typed(work.batch.column(rule.column), rule).drop_null())
    finally:
        line.close()
        for p in phases:
            p.phase.teardown()
        shutil.rmtree(scratch, ignore_errors=True)
    kind = keys[0].type if keys else pa.string()
    column = pa.concat_arrays([k.cast(kind) for k in keys]) if keys else pa.array([], kind)
    return pa.table({"key": column, "part": pa.repeat(pa.scalar(task.part, pa.int32()), len(column)),
                     "count": pa.repeat(pa.scalar(1, pa.int32()), len(column))})


def _typed(col: pa.Array, rule: Any) -> pa.Array:
    """The key as the unique index compares it: parsed when the rule has a type."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return types.parse(col, rule.type, rule.formats)[0] if rule.type else col


def merge_keys(a: pa.Table, b: pa.Table) -> pa.Table:
    """One node of the tree reduce: each key once, with its first part and how many parts
    hold it (a part holds a key once: its survivors are first occurrences)."""
    # combine_chunks copies the two inputs into new (aligned) buffers: tables unpickled
    # from another worker sit in unaligned ones, which Acero's group_by warns about.
    both = pa.concat_tables([a, b], promote_options="permissive").combine_chunks()
    out = both.group_by("key").aggregate([("part", "min"), ("count", "sum")])
    # one chunk per column: group_by hands back a chunk per thread, and Dask sizes a
    # table of many chunks at several times its bytes (a merge then "needs" more memory
    # than a worker has)
    return pa.table({"key": out["key"], "part": out["part_min"].cast(pa.int32()),
                     "count": out["count_sum"].cast(pa.int32())}).combine_chunks()


def cross_part(keys: pa.Table) -> pa.Table:
    """The keys held by more than one part, with their first owner: all the second pass
    needs (the keys of one part alone never leave it)."""
    dup = keys.filter(pc.greater(keys["count"], 1))
    return dup.select(["key", "part"])


def seed_unique(plan: Plan, ws: Path, duplicates: pa.Table, part: int) -> None:
    """Put the keys earlier parts introduced into this part's unique index before its
    first record, tagged below record 1 (never forgotten): the rule then rejects their
    rows here exactly as a local run would, with the same message."""
    found = unique_rule(plan)
    if found is None:
        return
    _, i, rule = found
    keys = duplicates.filter(pc.less(duplicates["part"], part))["key"].combine_chunks()
    if not len(keys):
        return
    index = UniqueIndex(ws / "unique.db")
    try:
        n = len(keys)
        index.duplicates(f"{i}:{rule.column}", keys, pa.array(range(-n, 0), pa.int64()))
    finally:
        index.close()
