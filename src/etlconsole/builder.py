"""Builder API: pipelines in Python, the same spec a TOML file loads into.

    from etlconsole import PipelineBuilder

    spec = (PipelineBuilder("orders")
            .source("orders.csv")
            .phase("clean", trim=True)
            .phase("my_pkg.phases:MaskEmail", when={"env": "MASK"}, column="email")
            .branch("cancelled", filter="status == 'cancelled'")
                .phase("load", destination="parquet", path="cancelled")
            .branch("all")
                .phase("load", destination="sqlite", path="warehouse.db", table="orders")
            .build())
    spec.save("orders.toml")          # load_spec("orders.toml") == spec

``build()`` goes through the same reader as a pipeline file (``spec_from_dict``), so a
builder and a file are checked alike; phase types and options are checked when the spec
is planned (``etlconsole check``, or any run), again exactly as for a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .spec import BRANCH, PipelineSpec, spec_from_dict


def _phase(type_: str, enabled: bool, when: Any, checkpoint: bool, options: dict) -> dict:
    entry: dict[str, Any] = {"type": type_}
    if not enabled:
        entry["enabled"] = False
    if when is not None:
        entry["when"] = when
    if checkpoint:
        entry["checkpoint"] = True
    entry.update(options)
    return entry


class PipelineBuilder:
    """Chainable: ``source``, ``phase`` and ``branch`` return a builder; ``build`` a spec."""

    def __init__(self, name: str, *, description: str | None = None,
                 base_dir: str | Path | None = None):
        self._doc: dict[str, Any] = {"name": name}
        if description:
            self._doc["description"] = description
        self._phases: list[dict[str, Any]] = []
        self._base_dir = Path(base_dir) if base_dir is not None else None

    def source(self, path: str | Path, **options: Any) -> "PipelineBuilder":
        """The CSV file (relative to the pipeline's folder) and optional delimiter, quote,
        encoding, header."""
        self._doc["source"] = {"path": str(path), **options}
        return self

    def phase(self, type: str, *, enabled: bool = True, when: Any = None,
              checkpoint: bool = False, **options: Any) -> "PipelineBuilder":
        """A phase: a registered name or 'package.module:Class', with its options."""
        self._phases.append(_phase(type, enabled, when, checkpoint, options))
        return self

    def branch(self, name: str, *, filter: str | None = None,
               phases: list[dict[str, Any]] | None = None) -> "BranchBuilder":
        """Add a branch to the pipeline's branch phase (made by the first call, at the
        end); chain ``.phase(...)`` on the result to give the branch its phases, or pass
        them as ``phases=[{"type": "load", ...}]`` tables like the TOML's."""
        if not self._phases or self._phases[-1]["type"] != BRANCH:
            self._phases.append({"type": BRANCH, "branches": []})
        branch: dict[str, Any] = {"name": name}
        if filter is not None:
            branch["filter"] = filter
        branch["phases"] = [dict(p) for p in phases or []]
        self._phases[-1]["branches"].append(branch)
        return BranchBuilder(self, branch)

    def to_dict(self) -> dict[str, Any]:
        return {**self._doc, "phases": [dict(p) for p in self._phases]}

    def build(self) -> PipelineSpec:
        """The spec, checked as a pipeline file is (SpecError naming phase and key)."""
        name = self._doc["name"]
        return spec_from_dict(self.to_dict(), file=f"<builder {name}>", base_dir=self._base_dir)


class BranchBuilder:
    """The branch being built: ``phase`` adds to it; ``branch`` starts the next one."""

    def __init__(self, parent: PipelineBuilder, branch: dict[str, Any]):
        self._parent, self._branch = parent, branch

    def phase(self, type: str, *, enabled: bool = True, when: Any = None,
              checkpoint: bool = False, **options: Any) -> "BranchBuilder":
        self._branch["phases"].append(_phase(type, enabled, when, checkpoint, options))
        return self

    def branch(self, name: str, *, filter: str | None = None,
               phases: list[dict[str, Any]] | None = None) -> "BranchBuilder":
        return self._parent.branch(name, filter=filter, phases=phases)

    def end(self) -> PipelineBuilder:
        return self._parent

    def build(self) -> PipelineSpec:
        return self._parent.build()
