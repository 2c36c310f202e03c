"""The ``unique`` rule across parts (ADR 0026, 0028): a key pre-pass per part (which spills
what its validate phase lets through, for the part's load pass), one sort of all their
keys, and the keys held by more than one part seeded into the load tasks' indexes.

A local run of the files rejects a key at every occurrence after the first one that passed
the validate phase's other rules, in file order. Here each part's pre-pass returns the keys
a local run of its file alone would register (the survivors of the validate phase); the
sort finds the keys of more than one part and each one's first part; a load task of part
``k`` starts with the keys an earlier part owns already in its index, so the rule rejects
their rows there exactly as the local run does (same rule, same message).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import types
from ..governor import use_lean_allocator
from ..job import JobContext
from ..line import PhaseLine, Work
from ..phases.base import ROW, Rejects
from ..phases.validate import Rule, Validate
from ..plan import Plan, PlannedPhase
from ..unique import UniqueIndex
from .parts import PartTask, plan_part, stats_for, stream_of
from .spill import SpillWriter


def unique_rule(plan: Plan) -> tuple[int, int, Any] | None:
    """(phase position, rule index, rule) of the pipeline's unique rule, if any. The Dask
    executor handles one (the driver refuses more before anything is written)."""
    for pos, p in enumerate(plan.phases):
        for i, rule in enumerate(getattr(p.phase, "rules", None) or []):
            if p.type == "validate" and rule.unique:
                return pos, i, rule
    return None


def spillable(plan: Plan) -> bool:
    """Whether a part's pre-pass may stand in for its load pass's first phases (ADR 0028):
    its validate phase rejects (``warn`` keeps failing rows, which the unique rule alone
    could not tell apart again; ``fail`` stops at the first)."""
    found = unique_rule(plan)
    return found is not None and getattr(plan.phases[found[0]].phase, "on_error", None) == "reject"


def part_keys(task: PartTask, spill: str | None = None,
              points: dict[int, int] | None = None) -> pa.Table:
    """The keys this part's unique rule registers, as a local run of this file alone
    would: the chain up to the validate phase holding the rule, its survivors' typed keys
    (first occurrences in the file; rows failing another rule register nothing). Columns
    ``key``, ``part``: the input of ``cross_part``.

    With ``spill`` (a path), what leaves that validate phase is also written there, so
    the part's load pass streams it instead of reading, cleaning and validating the file
    again (``parts.run_part``, ADR 0028)."""
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
    stream = stream_of(task, plan, points)
    typed = [(r.column, r.type, r.formats) for r in getattr(phases[-1].phase, "rules", []) if r.type]
    writer = SpillWriter(Path(spill), typed) if spill and spillable(plan) else None
    line = PhaseLine(phases, stats, clocks, scratch).run(stream)
    try:
        for work in line:
            keys.append(_typed(work.batch.column(rule.column), rule).drop_null())
            if writer is not None:
                writer.add(work)
        if writer is not None:
            writer.close({"stats": [s.to_json() for s in stats], "records": stream.records_done(),
                          "bytes_read": stream.read_bytes(), "content": stream.content_proof()})
            writer = None
    finally:
        if writer is not None:
            writer.abandon()
        line.close()
        for p in phases:
            p.phase.teardown()
        shutil.rmtree(scratch, ignore_errors=True)
    kind = keys[0].type if keys else pa.string()
    column = pa.concat_arrays([k.cast(kind) for k in keys]) if keys else pa.array([], kind)
    return pa.table({"key": column, "part": pa.repeat(pa.scalar(task.part, pa.int32()), len(column))})


def _typed(col: pa.Array, rule: Any) -> pa.Array:
    """The key as the unique index compares it: parsed when the rule has a type."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return types.parse(col, rule.type, rule.formats)[0] if rule.type else col


def cross_part(*tables: pa.Table) -> pa.Table:
    """The keys held by more than one part, as each later holder must reject them: a row
    (``key``, ``part``) for every part holding a key an earlier part holds too — not for
    the key's first owner, which loads it. ``tables``: ``part_keys``'s, in any order.

    One stable sort of all the keys by (key, part): a part holds a key once (its
    survivors are first occurrences), so a key of several parts is a run of equal keys;
    the run's first row is its owner, the rest its later holders. Measured on 2M int64
    keys of 8 parts: 0.09 s of CPU and +56 MB, against 0.8 s for a tree of pairwise hash
    merges and +300 MB (kept by the allocator, which killed 512 MB workers) for Arrow's
    threaded group_by. A part's own rows (``held_by``) are what its load task is handed:
    each duplicate occurrence travels once, to the one part that needs it."""
    tables = tuple(t.select(["key", "part"]) for t in tables if t.num_rows)
    if not tables:
        return pa.table({"key": pa.array([], pa.string()), "part": pa.array([], pa.int32())})
    keys = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    keys = keys.take(pc.sort_indices(keys, sort_keys=[("key", "ascending"), ("part", "ascending")]))
    n = keys.num_rows
    key = keys["key"].combine_chunks()
    # same[i]: row i + 1 holds the key of row i, so row i + 1 is not its run's first
    same = pc.equal(key.slice(0, n - 1), key.slice(1))
    return keys.filter(pa.concat_arrays([pa.array([False]), same]))


