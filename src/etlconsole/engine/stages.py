"""A stream through a line of steps, each step in a thread of its own.

Reading the CSV and most phase work is C code that releases the GIL (Arrow's reader and
kernels, SQLite), so a step per thread lets chunk i be validated while chunk i+1 is
cleaned and chunk i+2 is parsed: on two cores the phases stop waiting for each other.
Order is kept (every step sees the items in stream order, one at a time, always from the
same thread), and at most ``in_flight`` items are between the source and the consumer,
so memory stays bounded whatever the number of steps.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any

_DONE = object()


class _Failed:
    """An exception on its way down the line, re-raised in the consumer."""

    def __init__(self, exc: BaseException):
        self.exc = exc


def lower_priority(nice: int) -> None:
    """Raise the calling thread's nice value (Linux schedules threads one by one; elsewhere
    the call fails or would apply to the whole process, and nothing is done)."""
    if nice and sys.platform == "linux":
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError:
            pass


class _Line:
    """The shared state of one ``staged`` line: a stop flag, the in-flight tokens, and a
    queue of one item between each pair of neighbours (source, steps, consumer)."""

    def __init__(self, items: Iterable, steps: Sequence[Callable], in_flight: int, nice: int):
        self.items, self.steps, self.nice = items, steps, nice
        self.stop = threading.Event()
        self.tokens = threading.Semaphore(in_flight)
        self.lanes: list[queue.Queue[Any]] = [queue.Queue(maxsize=1) for _ in range(len(steps) + 1)]

    def put(self, lane: queue.Queue[Any], item: Any) -> bool:
        while not self.stop.is_set():
            try:
                lane.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def get(self, lane: queue.Queue[Any]) -> Any:
        while not self.stop.is_set():
            try:
                return lane.get(timeout=0.2)
            except queue.Empty:
                continue
        return _DONE

    def source(self) -> None:
        lower_priority(self.nice)
        try:
            for item in self.items:
                while not self.tokens.acquire(timeout=0.2):
                    if self.stop.is_set():
                        return
                if not self.put(self.lanes[0], item):
                    return
            self.put(self.lanes[0], _DONE)
        except BaseException as exc:
            self.put(self.lanes[0], _Failed(exc))

    def run(self, step: Callable, inbox: queue.Queue[Any], outbox: queue.Queue[Any]) -> None:
        lower_priority(self.nice)
        while True:
            item = self.get(inbox)
            if item is not _DONE and not isinstance(item, _Failed):
                try:
                    item = step(item)
                except BaseException as exc:
                    item = _Failed(exc)
            if not self.put(outbox, item) or item is _DONE or isinstance(item, _Failed):
                return

    def threads(self, name: str) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.source, name=f"{name}-source", daemon=True)]
        threads += [threading.Thread(target=self.run, args=(step, self.lanes[i], self.lanes[i + 1]),
                                     name=f"{name}-{i + 1}", daemon=True)
                    for i, step in enumerate(self.steps)]
        return threads


def staged(items: Iterable, steps: Sequence[Callable], *, in_flight: int,
           name: str = "stage", nice: int = 0) -> Generator[Any, None, None]:
    """Yield ``steps[-1](…steps[0](item))`` for each item, in order. The source is iterated
    in a thread of its own too. An exception in the source or a step is raised here, and
    closing the generator (the consumer failed) stops every thread and waits for it.
    ``nice``: the line's threads yield the CPU to the consumer's side (``lower_priority``)."""
    line = _Line(items, steps, in_flight, nice)
    threads = line.threads(name)
    for t in threads:
        t.start()
    try:
        while True:
            item = line.lanes[-1].get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            line.tokens.release()
            yield item
    finally:
        line.stop.set()
        # Joined, not left to die as daemons: a thread still inside Arrow when the
        # interpreter exits can crash the process (SIGSEGV seen after Ctrl-C).
        for t in threads:
            t.join()
