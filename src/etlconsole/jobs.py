"""Library entry points the CLI (and later the console) call: plan and run a pipeline."""

from __future__ import annotations

from pathlib import Path

from .config import Settings
from .engine.plan import Plan, make_plan
from .engine.runner import Runner
from .spec import load_spec
from .store import StateStore


def plan_pipeline(pipeline: str | Path, *, source=None, dest=None) -> Plan:
    return make_plan(load_spec(pipeline), source=source, dest=dest)


def run_pipeline(pipeline: str | Path, settings: Settings, *, source=None, dest=None,
                 progress=None, log=None, on_event=None) -> dict:
    """Plan (every user error surfaces here, before writing), then run; returns the summary.
    ``on_event``: called with every event the job records (see ``StateStore.on_event``)."""
    plan = plan_pipeline(pipeline, source=source, dest=dest)
    store = StateStore(settings.state_path)
    store.on_event = on_event
    try:
        return Runner.new(plan, store, settings, progress=progress, log=log).run()
    finally:
        store.close()
