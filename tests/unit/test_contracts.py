"""The declared contracts: phase hooks with defaults (no probing), and the destination base
class (abstract methods, capability flags, the error taxonomy, the writability probe)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from etlconsole.engine import destinations
from etlconsole.engine.destinations import (DestinationBusy, DestinationError, DestinationFailed,
                                            DestinationUnusable, RowRefused, RefusedRow,
                                            TerminalDestinationError, TransientDestinationError)
from etlconsole.engine.phases.base import Phase
from etlconsole.engine.phases.plugin import PluginPhase
from etlconsole.errors import JobFailed, SpecError, UserError


class Bare:
    """A plugin that follows the shape without subclassing Phase."""

    description = "bare"
    options: dict = {}

    def process(self, batch):
        return batch


class Full(Bare):
    on_error = "fail"

    def __init__(self):
        self.attached = None

    def attach(self, job):
        self.attached = job

    def parts(self):
        return (lambda b: b), (lambda c: c)


def test_phase_hooks_have_defaults_and_plugins_get_them():
    class P(Phase):
        def process(self, batch):
            return batch

    p = P()
    assert p.parts() is None and p.on_error == "reject"
    p.attach(object())
    p.setup(pa.schema([]))
    p.teardown()
    bare = PluginPhase(Bare(), "bare")
    assert bare.parts() is None and bare.on_error == "reject"
    assert bare.description == "bare" and bare.options == {}
    bare.attach(object())                                  # a no-op, not an AttributeError
    full = PluginPhase(Full(), "full")
    full.attach("ctx")
    assert full.inner.attached == "ctx" and full.on_error == "fail"
    assert full.parts() is not None


def test_a_destination_must_implement_the_contract():
    class Half(destinations.Destination):
        kind = "half"

    with pytest.raises(TypeError, match="abstract"):
        Half(Path("x"), "job")                             # type: ignore[abstract]


def test_error_taxonomy():
    assert issubclass(DestinationBusy, TransientDestinationError)
    assert issubclass(DestinationFailed, TerminalDestinationError)
    assert issubclass(RowRefused, TerminalDestinationError)
    for cls in (DestinationBusy, DestinationFailed, RowRefused):
        assert issubclass(cls, DestinationError) and issubclass(cls, JobFailed)
    assert issubclass(DestinationUnusable, UserError)      # exit 2, nothing written
    err = RowRefused(RefusedRow(3, "not_null", "email", "NOT NULL constraint failed: t.email"))
    assert err.row.column == "email" and str(err) == "NOT NULL constraint failed: t.email"


def test_capabilities_drive_planning_checks(tmp_path):
    sqlite = destinations.get("sqlite")
    assert sqlite.has_tables and sqlite.refuses_rows and sqlite.folds_case
    assert not destinations.get("parquet").has_tables
    with pytest.raises(UserError, match="SQLite allows at most 1998"):
        sqlite.check_columns([f"c{i}" for i in range(1999)], table="t", source=tmp_path / "s.csv")
    with pytest.raises(SpecError, match="'A' would be loaded twice"):
        sqlite.check_columns(["A", "a"], table="t", source=tmp_path / "s.csv")
    destinations.get("parquet").check_columns(["A", "a"], table=None, source=tmp_path / "s.csv")


def test_probe_writable_leaves_nothing(tmp_path):
    destinations.probe_writable(tmp_path, "destination")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DestinationUnusable, match="cannot write in the destination folder"):
        destinations.probe_writable(tmp_path / "missing", "destination")
