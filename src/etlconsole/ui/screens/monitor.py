"""Monitor: the running (or last) job, live: progress, speed, memory, charts, phases, events."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Footer, Static

from ... import api
from ...records import Job, JobStatus, PhaseLine, event_detail
from .. import format as fmt
from ..widgets.chart import Chart
from ..widgets.table import LiveTable
from .base import UNCHANGED, PolledScreen

CHART_SAMPLES = 120
DEAD_CHECK_S = 5.0


@dataclass
class MonitorData:
    job: Job | None
    metrics: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    waiting: str | None = None        # launched, no job yet (or it failed to start)
    failed_start: bool = False
    workers: list[dict] | None = None     # a Dask job's latest workers event (ADR 0026)


class MonitorScreen(PolledScreen):
    DEFAULT_CSS = """
    MonitorScreen { layout: vertical; }
    #m-title { height: 1; background: $boost; text-style: bold; }
    .m-line { height: auto; }      /* a line longer than the terminal wraps, not cut */
    #m-final { height: auto; }
    /* charts and events share what the lines and the phase table leave; the charts stop
       growing at 12 lines, so on a tall terminal the events get the rest */
    #m-charts { height: 1fr; min-height: 4; max-height: 12; }
    #m-charts > Chart { width: 1fr; margin-right: 1; }
    #m-phases { height: auto; max-height: 9; }
    /* a Dask job's workers; a local job has none and the table takes no line */
    #m-workers { height: auto; max-height: 7; display: none; }
    #m-workers.-shown { display: block; }
    #m-events { height: 1fr; min-height: 3; color: $text-muted; text-wrap: nowrap;
                text-overflow: ellipsis; }
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.job_id: str | None = None
        self.last_metric_id = 0
        self.last_sample: dict | None = None
        self._dead_check = 0.0

    def compose(self) -> ComposeResult:
        yield Static("monitor", id="m-title", markup=False)
        yield Static("", id="m-progress", classes="m-line", markup=False)
        yield Static("", id="m-rows", classes="m-line", markup=False)
        yield Static("", id="m-speed", classes="m-line", markup=False)
        yield Static("", id="m-memory", classes="m-line", markup=False)
        yield Static("", id="m-final", markup=False)
        with Horizontal(id="m-charts"):
            yield Chart("rows/s", "", size=CHART_SAMPLES, id="chart-rows")
            yield Chart("RSS", "MB", size=CHART_SAMPLES, id="chart-rss")
        yield LiveTable([("phase", "label"), ("rows in", "in"), ("rows out", "out"),
                         ("rejected", "rej"), ("busy", "time")], id="m-phases",
                        cursor_type="none", show_cursor=False)
        yield LiveTable([("worker", "worker"), ("file", "file"), ("rows/s", "rate"),
                         ("memory", "rss")], id="m-workers", cursor_type="none",
                        show_cursor=False)
        yield Static("", id="m-events", markup=False)
        yield Footer(compact=True, show_command_palette=False)

    # -- worker thread ------------------------------------------------------------
    def collect(self) -> MonitorData | object:
        app = self.console_app
        store = self.store
        launched = app.watched_launch
        job_id = app.watch_job_id
        if launched is not None and launched.job_id is None:
            found = api.job_by_pid(store, launched.pid)
            if found is None:
                if launched.running:
                    return MonitorData(None, waiting=f"starting the engine (pid {launched.pid}) …")
                error = launched.error_line() or f"the engine exited with code {launched.returncode}"
                return MonitorData(None, waiting=error, failed_start=True)
            launched.job_id = found.id
        if launched is not None:
            job_id = launched.job_id
            starting = self._starting(store, launched)
            if starting:
                return MonitorData(None, waiting=starting)
        changed = self.store_changed()
        if time.monotonic() - self._dead_check > DEAD_CHECK_S:
            self._dead_check = time.monotonic()
            api.mark_dead_jobs(store)
            changed = True      # (its own write does not move data_version: read anyway)
        if not (changed or self.forced) and self.job_id is not None \
                and job_id in (None, self.job_id):
            return UNCHANGED    # nothing was written since the last poll: nothing to draw
        if job_id is None:
            running = [j for j in api.recent_jobs(store, 20) if j.status.active]
            jobs = running or api.recent_jobs(store, 1)
            if not jobs:
                return MonitorData(None, waiting="no jobs yet: p opens the pipeline builder "
                                   "(a pipeline file, or a new name.toml)")
            job_id = jobs[0].id
        job = api.find(store, job_id)
        after = self.last_metric_id if job_id == self.job_id else 0
        metrics = api.metrics_since(store, job_id, after, CHART_SAMPLES)
        note = None
        if launched is not None and not launched.running and launched.returncode == 2:
            note = launched.error_line()      # e.g. resume refused: one line from the engine
        return MonitorData(job, metrics, api.recent_events(store, job_id, 12), waiting=note,
                           workers=api.latest_workers(store, job))

    @staticmethod
    def _starting(store, launched) -> str | None:
        """A resume the console launched, before its engine took the job over: the job's
        record still holds the stopped run's figures, which are not this run's."""
        if not launched.running:
            return None
        job = api.find(store, launched.job_id)
        if job.pid == launched.pid:
            return None
        return f"starting the engine (pid {launched.pid}) to resume job {job.id} …"

    # -- UI thread ------------------------------------------------------------------
    def render_data(self, data: MonitorData) -> None:
        if data.job is None:
            self._clear()
            self.query_one("#m-final", Static).update(
                Text(data.waiting or "", style="bold red" if data.failed_start else ""))
            return
        job = data.job
        if job.id != self.job_id:
            self.job_id, self.last_metric_id, self.last_sample = job.id, 0, None
            for chart in self.query(Chart):
                chart.reset()
        if data.metrics:
            self.last_metric_id = data.metrics[-1]["id"]
            self.last_sample = data.metrics[-1]
            self.query_one("#chart-rows", Chart).extend(m["rows_per_s"] for m in data.metrics)
            self.query_one("#chart-rss", Chart).extend(m["rss_mb"] for m in data.metrics)
        self._render_job(job, self.last_sample)
        if data.waiting:
            self.query_one("#m-final", Static).update(Text(data.waiting, style="bold red"))
        self._render_phases(job)
        self._render_workers(data.workers)
        self._render_events(data.events)

    def _clear(self) -> None:
        """No job to show (yet): nothing of the job shown before may stay on screen."""
        self.job_id, self.last_metric_id, self.last_sample = None, 0, None
        self.query_one("#m-title", Static).update(Text("monitor", style="bold"))
        for line in ("#m-progress", "#m-rows", "#m-speed", "#m-memory"):
            self.query_one(line, Static).update("")
        for chart in self.query(Chart):
            chart.reset()
        self.query_one("#m-phases", LiveTable).sync([])
        self._render_workers(None)
        self.query_one("#m-events", Static).update("")

    def _render_job(self, job: Job, m: dict | None) -> None:
        st = job.status
        live = st.active
        title = Text.assemble(
            ("job ", "bold"), (job.id, "bold"), "  ", fmt.status(st), "  ",
            fmt.text(f"{job.pipeline_name}  {_name(job.source_path)}"))
        self.query_one("#m-title", Static).update(title)
        total = job.bytes_total or 0
        if live and m:
            # The sample is up to half a second old; the job's committed counters may be
            # newer, and "read" must never show less than loaded + rejected.
            done, elapsed = m["bytes_read"] or 0, m["elapsed_s"] or 0
            rows = max(m["rows_read"] or 0, job.rows_read or 0)
        else:
            done, elapsed, rows = job.bytes_read or 0, job.elapsed_s or 0, job.rows_read
        if st == JobStatus.SUCCEEDED:
            done = total
        pct = done / total if total else 0.0
        seg = _segment(m, elapsed, rows, done)
        eta = seg.eta(total - done) if live else None
        eta_text = f"ETA {fmt.duration(eta)}" if live and eta is not None else ""
        self.query_one("#m-progress", Static).update(Text.assemble(
            (fmt.bar(pct, 30), "cyan"), f" {pct:6.1%}  ", f"{_size(done, total)}  {eta_text}"))
        self.query_one("#m-rows", Static).update(Text(
            f"rows read {fmt.num(rows)} · loaded {fmt.num(job.rows_loaded)} · "
            f"rejected {fmt.num(job.rows_rejected)}"
            + (f" · warned {fmt.num(job.rows_warned)}" if job.rows_warned else "")))
        avg = seg.rate
        retries = m["retries"] if (live and m) else job.retries
        runs = f" over {seg.number} runs" if seg.number > 1 else ""
        if live:
            now, batch = (m["rows_per_s"], m["batch_size"]) if m else (0, 0)
            speed = (f"rows/s {fmt.rate(now)} now, {fmt.rate(avg)} avg · batch {fmt.num(batch)}"
                     f" · retries {retries or 0} · elapsed {_seconds(elapsed)}{runs}")
        else:
            speed = (f"rows/s {fmt.rate(avg)} avg{' (last run)' if runs else ''} · retries "
                     f"{retries or 0} · elapsed {_seconds(job.elapsed_s)}{runs}")
        self.query_one("#m-speed", Static).update(Text(speed))
        budget = job.settings.get("max_memory_mb")
        rss = m["rss_mb"] if (live and m) else None
        peak = job.peak_rss_mb
        parts = []
        if rss is not None:
            parts.append(f"RSS {rss:,.0f} MB")
        # The job row's peak is of the segments that ended: a live sample above it is the
        # peak now, and is shown once.
        if peak and (rss is None or peak > rss):
            parts.append(f"peak {peak:,.0f} MB")
        line = Text("memory " + (" · ".join(parts) or "-"))
        if budget:
            line.append(f" of PIPELINE_MAX_MEMORY_MB={budget}")
            if rss is not None and rss > 0.9 * budget:
                line.stylize("bold red")
        self.query_one("#m-memory", Static).update(line)
        final = Text()
        if not live:
            final = Text.assemble(("finished: ", "bold"), fmt.status(st),
                                  f" in {_seconds(job.elapsed_s)}  ")
            if job.error:
                final.append(job.error, style="red")
        self.query_one("#m-final", Static).update(final)

    def _render_phases(self, job: Job) -> None:
        rows = [(str(i), _phase_row(p)) for i, p in enumerate(job.phase_stats)]
        self.query_one("#m-phases", LiveTable).sync(rows)

    def _render_workers(self, workers: list[dict] | None) -> None:
        """Each Dask worker: the file of the part it streams, its rows/s and memory, as the
        driver's last ``workers`` event has them (every two seconds while the job runs)."""
        table = self.query_one("#m-workers", LiveTable)
        table.set_class(bool(workers), "-shown")
        table.sync([(str(w.get("worker")), (_worker(w.get("worker")), _part(w),
                                            fmt.rate(w.get("rows_per_s") or 0),
                                            f"{w.get('rss_mb') or 0:,.0f} MB"))
                    for w in workers or []])

    def _render_events(self, events: list[dict[str, Any]]) -> None:
        out = Text(no_wrap=True, overflow="ellipsis")
        for e in reversed(events):
            detail = event_detail(e["event"], e["details"])
            style = "red" if e["level"] == "error" else ("yellow" if e["level"] == "warning" else "")
            out.append(f"{fmt.stamp(e['at'])[11:]} {e['event']} {detail}"[:300] + "\n", style=style)
        self.query_one("#m-events", Static).update(out)


