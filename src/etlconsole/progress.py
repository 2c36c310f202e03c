"""The headless progress line on stderr: rows, %, rows/s, RSS MB, ETA."""

from __future__ import annotations

import sys
import time


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s")


def _eta(sample: dict, bytes_left: int) -> float | None:
    """At the pace of this run segment (after a resume, the bytes of the earlier runs
    were not read in this one's time)."""
    seconds = sample.get("segment_elapsed_s", sample["elapsed_s"])
    done = sample.get("segment_bytes", sample.get("bytes_read")) or 0
    return bytes_left * seconds / done if done > 0 else None


class ProgressLine:
    """Redraws one line on a terminal; elsewhere prints a line every `every` seconds.
    With ``log`` (``--log-format json``) each line is a ``job.progress`` log event
    instead, so stderr stays JSON Lines that a machine can read."""

    def __init__(self, stream=None, every: float = 5.0, log=None):
        self.stream = stream or sys.stderr
        self.log = log
        self.tty = self.stream.isatty() and log is None
        self.every, self._last = every, 0.0

    def __call__(self, sample: dict | None) -> None:
        if sample is None:                      # job over
            if self.tty:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
            return
        now = time.monotonic()
        if not self.tty and now - self._last < self.every:
            return
        self._last = now
        total, done = sample.get("bytes_total") or 0, sample.get("bytes_read") or 0
        pct = done / total if total else 0.0
        eta = _eta(sample, total - done) if pct > 0.01 else None
        if self.log is not None:
            self.log.info("job.progress", rows_read=sample["rows_read"], pct=round(pct, 4),
                          rows_per_s=sample["rows_per_s"], rss_mb=sample["rss_mb"],
                          rows_rejected=sample["rows_rejected"],
                          eta_s=None if eta is None else round(eta, 1))
            return
        line = (f"rows {sample['rows_read']:,} · {pct:5.1%} · {sample['rows_per_s']:,.0f} rows/s"
                f" · RSS {sample['rss_mb']:.0f} MB · rejected {sample['rows_rejected']:,}"
                f" · ETA {fmt_duration(eta)}")
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
