"""The engine's side of the phase contract for phases that are not built in.

A plugin phase may be any class with ``process(batch)``: ``setup(schema)`` and
``teardown()`` are optional. When ``process`` raises, the batch is split in halves and
processed again until the rows that raise are found (pgloader's way, as for load
failures); each such row is rejected with rule ``exception``, the exception's message and
the phase's name, and the other rows go on. ``process`` must therefore be safe to call
again on a part of a batch it already saw (no side effects per call).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .base import PhaseResult, Rejects

RULE = "exception"


class RejectsGroup:
    """Several ``Rejects`` of one batch (e.g. of different schemas) as one."""

    def __init__(self, parts: list[Rejects]):
        self.parts = [p for p in parts if p is not None and len(p)]

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def records(self, phase: str, label: str | None = None) -> list[dict[str, Any]]:
        out = [r for p in self.parts for r in p.records(phase, label)]
        out.sort(key=lambda r: (r["row"] is None, r["row"] or 0))
        return out


class PluginPhase:
    """Wraps a plugin's phase object; everything else is delegated to it."""

    def __init__(self, inner: Any, type_name: str):
        self.inner, self.type_name = inner, type_name
        self.output_schema: pa.Schema | None = None
        self.isolated = 0            # rows rejected because process raised

    def __getattr__(self, name: str):   # attach, options, description, …
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"PluginPhase({self.inner!r})"

    def setup(self, schema: pa.Schema) -> None:
        hook = getattr(self.inner, "setup", None)
        if callable(hook):
            hook(schema)

    def teardown(self) -> None:
        hook = getattr(self.inner, "teardown", None)
        if callable(hook):
            hook()

    def probe(self, batch: pa.RecordBatch):
        """Planning: process an empty batch, letting any exception through."""
        out = self.inner.process(batch)
        got = out.batch if isinstance(out, PhaseResult) else out
        if isinstance(got, pa.RecordBatch):
            self.output_schema = got.schema
        return out

    def process(self, batch: pa.RecordBatch):
        try:
            return self.inner.process(batch)
        except Exception as exc:
            if batch.num_rows == 0:
                raise
            return self._isolate(batch, exc)

    def _isolate(self, batch: pa.RecordBatch, first: Exception) -> PhaseResult:
        good: list[pa.RecordBatch] = []
        inner_rejects: list[Rejects] = []
        bad: list[pa.RecordBatch] = []
        messages: list[str] = []
        warnings = 0
        notes: list[str] = []

        def run(part: pa.RecordBatch, exc: Exception | None) -> None:
            nonlocal warnings
            if exc is None:
                try:
                    out = self.inner.process(part)
                except Exception as e:      # noqa: BLE001 - any plugin failure
                    exc = e
                else:
                    if isinstance(out, PhaseResult):
                        good.append(out.batch)
                        if out.rejects is not None:
                            inner_rejects.append(out.rejects)
                        warnings += out.warnings
                        notes.extend(out.notes)
                    else:
                        good.append(out)
                    return
            if part.num_rows == 1:
                bad.append(part)
                messages.append(f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
                return
            mid = part.num_rows // 2
            run(part.slice(0, mid), None)
            run(part.slice(mid), None)

        run(batch, first)
        self.isolated += len(bad)
        schema = good[0].schema if good else (self.output_schema or batch.schema)
        kept = [b for b in good if b.num_rows]
        if any(b.schema != schema for b in kept):
            raise TypeError(f"phase {self.type_name!r} returned batches of different schemas")
        merged = (pa.Table.from_batches(kept, schema=schema).combine_chunks().to_batches()
                  if kept else [])
        out = merged[0] if merged else pa.RecordBatch.from_pylist([], schema=schema)
        rows = pa.Table.from_batches(bad).combine_chunks().to_batches()[0]
        own = Rejects(rows, [RULE] * rows.num_rows, [None] * rows.num_rows, messages)
        rejects = RejectsGroup([own, *inner_rejects]) if inner_rejects else own
        return PhaseResult(out, rejects, warnings, notes)
