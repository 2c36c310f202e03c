"""The phase line (engine/stages.py): order kept, errors surface, memory bounded, threads
stop when the consumer gives up."""

import os
import sys
import threading
import time

import pytest

from etlconsole.engine.stages import staged


def test_items_come_out_in_order_through_every_step():
    steps = [lambda x: x * 2, lambda x: x + 1, lambda x: -x]
    assert list(staged(range(200), steps, in_flight=3)) == [-(2 * i + 1) for i in range(200)]


def test_each_step_runs_in_one_thread_of_its_own():
    seen: dict[int, set] = {0: set(), 1: set()}

    def step(k):
        def run(x):
            seen[k].add(threading.get_ident())
            return x
        return run

    list(staged(range(50), [step(0), step(1)], in_flight=2))
    assert len(seen[0]) == len(seen[1]) == 1 and seen[0] != seen[1]
    assert threading.get_ident() not in seen[0] | seen[1]


def test_no_steps_is_a_prefetching_reader():
    assert list(staged(iter("abc"), [], in_flight=2)) == ["a", "b", "c"]


def test_an_error_in_a_step_is_raised_in_the_consumer_after_the_good_items():
    def fail_on_5(x):
        if x == 5:
            raise ValueError("bad item 5")
        return x

    got = []
    with pytest.raises(ValueError, match="bad item 5"):
        for x in staged(range(10), [fail_on_5, lambda x: x], in_flight=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_an_error_in_the_source_is_raised_in_the_consumer():
    def source():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(staged(source(), [lambda x: x], in_flight=2))


def test_at_most_in_flight_items_between_source_and_consumer():
    pulled = []

    def source():
        for i in range(100):
            pulled.append(i)
            yield i

    line = staged(source(), [lambda x: x, lambda x: x, lambda x: x], in_flight=3)
    first = next(line)                     # the consumer holds item 0 and stops pulling
    time.sleep(0.5)
    assert first == 0
    # items 1..3 hold the three tokens; the source has pulled at most one more and waits
    assert len(pulled) <= 1 + 3 + 1
    line.close()


def test_closing_the_line_waits_until_its_threads_have_ended():
    """Even a step in the middle of slow work: when close() returns, no thread of the line
    may still run (one still inside Arrow as the interpreter exits can crash it)."""
    busy = threading.Event()

    def slow(x):
        if x == 2:
            busy.set()
            time.sleep(0.5)
        return x

    line = staged(iter(range(10**9)), [lambda x: x, slow], in_flight=3, name="closing")
    next(line)
    assert busy.wait(5)
    line.close()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("closing")]


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_the_line_runs_at_the_nice_value_asked_and_the_consumer_does_not():
    def priority():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    before = priority()
    source_seen = []

    def numbers():
        for i in range(5):
            source_seen.append(priority())
            yield i

    seen = list(staged(numbers(), [lambda x: priority()], in_flight=2, nice=7))
    lowered = min(before + 7, 19)       # nice values stop at 19
    assert seen == [lowered] * 5 and source_seen == [lowered] * 5
    assert priority() == before       # the consumer (the loader's side) keeps its priority
