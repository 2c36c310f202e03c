#!/usr/bin/env python3
"""Compare the CPU time of two (or more) versions of etlconsole on one file, interleaved.

Wall time on a shared machine moves with everyone else's work; the CPU time a run uses
(user + sys of the child, from os.wait4) moves far less, so a regression of a tenth of a
second shows up in a handful of rounds. Each version is a source tree put first on
PYTHONPATH (empty: the installed package). Rounds run the versions back to back.

    git archive b63998f src | tar -x -C /tmp/old
    python bench/cpu_compare.py --rounds 5 --csv bench/out/data/orders_1000000.csv \\
        old=/tmp/old/src new=

The pipeline defaults to bench/out/data/pipeline.toml (written by run_bench.py).
Stdlib only; see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compiled import compile_package

BENCH_DIR = Path(__file__).resolve().parent
ENTRY = ("import sys; from etlconsole.cli import entry; sys.argv[0] = 'etlconsole'; "
         "sys.exit(entry())")


def run_once(pythonpath: str, csv: Path, pipeline: Path, scratch: Path) -> dict:
    """One `etlconsole run` into a fresh destination and state store."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PIPELINE_")}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-c", ENTRY, "--state", str(scratch / "state.db"), "run", str(pipeline),
           "--no-ui", "--json", "--source", str(csv), "--dest", str(scratch / "fresh.db")]
    t0 = time.perf_counter()
    with open(scratch / "stdout", "wb") as out, open(scratch / "stderr", "wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        tail = (scratch / "stderr").read_text(errors="replace")[-1500:]
        sys.exit(f"error: the run with PYTHONPATH={pythonpath!r} failed:\n{tail}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "user": usage.ru_utime,
            "sys": usage.ru_stime, "wall": wall, "rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("versions", nargs="+", metavar="LABEL=PYTHONPATH")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--csv", type=Path, default=BENCH_DIR / "out" / "data" / "orders_1000000.csv")
    ap.add_argument("--pipeline", type=Path, default=BENCH_DIR / "out" / "data" / "pipeline.toml")
    args = ap.parse_args()
    versions = []
    for v in args.versions:
        label, sep, path = v.partition("=")
        if not sep or not label:
            ap.error(f"expected LABEL=PYTHONPATH, not {v!r}")
        versions.append((label, path))
    for f in (args.csv, args.pipeline):
        if not f.is_file():
            ap.error(f"{f}: no such file (run bench/run_bench.py once to make it)")
    for _, path in versions:
        compile_package(pythonpath=path)
    results: dict[str, list[dict]] = {label: [] for label, _ in versions}
    with tempfile.TemporaryDirectory(prefix="cpu_compare_") as tmp:
        for r in range(args.rounds):
            for label, path in versions:
                m = run_once(path, args.csv.resolve(), args.pipeline.resolve(), Path(tmp) / label)
                results[label].append(m)
                print(f"round {r + 1} {label:>10}: cpu {m['cpu']:.2f} s (user {m['user']:.2f}, "
                      f"sys {m['sys']:.2f}), wall {m['wall']:.2f} s, peak RSS {m['rss_mb']:.0f} MB",
                      file=sys.stderr, flush=True)
    print(f"| version | CPU s (median of {args.rounds}) | user s | sys s | wall s | peak RSS MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, _ in versions:
        ms = results[label]
        med = {k: statistics.median(m[k] for m in ms) for k in ("cpu", "user", "sys", "wall")}
        print(f"| {label} | {med['cpu']:.2f} | {med['user']:.2f} | {med['sys']:.2f} | "
              f"{med['wall']:.2f} | {max(m['rss_mb'] for m in ms):.0f} |")


if __name__ == "__main__":
    main()
