"""Issue 17: a destination that cannot be written (a read-only folder or file) is refused
by the destination's ``check`` before anything is written: one line, exit 2 — not
"IO: failed to open …: failed to allocate memory" at the first batch.

The tests run as root, for whom ``chmod a-w`` stops nothing (and ``os.access`` says yes),
so the folder or file is made immutable with ``chattr +i``, which stops root too, as a
read-only mount would. Skipped where chattr is not available or not allowed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .faultkit import Lab


def chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.fixture
def immutable():
    made: list[Path] = []

    def make(path: Path) -> None:
        if not chattr("+i", path):
            pytest.skip("chattr +i is not available here (not root, or the file system)")
        made.append(path)

    yield make
    for path in made:
        chattr("-i", path)


def listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((p.name, p.stat().st_size) for p in folder.iterdir())


def one_line_exit_2(res, *needles: str) -> None:
    assert res.returncode == 2, str(res)
    assert "Traceback" not in res.stderr and len(res.stderr_lines) == 1, str(res)
    line = res.stderr_lines[0]
    assert line.startswith("error:") and "allocate memory" not in line, line
    for needle in needles:
        assert needle in line, line


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "existing-file"])
def test_sqlite_destination_in_a_read_only_folder(tmp_path, small_csv, immutable, existing):
    lab = Lab(tmp_path / "lab", small_csv)
    out = tmp_path / "ro"
    out.mkdir()
    if existing:       # a database from an earlier job: the folder is needed for its journal
        assert lab.cli("run", lab.pipeline, "--no-ui", "--json", "--dest", out / "w.db").returncode == 0
    before = listing(out)
    immutable(out)
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json", "--dest", out / "w.db")
    one_line_exit_2(res, str(out), "cannot write in the destination folder")
    assert listing(out) == before                        # nothing written
    assert len(lab.store_jobs()) == (1 if existing else 0)   # no job was even recorded


def test_sqlite_destination_file_read_only(tmp_path, small_csv, immutable):
    lab = Lab(tmp_path / "lab", small_csv)
    assert lab.cli("run", lab.pipeline, "--no-ui", "--json").returncode == 0
    size = lab.dest.stat().st_size
    immutable(lab.dest)
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json")
    one_line_exit_2(res, str(lab.dest), "read-only")
    assert lab.dest.stat().st_size == size


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_folder_destination_read_only(tmp_path, small_csv, immutable, kind):
    lab = Lab(tmp_path / "lab", small_csv)
    text = lab.pipeline.read_text().replace('destination = "sqlite"', f'destination = "{kind}"')
    lab.pipeline.write_text(text.replace('table = "orders"\n', ""))
    out = tmp_path / "dataset"
    out.mkdir()
    immutable(out)
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json", "--dest", out)
    one_line_exit_2(res, str(out), "cannot write in the destination folder")
    assert listing(out) == []
