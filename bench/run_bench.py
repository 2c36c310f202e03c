#!/usr/bin/env python3
"""Benchmark: etlconsole vs. the sqlite3 shell and sqlite-utils on the sample orders CSV.

For every size and round, the three tools load the same CSV into a fresh SQLite file,
one after the other (interleaved, so machine noise hits all of them alike):

  sqlite3       sqlite3 fresh.db ".import --csv FILE orders"        (raw text, no checks)
  sqlite-utils  sqlite-utils insert fresh.db orders FILE --csv      (4.x: detects column types)
  etlconsole    etlconsole --state fresh_state.db run pipeline.toml --no-ui --json
                    --source FILE --dest fresh.db                   (clean/validate/cast/map/load)

Wall time is time.perf_counter() around each child; peak RSS is the child's own
ru_maxrss from os.wait4(). Stdlib only; see bench/README.md.

    python bench/run_bench.py                 # 200K, 1M, 2M rows x 3 rounds
    python bench/run_bench.py --quick         # 100K rows
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from compiled import compile_package, interpreter_of

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_WORK_DIR = BENCH_DIR / "out" / "data"
DEFAULT_RESULTS = BENCH_DIR / "out" / "results.json"
DEFAULT_ROWS = (200_000, 1_000_000, 2_000_000)
QUICK_ROWS = (100_000,)
SEED = 7
TABLE = "orders"
TOOLS = ("sqlite3", "sqlite-utils", "etlconsole")
GATE_ROWS = 1_000_000            # --max-ratio is checked at this size if present, else the largest


# -- small helpers ------------------------------------------------------------------------
def log(msg: str) -> None:
    """Progress goes to stderr; stdout is reserved for the Markdown report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_rows(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        p = part.strip().lower().replace("_", "")
        if not p:
            continue
        mult = 1
        if p[-1] in "km":
            mult = 1_000 if p[-1] == "k" else 1_000_000
            p = p[:-1]
        try:
            n = int(float(p) * mult)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad row count {part!r}") from None
        if n <= 0:
            raise argparse.ArgumentTypeError(f"row count must be positive, not {part!r}")
        sizes.append(n)
    if not sizes:
        raise argparse.ArgumentTypeError("no row counts given")
    return sorted(set(sizes))


def human_rows(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}K"
    return str(n)


def find_tool(name: str, explicit: str | None = None) -> str:
    """An explicit path, else the tool next to this Python (the venv), else PATH."""
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if not found:
        sys.exit(f"error: {name} not found (activate the venv or pass --{name}-bin)")
    return found


def remove_db(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()


def clean_scratch(scratch: Path) -> None:
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)


def count_rows(db: Path) -> int | None:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return None


def warm_cache(path: Path) -> None:
    """Read the CSV once so no tool pays for a cold page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


# -- data ---------------------------------------------------------------------------------
def ensure_data(work_dir: Path, rows: int) -> tuple[Path, dict]:
    """orders_<rows>.csv plus its manifest, generated once and cached in work_dir."""
    csv_path = work_dir / f"orders_{rows}.csv"
    meta_path = work_dir / f"orders_{rows}.manifest.json"
    if csv_path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if (meta.get("seed") == SEED and meta["manifest"]["rows"] == rows
                    and meta.get("csv_bytes") == csv_path.stat().st_size):
                log(f"data: reusing {csv_path.name} ({meta['csv_bytes'] / 1e6:.0f} MB)")
                return csv_path, meta["manifest"]
        except (ValueError, KeyError, TypeError):
            pass
        log(f"data: cached {csv_path.name} does not match its manifest; regenerating")

    tmp = csv_path.with_name(csv_path.name + ".tmp")
    cmd = [sys.executable, "-m", "etlconsole.sample", str(tmp), str(rows), "--seed", str(SEED)]
    log(f"data: generating {rows:,} rows -> {csv_path.name}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: sample generator failed ({proc.returncode}): {proc.stderr.strip()}")
    manifest = json.loads(proc.stdout)
    if manifest.get("rows") != rows:
        sys.exit(f"error: generator manifest says {manifest.get('rows')} rows, asked for {rows}")
    tmp.replace(csv_path)
    meta = {"seed": SEED, "csv_bytes": csv_path.stat().st_size, "generator_cmd": cmd[1:],
            "generated_in_s": round(time.perf_counter() - t0, 2), "manifest": manifest}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"data: {csv_path.name} {meta['csv_bytes'] / 1e6:.0f} MB in {meta['generated_in_s']}s")
    return csv_path, manifest


# -- one measured child -------------------------------------------------------------------
# ru_maxrss on Linux is inherited across fork/vfork+exec: a child of this Python process
# reports at least *this* process's peak RSS (~15 MB+) even if the tool itself is smaller
# (the sqlite3 shell needs ~6 MB). So, where possible, each tool is started by a tiny
# /bin/sh that backgrounds it and exits at once; this process is a child subreaper
# (prctl PR_SET_CHILD_SUBREAPER), inherits the orphaned tool and reaps it itself with
# os.wait4(pid, 0) -- the rusage is then the tool's own, inherited floor ~1-2 MB (the sh).
# Otherwise (no prctl), the tool is started directly with subprocess.Popen and the floor
# (this process's own ru_maxrss) is recorded with every run.
_SH_LAUNCH = 'o=$1 e=$2; shift 2; "$@" </dev/null >"$o" 2>"$e" & echo $!'
_SUBREAPER: bool | None = None


def enable_subreaper() -> bool:
    global _SUBREAPER
    if _SUBREAPER is None:
        _SUBREAPER = False
        if sys.platform.startswith("linux") and Path("/bin/sh").exists():
            try:
                import ctypes
                libc = ctypes.CDLL(None, use_errno=True)
                _SUBREAPER = libc.prctl(36, 1, 0, 0, 0) == 0      # PR_SET_CHILD_SUBREAPER
            except (OSError, AttributeError):
                _SUBREAPER = False
    return _SUBREAPER


def self_maxrss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(cmd: list[str], cwd: Path, stdout_path: Path, stderr_path: Path | None,
            timeout: float) -> dict:
    """Run cmd; wall time via perf_counter, the tool's own rusage via os.wait4."""
    err_target = str(stderr_path) if stderr_path else os.devnull
    floor = self_maxrss_mb()
    killed = threading.Event()
    pid = None

    def _kill():
        killed.set()
        if pid is not None:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    timer = threading.Timer(timeout, _kill)
    if enable_subreaper():
        launcher = "sh+subreaper"
        t0 = time.perf_counter()
        sh = subprocess.Popen(["/bin/sh", "-c", _SH_LAUNCH, "sh", str(stdout_path), err_target, *cmd],
                              cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        out, _ = sh.communicate()                 # sh prints the pid and exits at once
        try:
            pid = int(out.split()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(f"launcher did not report a pid: {out!r}") from None
        floor = None                              # see above: ~ the sh's RSS
    else:
        launcher = "direct"
        with open(stdout_path, "wb") as o, open(err_target, "wb") as e:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=o, stderr=e)
        pid = proc.pid
    timer.start()
    try:
        _, status, ru = os.wait4(pid, 0)
    except BaseException:
        _kill()
        raise
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    if launcher == "direct":
        proc.returncode = os.waitstatus_to_exitcode(status)   # already reaped by wait4
    return {"wall_s": wall, "rc": os.waitstatus_to_exitcode(status), "timed_out": killed.is_set(),
            "maxrss_mb": ru.ru_maxrss / 1024,                 # Linux: KB
            "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
            "launcher": launcher, "rss_floor_mb": floor}


def tail_text(path: Path, n: int = 5) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def run_tool(tool: str, bins: dict, csv_path: Path, pipeline: Path, scratch: Path,
             timeout: float) -> dict:
    clean_scratch(scratch)
    dest = scratch / "fresh.db"
    stdout_path, stderr_path = scratch / "stdout.txt", scratch / "stderr.txt"
    if tool == "sqlite3":
        cmd = [bins["sqlite3"], str(dest), f".import --csv {csv_path} {TABLE}"]
        stderr_path = None            # one warning per ragged row
    elif tool == "sqlite-utils":
        cmd = [bins["sqlite-utils"], "insert", str(dest), TABLE, str(csv_path), "--csv"]
    else:
        cmd = [bins["etlconsole"], "--state", str(scratch / "fresh_state.db"), "run", str(pipeline),
               "--no-ui", "--json", "--source", str(csv_path), "--dest", str(dest)]
    m = measure(cmd, scratch, stdout_path, stderr_path, timeout)
    m["tool"], m["cmd"] = tool, cmd
    m["dest_rows"] = count_rows(dest) if m["rc"] == 0 else None
    if tool == "etlconsole":
        lines = stdout_path.read_text(errors="replace").strip().splitlines()
        try:
            m["summary"] = json.loads(lines[-1]) if lines else None
        except ValueError:
            m["summary"] = None
    if m["rc"] != 0:
        m["stderr_tail"] = tail_text(stderr_path) if stderr_path else ""
        m["stdout_tail"] = tail_text(stdout_path)
    # leave nothing behind (the next tool must not inherit dirty pages of this one's file)
    shutil.rmtree(scratch)
    if hasattr(os, "sync"):
        os.sync()
    return m


def check_run(m: dict, rows: int, manifest: dict) -> list[str]:
    """Problems with one run; etlconsole's counts are checked strictly."""
    tool, errs = m["tool"], []
    if m["timed_out"]:
        errs.append(f"{tool}: killed after the timeout")
    if m["rc"] != 0:
        errs.append(f"{tool}: exit code {m['rc']}: {m.get('stderr_tail') or m.get('stdout_tail')}")
        return errs
    if tool != "etlconsole":
        return errs
    s = m.get("summary")
    if not isinstance(s, dict):
        return errs + ["etlconsole: last stdout line is not the JSON summary"]
    if s.get("status") != "succeeded":
        errs.append(f"etlconsole: status {s.get('status')!r}: {s.get('error')}")
    r, l, j = s.get("rows_read"), s.get("rows_loaded"), s.get("rows_rejected")
    if r != rows:
        errs.append(f"etlconsole: rows_read {r} != {rows} rows in the CSV")
    if None in (l, j) or l + j != r:
        errs.append(f"etlconsole: rows_loaded {l} + rows_rejected {j} != rows_read {r}")
    if l != manifest["expected_loaded"]:
        errs.append(f"etlconsole: rows_loaded {l} != manifest expected_loaded "
                    f"{manifest['expected_loaded']}")
    if m["dest_rows"] != l:
        errs.append(f"etlconsole: destination table has {m['dest_rows']} rows, summary says {l}")
    return errs


# -- machine ------------------------------------------------------------------------------
def machine_info(bins: dict) -> dict:
    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    def pkg(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "nproc": affinity or os.cpu_count(), "cpu_count": os.cpu_count(), "cpu_model": cpu,
        "mem_total_gb": mem_gb, "platform": platform.platform(),
        "python": platform.python_version(), "python_executable": sys.executable,
        "pyarrow": pkg("pyarrow"), "etlconsole": pkg("etlconsole"),
        "sqlite_utils": pkg("sqlite-utils"), "adbc_driver_sqlite": pkg("adbc-driver-sqlite"),
        "sqlite3_shell": version([bins["sqlite3"], "--version"]),
        "python_sqlite3_lib": sqlite3.sqlite_version,
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "pipeline_env": {k: v for k, v in os.environ.items() if k.startswith("PIPELINE_")},
        "bins": bins,
    }


# -- report -------------------------------------------------------------------------------
def summarize(sizes: list[int], runs: list[dict]) -> dict:
    out = {}
    for rows in sizes:
        by_tool = {t: [r for r in runs if r["rows"] == rows and r["tool"] == t] for t in TOOLS}
        by_tool = {t: rs for t, rs in by_tool.items() if rs}       # a tool may be skipped
        med = {t: statistics.median(r["wall_s"] for r in rs) for t, rs in by_tool.items()}
        rss = {t: max(r["maxrss_mb"] for r in rs) for t, rs in by_tool.items()}
        etl = by_tool["etlconsole"]
        rows_read = etl[0]["summary"]["rows_read"]
        out[rows] = {
            "median_wall_s": med,
            "min_wall_s": {t: min(r["wall_s"] for r in rs) for t, rs in by_tool.items()},
            "max_wall_s": {t: max(r["wall_s"] for r in rs) for t, rs in by_tool.items()},
            "ratio_vs_sqlite3": med["etlconsole"] / med["sqlite3"],
            "ratio_vs_sqlite_utils": (med["etlconsole"] / med["sqlite-utils"]
                                      if "sqlite-utils" in med else None),
            "etlconsole_rows_per_s": rows_read / med["etlconsole"],
            "peak_rss_mb": rss,
            "etlconsole_self_peak_rss_mb": max(r["summary"]["peak_rss_mb"] for r in etl),
            "etlconsole_median_elapsed_s": statistics.median(r["summary"]["elapsed_s"] for r in etl),
            "rss_floor_mb": {t: max((r["rss_floor_mb"] or 0) for r in rs) or None
                             for t, rs in by_tool.items()},
            "rows_read": rows_read,
            "rows_loaded": etl[0]["summary"]["rows_loaded"],
            "rows_rejected": etl[0]["summary"]["rows_rejected"],
            "baseline_dest_rows": {t: sorted({r["dest_rows"] for r in by_tool.get(t, [])})
                                   for t in ("sqlite3", "sqlite-utils")},
        }
    return out


def markdown(sizes: list[int], summ: dict, rounds: int, flatness: float | None,
             machine: dict, runs: list[dict]) -> str:
    def mb(s, tool):
        if tool not in s["peak_rss_mb"]:
            return "–"
        v, floor = s["peak_rss_mb"][tool], s["rss_floor_mb"][tool]
        return f"<={v:.0f}" if floor and v <= floor + 1 else f"{v:.0f}"

    L = []
    L.append(f"Machine: nproc {machine['nproc']} ({machine['cpu_model'] or '?'}), "
             f"{machine['mem_total_gb']} GB RAM, Python {machine['python']}, "
             f"pyarrow {machine['pyarrow']}, sqlite3 {(machine['sqlite3_shell'] or '?').split()[0]}, "
             f"sqlite-utils {machine['sqlite_utils']}, etlconsole {machine['etlconsole']}")
    if machine["pipeline_env"]:
        L.append(f"Note: PIPELINE_* set in the environment: {machine['pipeline_env']}")
    L.append("")
    launchers = sorted({r["launcher"] for r in runs})
    L.append(f"Median wall time of {rounds} round(s); RSS = peak over rounds of the tool's own "
             f"ru_maxrss (os.wait4; launcher: {', '.join(launchers)}).")
    if "direct" in launchers:
        L.append("RSS marked <= is at the floor inherited from this script's own RSS, "
                 "not the tool's (see README).")
    L.append("")
    L.append("| rows | sqlite3 s | sqlite-utils s | etlconsole s | etl/sqlite3 | etl/sqlite-utils "
             "| etl rows/s | RSS sqlite3 MB | RSS sqlite-utils MB | RSS etlconsole MB | etl self-reported RSS MB |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows in sizes:
        s = summ[rows]
        m = s["median_wall_s"]
        su = f"{m['sqlite-utils']:.2f}" if "sqlite-utils" in m else "–"
        su_ratio = (f"{s['ratio_vs_sqlite_utils']:.2f}x" if s["ratio_vs_sqlite_utils"] is not None
                    else "–")
        L.append(f"| {human_rows(rows)} | {m['sqlite3']:.2f} | {su} "
                 f"| {m['etlconsole']:.2f} | {s['ratio_vs_sqlite3']:.2f}x "
                 f"| {su_ratio} | {s['etlconsole_rows_per_s']:,.0f} "
                 f"| {mb(s, 'sqlite3')} | {mb(s, 'sqlite-utils')} | {mb(s, 'etlconsole')} "
                 f"| {s['etlconsole_self_peak_rss_mb']:.0f} |")
    L.append("")
    if flatness is not None:
        L.append(f"Memory flatness (etlconsole peak RSS at {human_rows(sizes[-1])} / at "
                 f"{human_rows(sizes[0])}): {flatness:.2f}x "
                 f"({summ[sizes[-1]]['peak_rss_mb']['etlconsole']:.0f} MB / "
                 f"{summ[sizes[0]]['peak_rss_mb']['etlconsole']:.0f} MB)")
    else:
        L.append("Memory flatness: n/a (one size only)")
    L.append("")
    L.append("Spread (min - max wall s over rounds) and etlconsole counts:")
    L.append("")
    L.append("| rows | sqlite3 | sqlite-utils | etlconsole | etl read | etl loaded | etl rejected "
             "| rows in sqlite3 / sqlite-utils table |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows in sizes:
        s = summ[rows]
        lo, hi = s["min_wall_s"], s["max_wall_s"]
        b = s["baseline_dest_rows"]
        L.append(f"| {human_rows(rows)} | "
                 + " | ".join(f"{lo[t]:.2f} - {hi[t]:.2f}" if t in lo else "–" for t in TOOLS)
                 + f" | {s['rows_read']:,} | {s['rows_loaded']:,} | {s['rows_rejected']:,} "
                 f"| {'/'.join(map(str, b['sqlite3']))} / {'/'.join(map(str, b['sqlite-utils']))} |")
    return "\n".join(L)


# -- main ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=parse_rows, default=None,
                    help="comma-separated sizes (default 200000,1000000,2000000; 200k,1M ok)")
    ap.add_argument("--quick", action="store_true", help="100000 rows only (unless --rows is given)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per size (default 3)")
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                    help=f"cached CSVs and scratch files (default {DEFAULT_WORK_DIR.relative_to(BENCH_DIR.parent)})")
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                    help=f"raw results JSON (default {DEFAULT_RESULTS.relative_to(BENCH_DIR.parent)})")
    ap.add_argument("--max-ratio", type=float, default=None,
                    help="exit 1 if etlconsole/sqlite3 median wall ratio at 1M rows "
                         "(or the largest size) exceeds this")
    ap.add_argument("--max-rss-mb", type=float, default=None,
                    help="exit 1 if etlconsole's peak RSS (any size) exceeds this")
    ap.add_argument("--launcher", choices=("auto", "direct"), default="auto",
                    help="auto: sh + child subreaper where available (exact child RSS); "
                         "direct: plain Popen (child RSS floored at this script's RSS)")
    ap.add_argument("--timeout", type=float, default=3600, help="kill a run after this many s")
    ap.add_argument("--sqlite-utils-max-rows", type=int, default=1_000_000,
                    help="skip sqlite-utils (5K rows/s) above this size (default 1000000)")
    ap.add_argument("--sqlite3-bin", default=None, help="sqlite3 shell (default /usr/bin/sqlite3)")
    ap.add_argument("--sqlite-utils-bin", default=None)
    ap.add_argument("--etlconsole-bin", default=None)
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    sizes = args.rows or list(QUICK_ROWS if args.quick else DEFAULT_ROWS)
    if args.launcher == "direct":
        global _SUBREAPER
        _SUBREAPER = False

    sqlite3_default = "/usr/bin/sqlite3" if Path("/usr/bin/sqlite3").exists() else None
    bins = {"sqlite3": find_tool("sqlite3", args.sqlite3_bin or sqlite3_default),
            "sqlite-utils": find_tool("sqlite-utils", args.sqlite_utils_bin),
            "etlconsole": find_tool("etlconsole", args.etlconsole_bin)}
    # Read in a child: importing etlconsole here would grow this process (and with it the
    # RSS floor of directly started children, see measure()) by ~40 MB of pyarrow.
    got = subprocess.run([sys.executable, "-c", "import sys; from etlconsole.sample import "
                          "SAMPLE_PIPELINE_TOML as t; sys.stdout.write(t)"],
                         capture_output=True, text=True)
    if got.returncode != 0:
        sys.exit(f"error: etlconsole is not importable (activate /work/venv): {got.stderr.strip()}")
    SAMPLE_PIPELINE_TOML = got.stdout
    # what `pip install .` does: no run compiles its modules (see compiled.py)
    compile_package(interpreter_of(bins["etlconsole"]))

    work_dir = args.work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    scratch = work_dir / "scratch"
    pipeline = work_dir / "pipeline.toml"
    pipeline.write_text(SAMPLE_PIPELINE_TOML)
    machine = machine_info(bins)
    log(f"machine: nproc {machine['nproc']}, Python {machine['python']}, pyarrow "
        f"{machine['pyarrow']}, sqlite3 {machine['sqlite3_shell']}")
    if machine["pipeline_env"]:
        log(f"warning: PIPELINE_* variables are set and will reach etlconsole: {machine['pipeline_env']}")

    data = {rows: ensure_data(work_dir, rows) for rows in sizes}

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    runs, failures = [], []
    # For each size, round after round; within a round the three tools run back to back,
    # in an order rotated each round so no tool always goes first.
    for rows in sizes:
        csv_path, manifest = data[rows]
        for rnd in range(args.rounds):
            warm_cache(csv_path)
            k = rnd % len(TOOLS)
            order = TOOLS[k:] + TOOLS[:k]
            for tool in order:
                if tool == "sqlite-utils" and rows > args.sqlite_utils_max_rows:
                    continue                    # ~6 minutes per 2M-row run; see README
                m = run_tool(tool, bins, csv_path, pipeline, scratch, args.timeout)
                m.update(rows=rows, round=rnd + 1, position=order.index(tool) + 1)
                errs = check_run(m, rows, manifest)
                m["errors"] = errs
                runs.append(m)
                extra = ""
                if tool == "etlconsole" and isinstance(m.get("summary"), dict):
                    s = m["summary"]
                    extra = (f" read {s.get('rows_read')} loaded {s.get('rows_loaded')} "
                             f"rejected {s.get('rows_rejected')} self-RSS {s.get('peak_rss_mb')} MB")
                log(f"{human_rows(rows):>5} round {rnd + 1}/{args.rounds} {tool:<12} "
                    f"{m['wall_s']:8.2f}s  RSS {m['maxrss_mb']:7.1f} MB  rc {m['rc']}{extra}")
                for e in errs:
                    log(f"FAIL {e}")
                failures += [f"{human_rows(rows)} round {rnd + 1}: {e}" for e in errs]
                if errs and m["rc"] != 0:
                    break                       # don't keep hammering a broken setup
            if failures:
                break
        if failures:
            break
    if scratch.exists():
        shutil.rmtree(scratch)

    results = {"started_at": started,
               "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "args": {"rows": sizes, "rounds": args.rounds, "seed": SEED,
                        "max_ratio": args.max_ratio, "max_rss_mb": args.max_rss_mb,
                        "argv": sys.argv},
               "machine": machine,
               "data": {str(r): {"csv": str(p), "csv_bytes": p.stat().st_size, "manifest": man}
                        for r, (p, man) in data.items()},
               "runs": runs, "failures": failures}
    args.results.parent.mkdir(parents=True, exist_ok=True)

    def write_results():
        args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
        log(f"raw results: {args.results}")

    if failures:
        results["ok"] = False
        write_results()
        print("BENCHMARK FAILED (correctness):", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1

    summ = summarize(sizes, runs)
    big, small = sizes[-1], sizes[0]
    flatness = (summ[big]["peak_rss_mb"]["etlconsole"] / summ[small]["peak_rss_mb"]["etlconsole"]
                if big != small else None)
    gate_rows = GATE_ROWS if GATE_ROWS in sizes else big
    gate = {"ratio_rows": gate_rows, "ratio_vs_sqlite3": summ[gate_rows]["ratio_vs_sqlite3"],
            "max_ratio": args.max_ratio,
            "etlconsole_peak_rss_mb": max(s["peak_rss_mb"]["etlconsole"] for s in summ.values()),
            "max_rss_mb": args.max_rss_mb, "failed": []}
    if args.max_ratio is not None and gate["ratio_vs_sqlite3"] > args.max_ratio:
        gate["failed"].append(f"etlconsole/sqlite3 at {human_rows(gate_rows)} rows is "
                              f"{gate['ratio_vs_sqlite3']:.2f}x > --max-ratio {args.max_ratio}")
    if args.max_rss_mb is not None and gate["etlconsole_peak_rss_mb"] > args.max_rss_mb:
        gate["failed"].append(f"etlconsole peak RSS {gate['etlconsole_peak_rss_mb']:.0f} MB > "
                              f"--max-rss-mb {args.max_rss_mb:g}")
    results.update(ok=not gate["failed"], gate=gate, memory_flatness=flatness,
                   summary={str(k): v for k, v in summ.items()})
    write_results()

    print(markdown(sizes, summ, args.rounds, flatness, machine, runs))
    if args.max_ratio is not None or args.max_rss_mb is not None:
        print()
        print("Gate: " + ("FAILED - " + "; ".join(gate["failed"]) if gate["failed"] else
                          f"passed (ratio {gate['ratio_vs_sqlite3']:.2f}x at {human_rows(gate_rows)}, "
                          f"peak RSS {gate['etlconsole_peak_rss_mb']:.0f} MB)"))
    return 1 if gate["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
