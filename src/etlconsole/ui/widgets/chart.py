"""A bounded live chart: a titled Sparkline over the last N samples."""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static


class Chart(Vertical):
    """Keeps at most ``size`` samples (memory and redraw cost stay flat on long jobs)."""

    DEFAULT_CSS = """
    Chart { height: 1fr; min-height: 3; }
    Chart > .chart-title { height: 1; color: $text-muted; }
    Chart > Sparkline { height: 1fr; min-height: 2; }
    """

    def __init__(self, title: str, unit: str, size: int = 120, **kwargs):
        super().__init__(**kwargs)
        self.title, self.unit = title, unit
        self.samples: deque[float] = deque(maxlen=size)

    def compose(self) -> ComposeResult:
        yield Static(self.title, classes="chart-title", markup=False)
        yield Sparkline([], summary_function=max)

    def reset(self) -> None:
        self.samples.clear()
        self._redraw()

    def extend(self, values) -> None:
        self.samples.extend(float(v or 0) for v in values)
        self._redraw()

    def _redraw(self) -> None:
        data = list(self.samples)
        self.query_one(Sparkline).data = data
        now = data[-1] if data else 0
        peak = max(data) if data else 0
        self.query_one(".chart-title", Static).update(
            f"{self.title} {now:,.0f} {self.unit} (max {peak:,.0f})")
