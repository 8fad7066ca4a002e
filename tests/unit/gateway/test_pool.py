"""Balancing, failover, single-flight scale from zero, drain on a roll, load reports: no HTTP, fake time."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from substratus.gateway.backends import Replica
from substratus.gateway.errors import NotReadyInTime, ReplicasUnreachable, UnknownModel
from substratus.gateway.pool import Dropped, Refused, ReplicaPool
from substratus.gateway.settings import GatewaySettings
from tests.unit.gateway.fakes import FakeBackends

A, B, C = Replica("a", "http://a"), Replica("b", "http://b"), Replica("c", "http://c")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool_for(backends: FakeBackends, clock: Clock | None = None, **settings: float) -> ReplicaPool:
    clock = clock or Clock()
    return ReplicaPool(backends, GatewaySettings(**settings), clock=clock, wall=clock)  # type: ignore[arg-type]


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def answer(replica: Replica) -> str:
    return replica.id


def test_requests_go_to_the_replica_with_fewest_in_flight() -> None:
    async def scenario() -> list[str]:
        pool = pool_for(FakeBackends({"m": [A, B, C]}))
        gate = asyncio.Event()
        picked: list[str] = []

        async def hold(replica: Replica) -> str:
            picked.append(replica.id)
            await gate.wait()
            return replica.id

        held = [asyncio.ensure_future(pool.route("m", hold)) for _ in range(5)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*held)
        return picked

    picked = run(scenario())
    assert sorted(picked) == ["a", "a", "b", "b", "c"]  # 2/2/1: never 3 on one while another has 1


def test_a_refusing_replica_is_ejected_and_the_request_retried_elsewhere() -> None:
    clock = Clock()
    backends = FakeBackends({"m": [A, B]})
    pool = pool_for(backends, clock, eject_seconds=10.0)
    tried: list[str] = []

    async def a_refuses(replica: Replica) -> str:
        tried.append(replica.id)
        if replica.id == "a":
            raise Refused("connection refused")
        return replica.id

    assert [run(pool.route("m", a_refuses)) for _ in range(4)] == ["b"] * 4
    assert tried.count("a") == 1  # out of rotation after the first refusal
    assert backends.last("m").ejected == frozenset({"a"})
    clock.now += 11  # ejection over: a is tried again
    tried.clear()
    run(pool.route("m", a_refuses))
    run(pool.route("m", a_refuses))
    assert "a" in tried and backends.last("m").ejected == frozenset({"a"})


def test_a_dropped_connection_is_retried_once_on_the_same_replica() -> None:
    pool = pool_for(FakeBackends({"m": [A]}))
    calls: list[str] = []

    async def stale_once(replica: Replica) -> str:
        calls.append(replica.id)
        if len(calls) == 1:
            raise Dropped("server disconnected")  # a pooled connection the server had closed
        return replica.id

    assert run(pool.route("m", stale_once)) == "a" and calls == ["a", "a"]


def test_when_every_replica_fails_the_request_gets_503() -> None:
    pool = pool_for(FakeBackends({"m": [A, B]}))

    async def refuse(replica: Replica) -> str:
        raise Refused(f"{replica.id}: connection refused")

    with pytest.raises(ReplicasUnreachable, match="every replica of `m` \\(2\\)"):
        run(pool.route("m", refuse))


def test_unknown_models_keep_no_state() -> None:
    pool = pool_for(FakeBackends({"m": [A]}))
    with pytest.raises(UnknownModel):
        run(pool.route("nope", answer))
    assert pool.load("nope") is None


def test_64_requests_at_a_stopped_model_start_it_once() -> None:
    backends = FakeBackends(asleep={"m": [A, B]}, start_delay=0.05)
    pool = pool_for(backends)

    async def burst() -> list[str]:
        return await asyncio.gather(*(pool.route("m", answer) for _ in range(64)))

    answers = run(burst())
    assert backends.wakes == ["m"]
    assert sorted(set(answers)) == ["a", "b"] and len(answers) == 64
    assert max(load.waiting for _, load in backends.reports) == 64
    assert backends.last("m").waiting == 0 and backends.last("m").outstanding == 0


def test_a_client_leaving_while_held_does_not_stop_the_start() -> None:
    backends = FakeBackends(asleep={"m": [A]}, start_delay=0.05)
    pool = pool_for(backends)

    async def scenario() -> str:
        held = asyncio.ensure_future(pool.route("m", answer))
        await asyncio.sleep(0.01)
        held.cancel()  # the client went away while the server was starting
        await asyncio.sleep(0.1)
        return await pool.route("m", answer)  # the start went on: the next request finds it ready

    assert run(scenario()) == "a" and backends.wakes == ["m"]
    assert backends.last("m").waiting == 0


def test_a_start_slower_than_the_bound_is_503_not_ready() -> None:
    backends = FakeBackends(asleep={"m": [A]}, start_delay=5.0)
    pool = ReplicaPool(backends, GatewaySettings(wake_timeout=0.05))
    with pytest.raises(NotReadyInTime) as caught:
        run(pool.route("m", answer))
    assert caught.value.retry_after == GatewaySettings().retry_after


def test_a_roll_drains_old_replicas_and_sends_new_requests_to_the_new_set() -> None:
    backends = FakeBackends({"m": [A]})
    pool = pool_for(backends)

    async def scenario() -> tuple[str, list[str]]:
        gate = asyncio.Event()

        async def slow(replica: Replica) -> str:
            await gate.wait()
            return replica.id

        old = asyncio.ensure_future(pool.route("m", slow))
        await asyncio.sleep(0)
        assert backends.last("m").replicas == {"a": 1}
        backends.ready["m"] = [B]  # the roll: the new replica is ready, the old one leaves the set
        new = [await pool.route("m", answer) for _ in range(3)]
        assert backends.last("m").replicas == {"a": 1, "b": 0}  # a still drains
        gate.set()
        return await old, new

    old, new = run(scenario())
    assert old == "a" and new == ["b", "b", "b"]
    assert backends.last("m").replicas == {"b": 0}  # a drained and forgotten


def test_reports_carry_the_last_request_time() -> None:
    clock = Clock()
    backends = FakeBackends({"m": [A]})
    pool = pool_for(backends, clock)
    clock.now = 1234.5
    run(pool.route("m", answer))
    load = backends.last("m")
    assert load.last_request == 1234.5 and load.outstanding == 0 and load.replicas == {"a": 0}
    assert pool.load("m") == load


def test_other_errors_are_not_retried() -> None:
    pool = pool_for(FakeBackends({"m": [A, B]}))
    calls: list[str] = []

    async def bad(replica: Replica) -> str:
        calls.append(replica.id)
        raise ValueError("bad answer")

    with pytest.raises(ValueError):
        run(pool.route("m", bad))
    assert len(calls) == 1


