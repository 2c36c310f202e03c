#!/usr/bin/env python3
"""Benchmark: the Dask executor's parallel efficiency on this machine (issue 15, ADR 0026).

8 files x 250K rows of the sample orders data (one generated file split at record
boundaries, so order ids stay unique across files but for the sample's own duplicates)
load into a Parquet folder with the sample pipeline:

  local   taskset -c 0 etlconsole run P --executor local              (one core)
  dask    etlconsole run P --executor dask --scheduler ADDR           (two pinned workers:
          taskset -c 0 dask worker ADDR --nthreads 1 --preload etlconsole.engine.executors.keys
          taskset -c 1 dask worker ADDR ...)

each with the sample pipeline as is (its ``unique`` order id: the Dask run makes a key
pre-pass that spills for the load pass, ADR 0028) and without the unique rule (one pass,
the executor's own efficiency). Rounds are interleaved, after a warm-up round that is
not counted. Speed-up = local wall / dask wall
(medians), and the same of the jobs' own times (their summaries' ``elapsed_s``: without the
command's start, Python's and the imports', ``import distributed`` among them). The
per-task overhead is the slope of the Dask job's wall time over 8 and 32 tiny files (100
rows each).

The workers are WARM: started once before the rounds and preloaded with the engine
(``dask worker --preload``), as an operator's long-lived cluster is, so no job pays the
engine's import in its workers; ``--no-preload`` gives cold workers (the first task of
each imports the engine, ~0.4 s, in the first round only). The driver and the scheduler
are not pinned; the figures are the child's wall time (time.perf_counter around it) and
the CPU seconds of each process (driver, scheduler, each worker with its nanny). Other
work on the machine shows in them: say so when you quote them.

    python bench/scale_bench.py                     # 8 x 250K, 3 rounds after a warm-up
    python bench/scale_bench.py --rows 50000 --rounds 1 --only unique --no-overhead
    python bench/scale_bench.py --one-file --no-overhead   # one 245 MB file: byte ranges
    python bench/scale_bench.py --part-kb 16384            # the 8 files in 2 ranges each
"""

from __future__ import annotations

import argparse
import csv
import json
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
WORK = BENCH_DIR / "out" / "scale"
BIN = Path(sys.executable).parent
# Imported by each worker as it starts (``dask worker --preload``), as an operator's
# long-lived workers would have it: the engine's import is not a job's cost.
PRELOAD = "etlconsole.engine.executors.keys"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_drop(folder: Path, files: int, rows: int) -> Path:
    """``files`` CSV files of ``rows`` sample records each (made once, then reused)."""
    drop = folder / f"drop-{files}x{rows}"
    if drop.is_dir() and len(list(drop.glob("*.csv"))) == files:
        return drop
    from etlconsole.sample import write_orders_csv
    drop.mkdir(parents=True, exist_ok=True)
    whole = folder / "whole.csv"
    write_orders_csv(whole, files * rows, seed=15)
    with whole.open(newline="", encoding="latin-1") as f:
        reader = csv.reader(f)
        header = next(reader)
        for k in range(files):
            with (drop / f"orders_{k:02d}.csv").open("w", newline="", encoding="latin-1") as out:
                w = csv.writer(out, lineterminator="\n")
                w.writerow(header)
                for _, rec in zip(range(rows), reader, strict=False):
                    w.writerow(rec)
    whole.unlink()
    return drop


def one_file(folder: Path, drop: Path) -> Path:
    """The drop's files as ONE file (the same records in the same order; made once): what
    byte-range parts are for — without them a Dask job of one file is one task."""
    one = folder / f"one-{drop.name}"
    target = one / "orders_all.csv"
    if target.exists():
        return one
    one.mkdir(parents=True, exist_ok=True)
    with (one / ".partial").open("wb") as out:
        for k, f in enumerate(sorted(drop.glob("*.csv"))):
            with f.open("rb") as src:
                header = src.readline()
                if k == 0:
                    out.write(header)
                shutil.copyfileobj(src, out, 1 << 20)
    (one / ".partial").rename(target)
    return one


def pipeline(folder: Path, drop: Path, *, unique: bool) -> Path:
    from etlconsole.sample import SAMPLE_PIPELINE_TOML as text
    text = text.replace('path = "orders.csv"', f"path = {json.dumps(str(drop / '*.csv'))}")
    text = text.replace('destination = "sqlite"\npath = "warehouse.db"\ntable = "orders"\n',
                        'destination = "parquet"\npath = "out"\n')
    if not unique:
        text = text.replace(", unique = true", "")
    name = folder / ("p_unique.toml" if unique else "p_plain.toml")
    name.write_text(text, encoding="utf-8")
    return name


