"""The phase table of a job: each phase's rows in/out, rejects, warnings and busy time.

Who writes what (ADR 0020): each line of the table is written by the one thread that runs
its phase (the line's step threads, ``engine/line.py``); the extract's line by the main
thread (the cutter counts what the reader parsed), its busy time by the reader thread
through its ``BusyClock``. The loader never writes the table: the rows a destination
refuses are its own count, added to the load's line when the table is rendered
(``phase_table``). Readers (the loader's commit, the end of the job) read ints, so a live
table may lag by a chunk; the end of a job sets it from the store (``committed_phase_stats``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class PhaseStats:
    label: str
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    warned: int = 0
    seconds: float = 0.0        # busy time: wall time while the phase was at work (BusyClock)

    def to_json(self) -> dict:
        return {"label": self.label, "rows_in": self.rows_in, "rows_out": self.rows_out,
                "rejected": self.rejected, "warned": self.warned,
                "seconds": round(self.seconds, 4)}


def phase_table(stats: list[PhaseStats], refused: int = 0) -> list[dict]:
    """The table as the store keeps it; ``refused``: rows the destination refused in this
    segment (the loader's count), shown on the load's line (the last) as its rejects."""
    # Read from the last line up: every line counts a chunk before it hands it on, so a
    # line read after the ones below it never shows fewer rows than they do (read top
    # down, a chunk passing between two reads made a phase look ahead of its source).
    table = [st.to_json() for st in reversed(stats)][::-1]
    if refused:
        table[-1]["rejected"] += refused
        table[-1]["rows_out"] -= refused
    return table


class BusyClock:
    """Adds to ``stats.seconds`` the wall time during which at least one thread works for
    the phase. A phase may run in two threads at once (validate's two halves overlap on
    consecutive chunks), so summing each thread's time could exceed the job's wall time;
    this never does. (Different phases do overlap each other: their times are not meant
    to add up to the job's.)"""

    def __init__(self, stats: PhaseStats):
        self.stats = stats
        self._lock = threading.Lock()
        self._active = 0
        self._since = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                self._since = time.perf_counter()
            self._active += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self.stats.seconds += time.perf_counter() - self._since


def committed_phase_stats(stats: list[PhaseStats], rows_read: int,
                          rejects: dict[str, int]) -> None:
    """Set rows in/out/rejected of the main line's phases (``stats[0]`` the extract) from
    what the store holds for the committed batches: ``rows_read`` records, and the rejects
    of each phase by label. Exact after a stop (rows still in the line are not counted)
    and after a resume (rows the stopped run had begun are not counted twice). Rejects of
    labels the line does not have (a rerun's rejects carried from the first job's earlier
    phases) count at the start, with the extract's; branch phases count in their branch."""
    known = {st.label for st in stats}
    carried = sum(n for label, n in rejects.items() if label not in known and " > " not in label)
    n = rows_read
    for i, st in enumerate(stats):
        st.rows_in = n
        st.rejected = rejects.get(st.label, 0) + (carried if i == 0 else 0)
        st.rows_out = n = max(0, n - st.rejected)


def counted_extract(chunks, stats: PhaseStats):
    """``chunks`` (extract.Chunk) counted on the extract's line of the phase table as they
    leave the reader, before any phase sees them: records read, and rows rejected on read
    (or, in a rerun, carried from the first job's earlier phases). Runs in the reader's
    thread, the line's only writer."""
    for chunk in chunks:
        rejected = len(chunk.carried) + sum(len(r) for r in chunk.rejects)
        stats.rows_in += max(0, chunk.last_row - chunk.first_row + 1)
        stats.rejected += rejected
        stats.rows_out = stats.rows_in - stats.rejected
        yield chunk


def timed(items, clock: BusyClock):
    """``items`` with the time spent producing each one (parsing, for the extract) on
    ``clock``."""
    it = iter(items)
    try:
        while True:
            with clock:
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item
    finally:
        close = getattr(it, "close", None)
        if close:
            close()
