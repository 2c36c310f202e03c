"""The local executor: the job on threads of this process (``runner.Runner``), as always."""

from __future__ import annotations

from typing import Any

from ...config import Settings
from ...store import StateStore
from ..plan import Plan
from ..runner import Runner


def run_new(plan: Plan, store: StateStore, settings: Settings, *, progress: Any = None,
            log: Any = None) -> dict:
    return Runner.new(plan, store, settings, progress=progress, log=log).run()
