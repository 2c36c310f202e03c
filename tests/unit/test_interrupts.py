"""Ctrl-C and SIGTERM never cut a state-store transaction (etlconsole.interrupts).

The signal is sent by the process to itself at the exact bytecode where it used to do harm:
right after ``BEGIN IMMEDIATE`` returned, before the ``try`` that rolls back."""

from __future__ import annotations

import os
import signal
import sqlite3

import pytest

from etlconsole import interrupts
from etlconsole.interrupts import shielded
from etlconsole.store import StateStore, new_job_id


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in saved:           # not install(): it keeps a SIGINT the test run was given ignored
        signal.signal(s, interrupts._interrupt)
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def send(sig=signal.SIGTERM) -> None:
    os.kill(os.getpid(), sig)


class SignalAfterBegin:
    """The store's connection, sending a signal to this process once BEGIN has run."""

    def __init__(self, conn, sig):
        self._conn, self._sig, self.sent = conn, sig, 0

    def execute(self, sql, *args):
        cursor = self._conn.execute(sql, *args)
        if sql.startswith("BEGIN") and not self.sent:
            self.sent += 1
            send(self._sig)
        return cursor

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupt_right_after_begin_waits_for_the_commit(tmp_path, handlers, sig):
    store = StateStore(tmp_path / "state.db")
    job = new_job_id()
    store.create_job(job, pipeline_name="p", pipeline_file="p.toml", pipeline_toml="",
                     source_path="s.csv", source_fingerprint={}, dialect={}, destinations=[],
                     bytes_total=0, settings={})
    real = store.conn
    store.conn = SignalAfterBegin(real, sig)
    with pytest.raises(KeyboardInterrupt):
        store.update_job(job, status="running")
    assert store.conn.sent == 1
    assert not real.in_transaction                     # the write ended, nothing left open
    other = sqlite3.connect(tmp_path / "state.db")
    assert other.execute("SELECT status FROM import_jobs WHERE id = ?", [job]).fetchone() == (
        "running",)                                    # and it was committed whole
    # what the runner does next, on the same connection: mark the job interrupted
    store.update_job(job, status="interrupted", error="interrupted by the operator")
    assert other.execute("SELECT status FROM import_jobs WHERE id = ?", [job]).fetchone() == (
        "interrupted",)
    other.close()
    store.close()


def test_shielded_blocks_defer_the_interrupt_to_the_end_of_the_outermost(handlers):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with shielded():
            with shielded():
                send()
                done.append("inner")
            done.append("outer")        # the inner block's end did not raise it
    assert done == ["inner", "outer"]
    with shielded():                    # raised once: the next block starts clean
        done.append("again")
    assert done[-1] == "again"


def test_a_block_that_drops_forgets_the_interrupt(handlers):
    with shielded(drop=True):           # a job already ending: nothing left to stop
        send()
        for _ in range(1000):
            pass
    with shielded():                    # and nothing is left pending for the next block
        pass


def test_outside_a_shielded_block_sigterm_stops_as_ctrl_c_does(handlers):
    with pytest.raises(KeyboardInterrupt):
        send(signal.SIGTERM)
        for _ in range(1000):           # the handler runs at the next bytecode boundary
            pass


def test_a_signal_ignored_from_the_start_stays_ignored():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)      # as `etlconsole run … &` in a script
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        interrupts.install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is interrupts._interrupt
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
