"""A bounded live chart: a title line over bars of the last samples, y axis from zero.

Textual's Sparkline scales from the smallest sample to the largest, so a flat 40,000 rows/s
with one dip to 39,000 looks like a crash; and it has no axis. These bars start at zero
and the axis says the scale.
"""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

BLOCKS = " ▁▂▃▄▅▆▇█"


def bar_rows(values: list[float], height: int, top: float) -> list[str]:
    """``values`` as columns of block characters, ``height`` rows, zero at the bottom and
    ``top`` at the top; the first string is the top row."""
    if height <= 0:
        return []
    eighths = [0 if top <= 0 else round(max(0.0, v) / top * height * 8) for v in values]
    # a value above zero shows at least a sliver: "nothing" and "little" must differ
    eighths = [max(e, 1) if v > 0 else 0 for e, v in zip(eighths, values, strict=False)]
    rows = []
    for level in range(height - 1, -1, -1):
        rows.append("".join(BLOCKS[min(8, max(0, e - level * 8))] for e in eighths))
    return rows


def axis_label(value: float) -> str:
    """A short label for the axis: 950, 12K, 1.8M."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if value >= div:
            scaled = value / div
            return f"{scaled:.1f}{suffix}" if scaled < 10 else f"{scaled:.0f}{suffix}"
    return f"{value:.0f}"


class Bars(Widget):
    """The plot: a y axis (its top value, then 0) and the last samples that fit."""

    DEFAULT_CSS = "Bars { height: 1fr; min-height: 2; }"
    AXIS = 6          # columns of the axis labels and their tick

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.values: list[float] = []

    def set_values(self, values: list[float]) -> None:
        self.values = values
        self.refresh()

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        room = max(0, width - self.AXIS)
        shown = self.values[-room:] if room else []
        if not shown:          # no axis over nothing: the title says "no samples yet"
            return Text("")
        top = max(shown)
        rows = bar_rows(shown, height, top) if top > 0 else [""] * height
        out = Text(no_wrap=True, overflow="crop")
        for i, row in enumerate(rows):
            label = "0" if i == height - 1 else (axis_label(top) if i == 0 and top > 0 else "")
            out.append(f"{label:>{self.AXIS - 1}}┤" if label else " " * (self.AXIS - 1) + "│",
                       style="dim")
            out.append(row, style="cyan")
            if i < height - 1:
                out.append("\n")
        return out


class Chart(Vertical):
    """Keeps at most ``size`` samples (memory and redraw cost stay flat on long jobs)."""

    DEFAULT_CSS = """
    Chart { height: 1fr; min-height: 3; }
    Chart > .chart-title { height: 1; color: $text-muted; }
    """

    def __init__(self, title: str, unit: str, size: int = 120, **kwargs):
        super().__init__(**kwargs)
        self.title, self.unit = title, unit
        self.samples: deque[float] = deque(maxlen=size)

    def compose(self) -> ComposeResult:
        yield Static(self.title, classes="chart-title", markup=False)
        yield Bars()

    def reset(self) -> None:
        self.samples.clear()
        self._redraw()

    def extend(self, values) -> None:
        self.samples.extend(float(v or 0) for v in values)
        self._redraw()

    def _redraw(self) -> None:
        data = list(self.samples)
        self.query_one(Bars).set_values(data)
        if not data:
            self.query_one(".chart-title", Static).update(f"{self.title}: no samples yet")
            return
        unit = f" {self.unit}" if self.unit else ""
        self.query_one(".chart-title", Static).update(
            f"{self.title} {data[-1]:,.0f}{unit} (max {max(data):,.0f})")