def held_by(duplicates: pa.Table, part: int) -> pa.Table:
    """The rows of ``cross_part``'s table for ``part``: the keys it holds that an earlier
    part owns (what its load task is handed)."""
    return duplicates.filter(pc.equal(duplicates["part"], part))


def earlier(duplicates: pa.Table | None, part: int) -> pa.Array:
    """The keys ``part`` holds that an earlier part owns (``duplicates``: ``cross_part``'s
    table, or its rows for this part)."""
    if duplicates is None:
        return pa.array([], pa.null())
    return held_by(duplicates, part)["key"].combine_chunks()


def seed_unique(plan: Plan, ws: Path, duplicates: pa.Table, part: int) -> None:
    """Put the keys earlier parts introduced into this part's unique index before its
    first record, tagged below record 1 (never forgotten): the rule then rejects their
    rows here exactly as a local run would, with the same message."""
    found = unique_rule(plan)
    if found is None:
        return
    _, i, rule = found
    keys = earlier(duplicates, part)
    if not len(keys):
        return
    index = UniqueIndex(ws / "unique.db")
    try:
        n = len(keys)
        index.duplicates(f"{i}:{rule.column}", keys, pa.array(range(-n, 0), pa.int64()))
    finally:
        index.close()


class SeededUnique(Validate):
    """The unique rule alone, for a load pass that streams its pre-pass's spill: those rows
    passed every rule of the validate phase already (the unique one against this part's
    own keys), so what is left is to reject the keys an earlier part owns — this class
    does it with validate's own code, so the rejects carry the same rule, column and
    message as a local run's. Its index is the seeds, in memory: a load pass is never
    resumed midway (a re-run starts again from its spill or its file)."""

    def __init__(self, rule: Rule, on_error: str, seeds: pa.Array):
        raw = {"column": rule.column, "unique": True} | (
            {"type": rule.type} if rule.type else {}) | (
            {"formats": rule.formats} if rule.formats else {})
        super().__init__([raw], on_error)
        self._unique = _Seeds(seeds)

    def attach(self, job: Any) -> None:
        """Nothing on disk: the seeds stay in memory."""


class _Seeds(UniqueIndex):
    """The seeded rule's index: the keys earlier parts own, and nothing else. The rows it
    is asked about hold no key twice (the pre-pass rejected their part's repeats), so a
    key is a duplicate exactly when an earlier part owns it — one vectorized lookup, no
    SQLite (which sorted and stored every key: ~0.07 s a part of 250,000 rows)."""

    def __init__(self, seeds: pa.Array):
        super().__init__()
        self.seeds = seeds

    def duplicates(self, name: str, keys: pa.Array, rows: pa.Array) -> pa.Array:
        if not len(keys):
            return pa.array([], pa.bool_())
        found = pc.is_in(keys, value_set=self.seeds.cast(keys.type), skip_nulls=True)
        return pc.fill_null(found, False)


def seeded_phase(plan: Plan, seeds: pa.Array) -> PlannedPhase:
    """The validate phase holding the unique rule, as a load pass after a spill runs it:
    the rule alone, ``seeds`` (keys earlier parts own) in its index."""
    found = unique_rule(plan)
    assert found is not None
    pos, _, rule = found
    planned = plan.phases[pos]
    phase = SeededUnique(rule, planned.phase.on_error, seeds)
    return dataclasses.replace(planned, phase=phase)


def merge_seeded(work: Work, label: str) -> Work:
    """One chunk's rejects of the validate phase ``label`` as that phase alone would have
    told them: its pre-pass rejects and the seeded rule's (the load pass) in one list,
    the unique rule's last and by record (``split_with_mask``'s order, the unique rule's
    check coming after every other) — so the store gets them in a local run's order."""
    mine = [i for i, (_, _, lab) in enumerate(work.rejects) if lab == label]
    if len(mine) < 2:
        return work
    parts = [work.rejects[i][0] for i in mine]
    rows = pa.Table.from_batches([r.rows for r in parts]).combine_chunks()
    rule = [x for r in parts for x in r.rule]
    column = [x for r in parts for x in r.column]
    message = [x for r in parts for x in r.message]
    unique = pa.array([x == "unique" for x in rule])
    others = pc.indices_nonzero(pc.invert(unique))
    dups = pc.indices_nonzero(unique)
    dups = dups.take(pc.sort_indices(rows[ROW].combine_chunks().take(dups)))
    order = pa.concat_arrays([others, dups]).to_pylist()
    merged = Rejects(rows.take(order).combine_chunks().to_batches()[0], [rule[i] for i in order],
                     [column[i] for i in order], [message[i] for i in order])
    phase = work.rejects[mine[0]][1]
    work.rejects = [b for i, b in enumerate(work.rejects) if i not in mine[1:]]
    work.rejects[mine[0]] = (merged, phase, label)
    return work
