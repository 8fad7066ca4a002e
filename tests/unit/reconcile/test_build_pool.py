"""The build pool: a dataset's build is started before a model's that arrived with it."""

from __future__ import annotations

import threading
import time

from substratus.reconcile.dispatch import BUILD_ORDER, PriorityPool


def run_all(pool: PriorityPool, jobs: list[tuple[int, str]], done: list[str]) -> None:
    finished = threading.Event()

    def job(name: str) -> None:
        done.append(name)
        if len(done) == len(jobs):
            finished.set()

    for priority, name in jobs:
        pool.submit(priority, lambda name=name: job(name))  # type: ignore[misc]
    assert finished.wait(5)


def test_lower_priority_first_then_arrival_order() -> None:
    pool = PriorityPool(1, "test", gather=0)
    gate = threading.Event()
    pool.submit(0, lambda: gate.wait(5))  # keeps the one worker busy while the rest queue up
    done: list[str] = []
    jobs = [(BUILD_ORDER["Model"], "model-a"), (2, "other"), (BUILD_ORDER["Dataset"], "dataset"),
            (BUILD_ORDER["Model"], "model-b")]
    threading.Timer(0.1, gate.set).start()
    run_all(pool, jobs, done)
    assert done == ["dataset", "model-a", "model-b", "other"]
    pool.shutdown()


def test_builds_arriving_together_at_an_idle_pool_start_in_priority_order() -> None:
    pool = PriorityPool(1, "test", gather=0.05)
    done: list[str] = []
    run_all(pool, [(BUILD_ORDER["Model"], "model"), (BUILD_ORDER["Dataset"], "dataset")], done)
    assert done == ["dataset", "model"]
    pool.shutdown()


def test_shutdown_drops_what_has_not_started() -> None:
    pool = PriorityPool(1, "test", gather=0)
    gate, ran = threading.Event(), []
    pool.submit(0, lambda: gate.wait(5))
    pool.submit(1, lambda: ran.append("late"))
    time.sleep(0.05)
    pool.shutdown()
    gate.set()
    time.sleep(0.1)
    assert ran == []
