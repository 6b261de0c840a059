"""The thread that runs a Kafka client's blocking calls for the event loop: in order, on a
thread of its own, outcomes handed back to the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from execdist.runtime.client_thread import ClientThread


@pytest.fixture
async def client_thread():
    thread = ClientThread("test-client-thread")
    thread.start(asyncio.get_running_loop())
    yield thread
    thread.stop()


async def test_a_call_runs_on_the_named_thread_and_its_result_comes_back(client_thread):
    def where(x: int) -> tuple[str, int]:
        return threading.current_thread().name, x * 2

    name, doubled = await client_thread.call(where, 21)

    assert name == "test-client-thread"
    assert name != threading.current_thread().name
    assert doubled == 42


async def test_calls_run_one_at_a_time_in_the_order_asked(client_thread):
    order: list[int] = []
    release = threading.Event()
    first = client_thread.call(release.wait, 5)
    later = [client_thread.call(order.append, n) for n in range(50)]
    await asyncio.sleep(0.05)
    assert order == []  # all wait behind the first call
    release.set()

    assert await first is True
    await asyncio.gather(*later)
    assert order == list(range(50))


async def test_an_exception_reaches_the_caller_and_the_thread_goes_on(client_thread):
    def fail() -> None:
        raise ValueError("refused by the broker")

    with pytest.raises(ValueError, match="refused by the broker"):
        await client_thread.call(fail)
    assert await client_thread.call(lambda: "still serving") == "still serving"


async def test_a_call_cancelled_before_it_starts_is_not_made(client_thread):
    made: list[str] = []
    release = threading.Event()
    blocking = client_thread.call(release.wait, 5)
    cancelled = client_thread.call(made.append, "cancelled")
    cancelled.cancel()
    release.set()
    await blocking
    await client_thread.call(made.append, "after")

    assert made == ["after"]


async def test_stop_makes_the_calls_asked_then_refuses_more():
    thread = ClientThread("test-client-thread-stop")
    thread.start(asyncio.get_running_loop())
    made: list[int] = []
    release = threading.Event()
    blocking = thread.call(release.wait, 5)
    queued = [thread.call(made.append, n) for n in range(3)]
    release.set()

    thread.stop()  # waits for the thread: every call asked before is made

    assert made == [0, 1, 2]
    await asyncio.gather(blocking, *queued)
    with pytest.raises(RuntimeError, match="not running"):
        thread.call(made.append, 3)


def test_a_thread_never_started_refuses_calls_and_stops_quietly():
    thread = ClientThread("test-client-thread-unstarted")
    with pytest.raises(RuntimeError, match="not running"):
        thread.call(print)
    thread.stop()
