#!/usr/bin/env python3
"""Where a job's time goes when it loads into PostgreSQL: one timed run, with a timeline.

Runs ``etlconsole run`` of the sample pipeline into PostgreSQL in this process, with

  - a sampler thread reading, every 20 ms, the CPU seconds of each of this process's
    threads (/proc/self/task, named by their Python thread) and of the server's processes
    (the postmaster's children: the job's backend, the WAL writer, the checkpointer);
  - timers around the PostgreSQL destination's steps (check, open, each batch's cast,
    COPY and commit) and around the loader queue's put (the cutter waiting for the loader)
    and get (the loader waiting for the pipeline).

It prints the start-up milestones, CPU per thread, the loader's time by step, the tail
(batches written after the pipeline ended) and how many cores the client and the server
kept busy in each 100 ms. ``--null-destination`` replaces the destination's write by a
no-op (check and open still run): the pipeline's own time and CPU, for comparison. The
sampler costs about 0.1 s of CPU; compare runs of this script with each other, and take
the job's wall from pg_bench.py.

    python bench/pg_timeline.py --rows 1000000
    python bench/pg_timeline.py --rows 1000000 --null-destination
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from compiled import compile_package  # noqa: E402  (bench/, this script's folder)

T0 = time.perf_counter()
TICK = os.sysconf("SC_CLK_TCK")
EVENTS: list[dict[str, Any]] = []
SAMPLES: list[tuple[float, dict[str, float]]] = []


def event(name: str, t0: float, t1: float, **kw: Any) -> None:
    EVENTS.append({"name": name, "t0": t0 - T0, "t1": t1 - T0,
                   "thread": threading.current_thread().name, **kw})


def _stat(path: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of user + system) of a /proc stat file."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


class Sampler(threading.Thread):
    def __init__(self, postmaster: int):
        super().__init__(name="SAMPLER", daemon=True)
        self.postmaster, self.stop = postmaster, threading.Event()

    def run(self) -> None:
        me, server = os.getpid(), []
        while not self.stop.is_set():
            names = {t.native_id: t.name for t in threading.enumerate()}
            row = {}
            for tid in os.listdir(f"/proc/{me}/task"):
                s = _stat(f"/proc/{me}/task/{tid}/stat")
                if s:
                    row[names.get(int(tid), f"native-{tid}")] = s[1]
            if len(SAMPLES) % 10 == 0:      # new backends: looked for every 200 ms
                server = [p for p in os.listdir("/proc") if p.isdigit()
                          and (_stat(f"/proc/{p}/stat") or (0, 0.0))[0] == self.postmaster]
            row["SERVER"] = sum(s[1] for p in server if (s := _stat(f"/proc/{p}/stat")))
            SAMPLES.append((time.perf_counter() - T0, row))
            time.sleep(0.02)


def instrument(null_destination: bool) -> None:
    """Timers around the destination's steps and the loader queue (monkeypatched)."""
    import etlconsole.engine.destinations.postgres as pgdest
    import etlconsole.engine.loader as loader
    from etlconsole.engine.destinations.base import WriteResult

    def timed(owner: Any, name: str) -> None:
        real = getattr(owner, name)

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:
                event(name, t0, time.perf_counter())
        setattr(owner, name, wrapper)

    for name in ("check", "open", "_copy", "publish", "close"):
        timed(pgdest.PostgresDestination, name)
    timed(pgdest, "_connect")
    real_write = pgdest.PostgresDestination.write

    def write(self, number, batch, row_start, row_end, *, before_commit=None):
        def marked(refused):
            if before_commit is not None:
                before_commit(refused)
            event("commit_start", time.perf_counter(), time.perf_counter())
        t0 = time.perf_counter()
        try:
            if null_destination:
                marked([])
                return WriteResult(1, [])
            return real_write(self, number, batch, row_start, row_end, before_commit=marked)
        finally:
            event("write", t0, time.perf_counter(), rows=batch.num_rows, batch=number)
    pgdest.PostgresDestination.write = write

    class TimedQueue(queue.Queue):
        def put(self, item, block=True, timeout=None):
            t0 = time.perf_counter()
            super().put(item, block, timeout)
            event("queue_put", t0, time.perf_counter())

    real_init = loader.Loader.__init__

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        self.queue = TimedQueue(maxsize=self.queue.maxsize)
    loader.Loader.__init__ = init


def spans(name: str) -> list[dict[str, Any]]:
    return [e for e in EVENTS if e["name"] == name]


