"""Real small or read-only filesystems for the fault suite (tmpfs mounts; needs root).

A test that needs one is skipped, with the reason, where mounting is impossible."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextmanager
def tmpfs(folder: Path, size: str = "2m"):
    """A tmpfs of ``size`` mounted on ``folder`` for the block; unmounted after it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem (tmpfs) needs root")
    res = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def remount_readonly(folder: Path) -> None:
    res = _mount("-o", "remount,ro", str(folder))
    assert res.returncode == 0, res.stderr
