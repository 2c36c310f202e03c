#!/usr/bin/env python3
"""Benchmark: etlconsole's full sample pipeline into PostgreSQL vs. ``psql \\copy`` (the floor).

For every round, on the same generated orders CSV, into a fresh database each time
(interleaved, the order alternating every round):

  psql \\copy   psql -c "\\copy orders FROM FILE WITH (FORMAT csv, HEADER true)" into 14 text
               columns: no parsing, no validation, no ledger. COPY refuses the whole file for
               one ragged or undecodable record, so it loads a copy of the file without them
               (made once, outside the timing): slightly fewer rows than the CSV.
  etlconsole   etlconsole run pipeline.toml --no-ui --json --source FILE --dest URL
               (clean, validate with rejects, cast, derive, map, binary COPY per batch with
               its ledger row, state store, checkpoints)

then the etlconsole job is rolled back (timed): first ``--to`` its first checkpoint (a
DELETE by lineage of nearly every row), then whole (the table it created is dropped).

Wall time is time.perf_counter() around each child; peak RSS is the child's ru_maxrss
(os.wait4): the client's memory, not the server's. The server is started by this script
from the machine's binaries (tests/postgres/pg.py), unless --url names one (password from
PGPASSWORD).

    python bench/pg_bench.py --rows 1000000 --rounds 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from compiled import compile_package  # noqa: E402  (bench/, this script's folder)

COLUMNS = 14


def log(msg: str) -> None:
    print(f"[pg-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def server_cpu(pid: int | None) -> float:
    """CPU seconds of the server so far: the postmaster, its living children and the
    children it reaped (a backend's time lands in its parent's cutime when it exits)."""
    if pid is None:
        return 0.0

    def ticks(p: str, want_parent: int | None) -> int:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0
        if want_parent is not None and int(fields[1]) != want_parent:
            return 0
        return sum(int(x) for x in fields[11:15])     # utime stime cutime cstime

    time.sleep(0.5)     # the backends of the child that just ended: exited and reaped
    total = ticks(str(pid), None) + sum(ticks(p, pid) for p in os.listdir("/proc") if p.isdigit())
    return total / os.sysconf("SC_CLK_TCK")


LAST_CPU = [0.0]        # the CPU seconds (user + system) of the last child timed


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS MB, stdout) of one child; its CPU time in LAST_CPU."""
    out = cwd / "child.out"
    with open(out, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, out.read_text()


def copyable(src: Path, dst: Path) -> int:
    """The CSV without the records COPY would refuse the whole file for."""
    kept = 0
    with open(src, newline="", encoding="utf-8", errors="surrogateescape") as f, \
            open(dst, "w", newline="", encoding="utf-8") as g:
        reader, writer = csv.reader(f), csv.writer(g)
        writer.writerow(next(reader))
        for row in reader:
            if len(row) != COLUMNS or any("\udc80" <= ch <= "\udcff" for v in row for ch in v):
                continue
            writer.writerow(row)
            kept += 1
    return kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "pg")
    ap.add_argument("--url", help="an existing server (postgresql://user@host:port/postgres)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = ap.parse_args()
    compile_package()      # what `pip install .` does (see compiled.py)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    from etlconsole.sample import SAMPLE_PIPELINE_TOML
    source = work / f"orders_{args.rows}.csv"
    if not source.exists():
        log(f"generating {args.rows:,} rows")
        subprocess.run([sys.executable, "-m", "etlconsole.sample", str(source), str(args.rows),
                        "--seed", "7"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    floor_file = work / f"orders_{args.rows}_copyable.csv"
    if not floor_file.exists():
        log(f"{copyable(source, floor_file):,} records COPY accepts")

    server = None
    postmaster: int | None = None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["PYTHONPATH"] = str(ROOT / "src")
    if args.url:
        base = args.url.rsplit("/", 1)[0]
        admin_url = args.url
    else:
        from postgres.pg import PASSWORD, PgServer, find_bindir
        bindir = find_bindir()
        if bindir is None:
            raise SystemExit("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        server = PgServer(bindir, durable=True).start()   # fsync on, as in production
        postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
        env["PGPASSWORD"] = PASSWORD
        base = f"postgresql://postgres@127.0.0.1:{server.port}"
        admin_url = f"{base}/postgres"

    def psql(db_url: str, *commands: str) -> list[str]:
        out = []
        for c in commands:
            out += ["-c", c]
        return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db_url, *out]

    pipeline = work / "pipeline.toml"
    text = SAMPLE_PIPELINE_TOML.replace('destination = "sqlite"\npath = "warehouse.db"',
                                        f'destination = "postgres"\nurl = "{admin_url}"')
    pipeline.write_text(text)
    cols = ", ".join(f"c{i} text" for i in range(COLUMNS))
    results: dict[str, list[dict]] = {"psql": [], "etlconsole": []}
    try:
        for r in range(args.rounds):
            order = ("psql", "etlconsole") if r % 2 == 0 else ("etlconsole", "psql")
            for tool in order:
                db = f"bench_{tool}_{r}"
                subprocess.run(psql(admin_url, f"DROP DATABASE IF EXISTS {db}", f"CREATE DATABASE {db}"),
                               check=True, env=env, capture_output=True)
                url = f"{base}/{db}"
                source.read_bytes()                     # a warm page cache for both
                if tool == "psql":
                    subprocess.run(psql(url, f"CREATE TABLE orders ({cols})"), check=True, env=env)
                    copy = f"\\copy orders FROM '{floor_file}' WITH (FORMAT csv, HEADER true)"
                    cpu0 = server_cpu(postmaster)
                    wall, rss, _ = timed(psql(url, copy),
                                         env, work)
                    server_s = server_cpu(postmaster) - cpu0
                    count = ["psql", "-X", "-Atc", "SELECT count(*) FROM orders", "-d", url]
                    rows = int(subprocess.run(count,
                                              check=True, env=env, capture_output=True, text=True).stdout)
                    results["psql"].append({"wall_s": wall, "rss_mb": rss, "rows": rows,
                                            "client_cpu_s": LAST_CPU[0], "server_cpu_s": server_s})
                else:
                    state = work / f"state_{r}" / "state.db"
                    cpu0 = server_cpu(postmaster)
                    wall, rss, out = timed([sys.executable, "-m", "etlconsole", "--state", str(state),
                                            "run", str(pipeline), "--no-ui", "--json", "--source",
                                            str(source), "--dest", url], env, work)
                    server_s, client_s = server_cpu(postmaster) - cpu0, LAST_CPU[0]
                    summary = json.loads(out.strip().splitlines()[-1])
                    job = summary["job_id"]
                    shown = json.loads(subprocess.run(
                        [sys.executable, "-m", "etlconsole", "--state", str(state), "show", job,
                         "--json"], check=True, env=env, capture_output=True, text=True, cwd=work).stdout)
                    busy = {f"busy {p['label']}": p["seconds"] for p in shown.get("phase_stats") or []}
                    cps = [json.loads(line) for line in subprocess.run(
                        [sys.executable, "-m", "etlconsole", "--state", str(state), "checkpoints",
                         job, "--json"], check=True, env=env, capture_output=True, text=True,
                        cwd=work).stdout.splitlines() if line.strip()]
                    cli = [sys.executable, "-m", "etlconsole", "--state", str(state), "rollback",
                           job, "--yes"]
                    to_s = None
                    if cps:
                        to_s, _, _ = timed(cli + ["--to", str(cps[0]["id"])], env, work)
                    whole_s, _, _ = timed(cli, env, work)
                    results["etlconsole"].append({
                        "wall_s": wall, "rss_mb": rss, "rows": summary["rows_loaded"],
                        "rejected": summary["rows_rejected"], "rollback_to_first_s": to_s,
                        "rollback_whole_s": whole_s, "elapsed_s": summary["elapsed_s"],
                        "client_cpu_s": client_s, "server_cpu_s": server_s, **busy})
                subprocess.run(psql(admin_url, f"DROP DATABASE {db}"), check=True, env=env,
                               capture_output=True)
                log(f"round {r + 1} {tool}: {results[tool][-1]}")
    finally:
        if server is not None:
            server.stop()

    med = {t: {k: statistics.median(x[k] for x in v if x.get(k) is not None)
               for k in v[0] if any(x.get(k) is not None for x in v)}
           for t, v in results.items()}
    ratio = med["etlconsole"]["wall_s"] / med["psql"]["wall_s"]
    e = med["etlconsole"]
    print(f"## PostgreSQL: {args.rows:,} rows, {args.rounds} rounds (medians)\n")
    print("| tool | wall s | rows loaded | rows/s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    names = {"psql": "psql \\copy", "etlconsole": "etlconsole"}
    for tool in ("psql", "etlconsole"):
        m = med[tool]
        print(f"| {names[tool]} | {m['wall_s']:.2f} | {m['rows']:,.0f} | "
              f"{m['rows'] / m['wall_s']:,.0f} | {m['rss_mb']:.0f} |")
    print("\n| tool | client CPU s | server CPU s |")
    print("|---|---:|---:|")
    for tool in ("psql", "etlconsole"):
        m = med[tool]
        print(f"| {names[tool]} | {m['client_cpu_s']:.2f} | {m['server_cpu_s']:.2f} |")
    print(f"\nratio etlconsole / psql \\copy: **{ratio:.2f}x** (goal <= 2.0x)")
    # On a machine shared with other work, wall times are noisy upwards only: the best
    # round of each tool is the steadier comparison (CPU seconds are steadier still).
    best = {t: min(x["wall_s"] for x in v) for t, v in results.items()}
    print(f"best rounds: psql \\copy {best['psql']:.2f} s, etlconsole {best['etlconsole']:.2f} s, "
          f"ratio {best['etlconsole'] / best['psql']:.2f}x")
    # CPU seconds barely move with the machine's load: the figure to compare versions by.
    low = {k: min(x[k] for x in results["etlconsole"]) for k in ("client_cpu_s", "server_cpu_s")}
    print(f"etlconsole's least CPU of the rounds: client {low['client_cpu_s']:.2f} s, server "
          f"{low['server_cpu_s']:.2f} s")
    print("etlconsole's phases, busy seconds (they overlap): " + ", ".join(
        f"{k[5:]} {v:.2f}" for k, v in e.items() if k.startswith("busy ")))
    if "rollback_to_first_s" in e:
        print(f"rollback --to first checkpoint (DELETE by lineage): {e['rollback_to_first_s']:.2f} s "
              f"= {e['rollback_to_first_s'] / e['wall_s']:.2f}x the load")
    print(f"rollback whole (DROP of the table it created): {e['rollback_whole_s']:.2f} s = "
          f"{e['rollback_whole_s'] / e['wall_s']:.2f}x the load (goal <= 0.3x)")
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "rounds": results, "medians": med,
                                         "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
