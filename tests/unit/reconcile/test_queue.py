"""The work queue: de-duplication, one worker per key, delays, backoff (fake clock, no waiting)."""

from __future__ import annotations

from substratus.reconcile.queue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_key_added_many_times_is_queued_once() -> None:
    q: WorkQueue[str] = WorkQueue(clock=Clock())
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert q.depth() == 2
    assert [q.get(block=False), q.get(block=False), q.get(block=False)] == ["a", "b", None]


def test_a_key_being_processed_is_not_handed_out_again_until_done() -> None:
    q: WorkQueue[str] = WorkQueue(clock=Clock())
    q.add("a")
    assert q.get(block=False) == "a"
    q.add("a")  # changed while a worker has it: remembered, not handed to a second worker
    assert q.get(block=False) is None
    q.done("a")
    assert q.get(block=False) == "a"
    q.done("a")
    assert q.get(block=False) is None


def test_add_after_waits_and_the_earliest_schedule_wins() -> None:
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 2)
    q.add_after("a", 5)
    assert q.get(block=False) is None and q.scheduled() == 1
    clock.t = 2
    assert q.get(block=False) == "a"
    q.done("a")
    clock.t = 20
    assert q.get(block=False) is None, "the later schedules were superseded"


def test_an_add_supersedes_a_schedule() -> None:
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add("a")
    assert q.get(block=False) == "a"
    q.done("a")
    clock.t = 11
    assert q.get(block=False) is None


def test_failures_back_off_exponentially_up_to_a_cap_and_forget_resets() -> None:
    q: WorkQueue[str] = WorkQueue(clock=Clock(), base_delay=0.5, max_delay=4)
    assert [q.add_rate_limited("a") for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    q.forget("a")
    assert q.add_rate_limited("a") == 0.5


def test_blocking_get_wakes_for_a_scheduled_key_and_shutdown() -> None:
    import threading
    import time

    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0.05)
    t0 = time.monotonic()
    assert q.get(timeout=5) == "a" and time.monotonic() - t0 < 4
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(q.get()))
    worker.start()
    q.shutdown()
    worker.join(5)
    assert got == [None]
