"""Ctrl-C and SIGTERM stop a job as ``KeyboardInterrupt`` — but never in the middle of a
state-store transaction.

Python raises the interrupt at whatever bytecode the main thread is on. Landing between
``BEGIN IMMEDIATE`` and the ``try`` that would roll it back, it left the connection inside
a transaction: every later write failed ("cannot start a transaction within a
transaction"), other threads waited on the lock, and the job stayed 'running' in the
store instead of 'interrupted' (about one SIGTERM in thirty with small batches). Inside
``shielded()`` the interrupt waits, and is raised as the block ends.
"""

from __future__ import annotations

import signal
import threading

_MAIN = threading.main_thread()
_depth = 0           # shielded blocks the main thread is in (only it runs signal handlers)
_pending = False     # an interrupt came inside one; raised when the last one ends


def install() -> None:
    """Both signals stop the process as Ctrl-C does, outside shielded blocks. A signal
    ignored from the start stays ignored, as Python itself leaves it: a shell script's
    `etlconsole run … &` must not die of the Ctrl-C meant for the script's foreground."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _interrupt)


def _interrupt(signum, frame) -> None:
    global _pending
    if _depth:
        _pending = True
        return
    _pending = False
    raise KeyboardInterrupt


class shielded:
    """``with shielded():`` no interrupt is raised inside the block; one that came is raised
    when the outermost block ends — or, with ``drop=True`` (a job already ending: there is
    nothing left to stop), forgotten. Other threads never receive interrupts, so there it
    does nothing."""

    __slots__ = ("_counted", "_drop")

    def __init__(self, drop: bool = False):
        self._drop = drop

    def __enter__(self) -> None:
        global _depth
        self._counted = threading.current_thread() is _MAIN
        if self._counted:
            _depth += 1

    def __exit__(self, *exc) -> None:
        global _depth, _pending
        if self._counted:
            _depth -= 1
            if self._drop:
                _pending = False
            elif not _depth and _pending:
                _pending = False
                raise KeyboardInterrupt
