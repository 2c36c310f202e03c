"""Benchmark: one file vs the same records as a drop of N files, plain and compressed.

Usage: python bench/many_files_bench.py [--rows 1000000] [--files 8] [--rounds 2]
                                         [--codecs plain,gzip,zstd,lz4,bz2] [--work DIR]

The sample orders CSV (``python -m etlconsole.sample``) is written once as one file and once
per codec as a drop of ``--files`` files holding the same records (``--files N
--compress CODEC``). Each variant is loaded by the sample pipeline (``etlconsole run
--no-ui --json --source … --dest fresh.db``) into a fresh SQLite file, the variants
interleaved and rotated round after round. Reported per variant: the best wall time
(process start to exit), rows/s over it, the child's peak RSS (``os.wait4``), the bytes on
disk, the state store's size after the job (a drop's checkpoints and file notes must not
grow with its number of files), and a check that every variant loaded the same number of
rows and rejects as the one file. The machine's other load moves these figures: compare
variants of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of one child process."""
    t0 = time.perf_counter()
    with open(cwd / "out.json", "w") as out, open(cwd / "err.txt", "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {(cwd / 'err.txt').read_text()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, (cwd / "out.json").read_text()


def _prepare(work: Path, rows: int, files: int, codecs: list[str]) -> dict[str, Path]:
    sample = [sys.executable, "-m", "etlconsole.sample"]
    variants = {"one file": work / "orders.csv"}
    subprocess.run([*sample, str(variants["one file"]), str(rows)], check=True,
                   stdout=subprocess.DEVNULL)
    for codec in codecs:
        folder = work / f"drop-{codec}"
        extra = [] if codec == "plain" else ["--compress", codec]
        subprocess.run([*sample, str(folder), str(rows), "--files", str(files), *extra],
                       check=True, stdout=subprocess.DEVNULL)
        variants[f"{files} files {codec}"] = folder
    (work / "pipeline.toml").write_text(
        __import__("etlconsole.sample", fromlist=["x"]).SAMPLE_PIPELINE_TOML, encoding="utf-8")
    return variants


def _on_disk(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.iterdir())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--codecs", default="plain,gzip,zstd,lz4,bz2")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="many-files-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    variants = _prepare(work, args.rows, args.files, args.codecs.split(","))
    best: dict[str, tuple[float, float]] = {}
    figures: dict[str, tuple[int, int]] = {}
    state_mb: dict[str, float] = {}
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            run_dir = work / "run"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir()
            cmd = [sys.executable, "-m", "etlconsole", "--state", str(run_dir / "state.db"),
                   "run", str(work / "pipeline.toml"), "--no-ui", "--json",
                   "--source", str(variants[name]), "--dest", str(run_dir / "fresh.db")]
            wall, rss, out = _run(cmd, run_dir)
            summary = json.loads(out.strip().splitlines()[-1])
            figures[name] = (summary["rows_loaded"], summary["rows_rejected"])
            state_mb[name] = sum(p.stat().st_size for p in run_dir.glob("state.db*")) / 1e6
            if name not in best or wall < best[name][0]:
                best[name] = (wall, rss)
    one = figures["one file"]
    print(f"{args.rows:,} rows; best of {args.rounds} rounds; {os.cpu_count()} CPUs")
    print(f"{'variant':<22} {'on disk MB':>10} {'wall s':>8} {'rows/s':>10} {'peak RSS MB':>12} "
          f"{'state MB':>9} same")
    for name in names:
        wall, rss = best[name]
        print(f"{name:<22} {_on_disk(variants[name]) / 1e6:>10.1f} {wall:>8.2f} "
              f"{args.rows / wall:>10,.0f} {rss:>12.0f} {state_mb[name]:>9.1f} {figures[name] == one}")
    return 0 if all(f == one for f in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
