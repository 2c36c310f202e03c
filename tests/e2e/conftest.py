"""Fixtures of the end-to-end suite (see helpers.py for the subprocess runner)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The CLI in a subprocess with cwd=tmp_path and a state store under tmp_path/state."""
    return Cli(tmp_path, tmp_path / "state" / "state.db")