def run(folder: Path, pipeline_file: Path, args: list[str], pin: str | None,
        cluster: "PinnedCluster | None" = None, env: dict | None = None) -> dict:
    """One job in a fresh state store and output folder; returns its summary + wall."""
    shutil.rmtree(folder / "out", ignore_errors=True)
    shutil.rmtree(folder / "state", ignore_errors=True)
    cmd = [str(BIN / "etlconsole"), "--state", str(folder / "state" / "s.db"), "run",
           str(pipeline_file), "--no-ui", "--json", *args]
    if pin is not None:
        cmd = ["taskset", "-c", pin, *cmd]
    before = cluster.cpu_by_process() if cluster else {}
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=err, text=True,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr[-2000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    # CPU seconds: the job's process (and its threads), plus the workers' for Dask. On a
    # machine shared with other work, wall time is what the others leave; CPU time is not.
    driver = usage.ru_utime + usage.ru_stime
    after = cluster.cpu_by_process() if cluster else {}
    each = {"driver": round(driver, 3)} | {k: round(v - before.get(k, 0.0), 3) for k, v in after.items()}
    # job_s: the job's own time (its summary's elapsed_s, as `show` reports it): from the
    # job's start to its end, without the command's start before it (Python, the engine's
    # imports, the plan; for Dask also `import distributed`) — the executor's part of it.
    return {"wall_s": round(wall, 3), "job_s": summary["elapsed_s"],
            "cpu_s": round(sum(each.values()), 3), "cpu_by_process": each,
            "rows_read": summary["rows_read"], "rows_loaded": summary["rows_loaded"],
            "rows_rejected": summary["rows_rejected"]}


class PinnedCluster:
    """A dask scheduler and one single-threaded worker pinned to each of ``cores``."""

    def __init__(self, folder: Path, cores: list[int], memory_mb: int, preload: bool = True):
        self.file = folder / "scheduler.json"
        self.file.unlink(missing_ok=True)
        # The Dask config as docs/scale-out.md tells an operator to give the workers and the
        # scheduler (no spilling or pausing, no malloc trimming, no profiler, fewer
        # wake-ups: executors/cluster.py).
        config = folder / "dask-config"
        config.mkdir(exist_ok=True)
        from etlconsole.engine.executors.cluster import worker_config_yaml
        (config / "etlconsole.yaml").write_text(worker_config_yaml(), encoding="utf-8")
        env = {**os.environ, "DASK_CONFIG": str(config)}
        self.procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--port", "0",
                                        "--no-dashboard", "--scheduler-file", str(self.file)],
                                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        deadline = time.monotonic() + 60
        while not self.file.exists():
            if time.monotonic() > deadline:
                raise SystemExit("the dask scheduler did not start")
            time.sleep(0.1)
        time.sleep(0.3)
        self.address = json.loads(self.file.read_text())["address"]
        for c in cores:
            self.procs.append(subprocess.Popen(
                ["taskset", "-c", str(c), str(BIN / "dask"), "worker", self.address,
                 "--nworkers", "1", "--nthreads", "1", "--memory-limit", f"{memory_mb}MB",
                 "--no-dashboard", *(["--preload", PRELOAD] if preload else [])],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client
        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(len(cores), timeout=120)

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds used so far by the scheduler and by each worker (its nanny and
        worker processes), by name: ``scheduler``, ``worker0``, ``worker1``, ..."""
        import psutil
        out = {}
        for name, p in zip(["scheduler"] + [f"worker{i}" for i in range(len(self.procs) - 1)],
                           self.procs, strict=True):
            total = 0.0
            try:
                procs = [psutil.Process(p.pid)] + psutil.Process(p.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                procs = []
            for q in procs:
                try:
                    t = q.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            out[name] = total
        return out

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def overhead(folder: Path, address: str) -> dict:
    """Per-task overhead: the Dask job's wall time over 8 and 32 tiny files, its slope."""
    walls = {}
    for n in (8, 32):
        drop = make_drop(folder, n, 100)
        p = pipeline(folder, drop, unique=False)
        walls[n] = statistics.median(run(folder, p, ["--executor", "dask", "--scheduler", address],
                                         None)["wall_s"] for _ in range(3))
    return {"wall_8_s": walls[8], "wall_32_s": walls[32],
            "per_task_ms": round((walls[32] - walls[8]) / 24 * 1000, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--rows", type=int, default=250_000, help="rows per file")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1,
                    help="rounds run first and not counted: the workers' first job of a kind "
                         "pays first-use costs (0.2-0.5 s measured) a long-lived cluster paid long ago")
    ap.add_argument("--memory-mb", type=int, default=512, help="memory limit per worker")
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--no-preload", action="store_true",
                    help="cold workers: each imports the engine on its first task")
    ap.add_argument("--no-overhead", action="store_true", help="skip the per-task overhead runs")
    ap.add_argument("--only", choices=("unique", "plain"), help="one of the two pipelines")
    ap.add_argument("--part-kb", type=int, default=None,
                    help="PIPELINE_PART_SIZE_KB of the Dask runs (byte ranges of a file larger "
                         "than this; default: the engine's, 32768)")
    ap.add_argument("--one-file", action="store_true",
                    help="the drop's records as one file (byte ranges: one large file on 2 workers)")
    args = ap.parse_args(argv)
    compile_package()      # what `pip install .` does (see compiled.py)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 cores (taskset -c 0 and -c 1)")
    args.work.mkdir(parents=True, exist_ok=True)
    drop = make_drop(args.work, args.files, args.rows)
    if args.one_file:
        drop = one_file(args.work, drop)
    log(f"drop: {args.files} x {args.rows:,} rows in {drop}")
    dask_env = {} if args.part_kb is None else {"PIPELINE_PART_SIZE_KB": str(args.part_kb)}
    folder = Path(tempfile.mkdtemp(prefix="scale-", dir=args.work))
    cluster = PinnedCluster(folder, [0, 1], args.memory_mb, preload=not args.no_preload)
    results: dict = {"files": 1 if args.one_file else args.files,
                     "rows_per_file": args.rows * (args.files if args.one_file else 1),
                     "part_kb": args.part_kb, "rounds": args.rounds, "warmup": args.warmup,
                     "preload": not args.no_preload, "load_avg_start": os.getloadavg()[0],
                     "runs": {}}
    pipelines = [u for u in (True, False) if args.only in (None, "unique" if u else "plain")]
    try:
        dask_args = ["--executor", "dask", "--scheduler", cluster.address]
        for r in range(-args.warmup, args.rounds):
            for unique in pipelines:
                p = pipeline(folder, drop, unique=unique)
                tag = "unique" if unique else "plain"
                for name, extra, pin, cl in (("local", ["--executor", "local"], "0", None),
                                             ("dask", dask_args, None, cluster)):
                    out = run(folder, p, extra, pin, cl, env=dask_env if cl else None)
                    if r < 0:
                        log(f"warm-up {name:5} {tag:6} {out['wall_s']:7.2f}s wall (not counted)")
                        continue
                    results["runs"].setdefault(f"{name}/{tag}", []).append(out)
                    log(f"round {r + 1} {name:5} {tag:6} {out['wall_s']:7.2f}s wall "
                        f"{out['job_s']:6.2f}s job "
                        f"{out['cpu_s']:7.2f}s cpu "
                        f"{out['rows_loaded']:,} loaded {out['rows_rejected']:,} rejected; cpu "
                        + " ".join(f"{k} {v:.2f}" for k, v in out["cpu_by_process"].items()))
        if not args.no_overhead:
            results["overhead"] = overhead(folder, cluster.address)
    finally:
        cluster.close()
        shutil.rmtree(folder, ignore_errors=True)
    results["load_avg_end"] = os.getloadavg()[0]
    for tag in ("unique" if u else "plain" for u in pipelines):
        runs = results["runs"]
        loc = statistics.median(x["wall_s"] for x in runs[f"local/{tag}"])
        dsk = statistics.median(x["wall_s"] for x in runs[f"dask/{tag}"])
        results[f"min_speedup_{tag}"] = round(min(x["wall_s"] for x in runs[f"local/{tag}"])
                                              / min(x["wall_s"] for x in runs[f"dask/{tag}"]), 2)
        assert runs[f"local/{tag}"][0]["rows_loaded"] == runs[f"dask/{tag}"][0]["rows_loaded"]
        loc_cpu = statistics.median(x["cpu_s"] for x in runs[f"local/{tag}"])
        dsk_cpu = statistics.median(x["cpu_s"] for x in runs[f"dask/{tag}"])
        results[f"speedup_{tag}"] = round(loc / dsk, 2)
        loc_job = statistics.median(x["job_s"] for x in runs[f"local/{tag}"])
        dsk_job = statistics.median(x["job_s"] for x in runs[f"dask/{tag}"])
        results[f"job_speedup_{tag}"] = round(loc_job / dsk_job, 2)
        # what two idle cores would give if the work spread evenly: CPU of one core's run
        # over half the CPU the cluster spent (an estimate, not a measurement)
        results[f"cpu_ratio_{tag}"] = round(loc_cpu / dsk_cpu, 3)
        log(f"{tag:6}: local (1 core) {loc:.2f}s, dask (2 pinned workers) {dsk:.2f}s: "
            f"speed-up {loc / dsk:.2f}x (min of rounds {results[f'min_speedup_{tag}']:.2f}x); "
            f"cpu {loc_cpu:.2f}s vs {dsk_cpu:.2f}s "
            f"(idle-machine estimate {2 * loc_cpu / dsk_cpu:.2f}x); job time {loc_job:.2f}s vs "
            f"{dsk_job:.2f}s: {loc_job / dsk_job:.2f}x")
    if "overhead" in results:
        log(f"per-task overhead: {results['overhead']['per_task_ms']} ms")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
