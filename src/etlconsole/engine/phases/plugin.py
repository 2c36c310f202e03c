"""The engine's side of the phase contract for phases that are not built in.

A plugin phase may be any class with ``process(batch)``: ``setup(schema)`` and
``teardown()`` are optional. When ``process`` raises, the runner splits the batch in halves
and processes them again until the rows that raise are found (pgloader's way, as for load
failures); each such row is rejected with rule ``exception``, the exception's message and
the phase's name, and the other rows go on. ``process`` must therefore be safe to call
again on a part of a batch it already saw (no side effects per call).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from .base import Parts, Phase


class PluginPhase(Phase):
    """Wraps a plugin's phase object, which may follow the shape of ``Phase`` without
    subclassing it: the hooks it lacks get the base class's defaults here, so the runner
    calls every hook without probing."""

    def __init__(self, inner: Any, type_name: str):
        self.inner, self.type_name = inner, type_name

    def __getattr__(self, name: str):   # options, description, the plugin's own attributes
        return getattr(self.inner, name)

    # The base class's attributes would hide the plugin's from __getattr__: delegate them.
    @property
    def name(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "name", self.type_name)

    @property
    def description(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "description", "")

    @property
    def options(self) -> dict:  # type: ignore[override]
        return getattr(self.inner, "options", {})

    @property
    def on_error(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "on_error", "reject")

    def attach(self, job: Any) -> None:
        hook = getattr(self.inner, "attach", None)
        if callable(hook):
            hook(job)

    def parts(self) -> Parts | None:
        hook = getattr(self.inner, "parts", None)
        return hook() if callable(hook) else None

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

    def process(self, batch: pa.RecordBatch):
        # A raise is the runner's business: it isolates the rows (or fails the job when
        # the phase says on_error = "fail"), for plugins and built-ins alike.
        return self.inner.process(batch)
