"""Screens that poll the state store with a self-pacing timer.

collect() runs in a thread worker (SQLite reads off the UI thread), render() on the UI
thread, then the next poll is scheduled: polls never overlap, and a slow store slows the
polling instead of piling it up. Screens that are not shown do not poll.

Idle cost: a screen's collect() may return UNCHANGED (e.g. when store_changed() says no
other connection wrote since its last poll and the operator asked for nothing): nothing is
rendered and the next poll comes later (the interval doubles, up to ``idle_factor`` times
the base interval). A poll the operator caused (poll_now) is "forced" and reads anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual import work
from textual.screen import Screen
from textual.timer import Timer

from ... import api
from ...errors import UserError

if TYPE_CHECKING:
    from ..app import ConsoleApp

UNCHANGED = object()       # collect(): nothing to render, poll again later


class PolledScreen(Screen):
    interval = 0.5
    idle_factor = 4             # unchanged polls slow down to interval × idle_factor

    @property
    def console_app(self) -> ConsoleApp:
        """``app``, typed: these screens only run in the console."""
        return cast("ConsoleApp", self.app)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.polls = 0                  # completed polls (tests wait on this)
        self._busy = False
        self._again = False
        self._timer: Timer | None = None
        self._store = None
        self._version: int | None = None
        self._force = False
        self.forced = False             # the running poll was asked for (collect reads it)
        self.idle_polls = 0             # polls in a row that found nothing new

    @property
    def store(self):
        """This screen's own connection (used only by its poll worker, one at a time)."""
        if self._store is None:
            self._store = self.console_app.open_store()
        return self._store

    def store_changed(self) -> bool:       # worker thread
        """Did another connection commit to the store since this screen's last look?
        (One PRAGMA; this screen's own writes, e.g. mark_dead_jobs, do not count.)"""
        version = api.store_changed_since(self.store)
        changed, self._version = version != self._version, version
        return changed

    def next_interval(self) -> float:
        return min(self.interval * 2 ** self.idle_polls, self.interval * self.idle_factor)

    def collect(self) -> Any:            # worker thread
        raise NotImplementedError

    def render_data(self, data: Any) -> None:   # UI thread
        raise NotImplementedError

    def render_error(self, message: str) -> None:
        self.notify(message, severity="error")

    def on_mount(self) -> None:
        self.interval = getattr(self.app, "poll_interval", self.interval)

    def on_screen_resume(self) -> None:
        self.poll_now()

    def on_unmount(self) -> None:
        if self._timer:
            self._timer.stop()

    def poll_now(self, force: bool = True) -> None:
        """Poll as soon as possible (after the running poll, if one is running);
        ``force``: read even if the store did not change (the operator asked for it)."""
        self._force = self._force or force
        if self._busy:
            self._again = True
            return
        if self._timer:
            self._timer.stop()
            self._timer = None
        self._busy = True
        self._collect()

    @work(thread=True, group="poll", exit_on_error=False)
    def _collect(self) -> None:
        self.forced, self._force = self._force, False
        try:
            data, error = self.collect(), None
        except UserError as exc:
            data, error = None, str(exc)
        except Exception as exc:       # show it; the next poll may do better
            data, error = None, f"{type(exc).__name__}: {exc}"
        try:
            self.app.call_from_thread(self._apply, data, error)
        except RuntimeError:           # the app is closing
            pass

    def _apply(self, data: Any, error: str | None) -> None:
        self._busy = False
        try:
            if data is UNCHANGED:
                self.idle_polls += 1
            elif error is None:
                self.idle_polls = 0
                self.render_data(data)
            else:
                self.render_error(error)
        finally:
            self.polls += 1
            if self._again:
                self._again = False
                self.poll_now()
            else:
                self._timer = self.set_timer(self.next_interval(), self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self in self.app.screen_stack:      # shown, or under a modal
            self.poll_now(force=False)
            return
        self._timer = self.set_timer(self.next_interval(), self._tick)