def report(end: float, bucket: float) -> None:
    first = {n: spans(n)[0] for n in ("check", "open", "_connect") if spans(n)}
    writes, copies, commits = spans("write"), spans("_copy"), spans("commit_start")
    puts = spans("queue_put")
    print(f"job in this process: {end:.3f} s (the sampler's CPU included)")
    imported = next(e for e in EVENTS if e["name"] == "imported")
    print(f"start: the CLI's imports until {imported['t1']:.3f}", end="")
    for n, e in first.items():
        print(f", {n} {e['t0']:.3f}-{e['t1']:.3f} ({(e['t1'] - e['t0']) * 1000:.0f} ms)", end="")
    print(f"; connects {len(spans('_connect'))}")
    if writes:
        print(f"first COPY {writes[0]['t0']:.3f}, last commit {writes[-1]['t1']:.3f}, "
              f"{len(writes)} batches")
        busy = sum(e["t1"] - e["t0"] for e in writes)
        copy = sum(e["t1"] - e["t0"] for e in copies)
        commit = sum(w["t1"] - c["t0"] for w, c in zip(writes, commits, strict=False))
        print(f"loader: writing {busy:.3f} s (COPY {copy:.3f}, commit {commit:.3f}, the rest "
              f"{busy - copy - commit:.3f}), waiting for the pipeline "
              f"{sum(b['t0'] - a['t1'] for a, b in zip(writes, writes[1:], strict=False)):.3f} s")
    if puts:
        done = puts[-1]["t1"]
        tail = [w for w in writes if w["t1"] > done]
        print(f"the cutter waited on a full loader queue {sum(e['t1'] - e['t0'] for e in puts):.3f} s; "
              f"pipeline ended {done:.3f}; after it: {len(tail)} batches, "
              f"{(writes[-1]['t1'] - done) if writes else 0:.3f} s")
    names = {k for _, row in SAMPLES for k in row}
    cpu = {k: max(r.get(k, 0.0) for _, r in SAMPLES) - min(r[k] for _, r in SAMPLES if k in r)
           for k in names}
    client = sum(v for k, v in cpu.items() if k not in ("SERVER", "SAMPLER"))
    print(f"CPU s: client {client:.2f} (sampler {cpu.get('SAMPLER', 0):.2f} apart), server "
          f"{cpu.get('SERVER', 0):.2f}; by thread: " + ", ".join(
              f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda x: -x[1])
              if v >= 0.01 and k != "SERVER"))
    cores = [[0.0, 0.0] for _ in range(int(end / bucket) + 1)]
    for (_, a), (t, b) in zip(SAMPLES, SAMPLES[1:], strict=False):
        i = min(int(t / bucket), len(cores) - 1)
        cores[i][0] += sum(b[k] - a.get(k, b[k]) for k in b if k not in ("SERVER", "SAMPLER"))
        cores[i][1] += max(0.0, b["SERVER"] - a["SERVER"])
    print(f"cores busy per {bucket * 1000:.0f} ms, client/server:")
    cells = [f"{i * bucket:5.1f} {c / bucket:.1f}/{s / bucket:.1f}" for i, (c, s) in enumerate(cores)]
    for i in range(0, len(cells), 8):
        print("  ".join(cells[i:i + 8]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "pg")
    ap.add_argument("--null-destination", action="store_true",
                    help="the write is a no-op: the pipeline's own time")
    ap.add_argument("--bucket", type=float, default=0.1, help="seconds per timeline cell")
    ap.add_argument("--json", type=Path, help="write the events and samples here")
    args = ap.parse_args()
    compile_package()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"orders_{args.rows}.csv"
    if not source.exists():
        subprocess.run([sys.executable, "-m", "etlconsole.sample", str(source), str(args.rows),
                        "--seed", "7"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    from postgres.pg import PASSWORD, PgServer, find_bindir
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    server = PgServer(bindir, durable=True).start()
    try:
        os.environ["PGPASSWORD"] = PASSWORD
        for k in [k for k in os.environ if k.startswith("PIPELINE_")]:
            del os.environ[k]
        db = "timeline"     # made by psql: ADBC stays unimported until the job's check
        subprocess.run(["psql", "-X", "-q", "-d", server.url(), "-c", f"CREATE DATABASE {db}"],
                       check=True)
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        state = work / "timeline_state"
        subprocess.run(["rm", "-rf", str(state)], check=True)
        pipeline = work / "timeline_pipeline.toml"
        # the sample's text from a child: this process imports nothing of etlconsole (or
        # pyarrow) before the clock starts, as a job's process
        sample = subprocess.run(
            [sys.executable, "-c", "import sys; from etlconsole.sample import SAMPLE_PIPELINE_TOML "
             "as t; sys.stdout.write(t)"], check=True, capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")}).stdout
        pipeline.write_text(sample.replace(
            'destination = "sqlite"\npath = "warehouse.db"',
            f'destination = "postgres"\nurl = "{server.url(db)}"'))
        global T0
        T0 = time.perf_counter()
        sampler = Sampler(postmaster)
        sampler.start()
        from etlconsole import cli          # the CLI's imports, timed as a job's start
        event("imported", T0, time.perf_counter())
        instrument(args.null_destination)
        state.mkdir(parents=True)
        os.chdir(state)
        try:
            cli.main(["--state", str(state / "state.db"), "run", str(pipeline), "--no-ui", "--json",
                      "--source", str(source)], standalone_mode=False)
        except SystemExit:
            pass
        finally:
            end = time.perf_counter() - T0
            sampler.stop.set()
            sampler.join()
        report(end, args.bucket)
        if args.json:
            args.json.write_text(json.dumps({"events": EVENTS, "samples": SAMPLES}))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