@dataclass
class _Segment:
    """The run segment a sample belongs to (the run, or a resume): its rates are its own."""

    number: int
    seconds: float
    rows: int
    bytes: int

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def eta(self, bytes_left: int) -> float | None:
        if self.bytes <= 0 or self.seconds <= 0 or bytes_left < 0:
            return None
        return bytes_left / (self.bytes / self.seconds)


def _segment(m: dict | None, elapsed: float, rows: int, done: int) -> _Segment:
    """From the sample's segment figures; a sample from before they were kept counts the
    whole job as one segment."""
    if m and m.get("segment_elapsed_s") is not None:
        return _Segment(m.get("segment") or 1, m["segment_elapsed_s"], m["segment_rows"] or 0,
                        m["segment_bytes"] or 0)
    return _Segment(1, elapsed or 0, rows or 0, done or 0)


def _phase_row(p: dict) -> tuple:
    """A line of the phase table (``PhaseLine``: a branch's 'out' is what its destination
    loaded, its rejects include the rows the destination refused)."""
    line = PhaseLine.from_json(p)
    return (line.label, fmt.num(line.rows_in), fmt.num(line.rows_out), fmt.num(line.rejected),
            f"{line.seconds:.2f}s")


def _seconds(value: float | None) -> str:
    """A short job's time to the hundredth ('0.14s', not '0s'); longer ones as usual."""
    if value is not None and value < 10:
        return f"{value:.2f}s"
    return fmt.duration(value)


def _size(done: int, total: int) -> str:
    """'137 / 229 MiB', or in KiB for a file under a MiB ('2.4 / 2.4 KiB', not '0.0 / 0.0')."""
    if total and total < 2**20:
        return f"{done / 1024:,.1f} / {total / 1024:,.1f} KiB"
    return f"{fmt.mib(done)} / {fmt.mib(total)} MiB"


def _worker(address: Any) -> str:
    """'127.0.0.1:40215' for 'tcp://127.0.0.1:40215' (the scheme says nothing here)."""
    text = str(address or "?")
    return text.split("://", 1)[-1]


def _part(w: dict) -> str:
    """'p2 orders_3.csv.gz': the worker's part and the name of its file."""
    part = w.get("part")
    name = _name(w.get("file")) or "?"
    return f"p{part} {name}" if part is not None else name


def _name(path: str | None) -> str:
    from pathlib import Path
    return Path(path).name if path else ""
