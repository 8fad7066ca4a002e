"""Which replica answers a request: balancing, failover, scale from zero, load reports.

`ReplicaPool.route(model, call)` runs `call(replica)` on the replica of
`model` with the fewest requests in flight (ties: the one picked longest
ago). Replicas come from `Backends.replicas` on every request, so a roll's
new set takes new requests at once while requests in flight finish where they
started (drain). When `call` raises `Refused` (connection refused) the
replica is ejected for `eject_seconds` and the request tried on another;
`Dropped` (reset, closed before an answer) is tried once more on the same
replica first, because a pooled connection the server closed while idle
looks the same. `call` raises these only while nothing has reached the client.

With no ready replica the pool calls `Backends.wake` once per model for all
requests that arrive meanwhile, and holds each at most `wake_timeout` seconds
from its arrival (then `NotReadyInTime`, a 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Optional, TypeVar

from substratus.gateway.backends import Backends, Load, Replica
from substratus.gateway.errors import NotReadyInTime, ReplicasUnreachable
from substratus.gateway.settings import GatewaySettings

log = logging.getLogger("substratus.gateway")
T = TypeVar("T")
Clock = Callable[[], float]
TRIES_PER_REPLICA = 2  # a dropped connection is retried once on the same replica


class ReplicaFailure(Exception):
    """A replica failed before anything reached the client; the request may go elsewhere."""


class Refused(ReplicaFailure):
    """Nothing listens (connection refused, unreachable): the replica is ejected at once."""


class Dropped(ReplicaFailure):
    """The connection was reset or closed before a whole answer came."""


@dataclass
class _Slot:
    replica: Replica
    outstanding: int = 0
    ejected_until: float = 0.0  # on the monotonic clock
    last_pick: int = 0


@dataclass
class _Model:
    slots: dict[str, _Slot] = field(default_factory=dict)
    current: frozenset[str] = frozenset()
    waiting: int = 0
    last_request: float = 0.0
    wake: Optional[asyncio.Future[Sequence[Replica]]] = None


class ReplicaPool:
    def __init__(self, backends: Backends, settings: GatewaySettings, *,
                 clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.backends, self.settings = backends, settings
        self._clock, self._wall = clock, wall
        self._models: dict[str, _Model] = {}
        self._picks = 0

    async def route(self, model: str, call: Callable[[Replica], Awaitable[T]]) -> T:
        """Run `call` on a replica of `model`, failing over as the module docstring says."""
        replicas = self.backends.replicas(model)  # UnknownModel before any state is kept
        m = self._models.setdefault(model, _Model())
        m.last_request = self._wall()
        deadline = self._clock() + self.settings.wake_timeout
        failures: dict[str, int] = {}
        last: Optional[ReplicaFailure] = None
        while True:
            if not replicas:
                replicas = await self._wake(model, m, deadline)
            slot = self._pick(model, m, replicas, failures, last)
            slot.outstanding += 1
            self._report(model, m)
            try:
                return await call(slot.replica)
            except Refused as exc:
                failures[slot.replica.id] = TRIES_PER_REPLICA
                self._eject(model, slot, exc)
                last = exc
            except Dropped as exc:
                failures[slot.replica.id] = tries = failures.get(slot.replica.id, 0) + 1
                if tries >= TRIES_PER_REPLICA:
                    self._eject(model, slot, exc)
                last = exc
            finally:
                slot.outstanding -= 1
                self._settle(model, m, slot)
            replicas = self.backends.replicas(model)

    def load(self, model: str) -> Optional[Load]:
        """The model's load now (what `report` last said), or None if no request came yet."""
        m = self._models.get(model)
        return None if m is None else self._load(m)

    def _eject(self, model: str, slot: _Slot, why: ReplicaFailure) -> None:
        slot.ejected_until = self._clock() + self.settings.eject_seconds
        log.warning("gateway: replica %s of %s out of rotation for %.0f s: %s", slot.replica.id, model,
                    self.settings.eject_seconds, why)

    # -- picking ---------------------------------------------------------
    def _pick(self, model: str, m: _Model, replicas: Sequence[Replica], failures: dict[str, int],
              last: Optional[ReplicaFailure]) -> _Slot:
        self._sync(m, replicas)
        now, best, best_key = self._clock(), None, (True, 0, 0)
        for replica in replicas:
            if failures.get(replica.id, 0) >= TRIES_PER_REPLICA:
                continue
            slot = m.slots[replica.id]
            key = (slot.ejected_until > now, slot.outstanding, slot.last_pick)
            if best is None or key < best_key:
                best, best_key = slot, key
        if best is None:
            raise ReplicasUnreachable(
                f"every replica of `{model}` ({len(replicas)}) refused or dropped the connection: {last}",
                retry_after=self.settings.retry_after,
                hint=f"the server may be restarting; `sub describe modelserver {model}` shows why")
        self._picks += 1
        best.last_pick = self._picks
        return best

    def _sync(self, m: _Model, replicas: Sequence[Replica]) -> None:
        """Take the Backends' current set: new replicas get a slot, gone ones drain then go."""
        for replica in replicas:
            slot = m.slots.get(replica.id)
            if slot is None:
                m.slots[replica.id] = _Slot(replica)
            elif slot.replica is not replica:
                slot.replica = replica
        ids = frozenset(r.id for r in replicas)
        if ids != m.current:
            m.current = ids
            for gone in [i for i, s in m.slots.items() if i not in ids and s.outstanding == 0]:
                del m.slots[gone]

    def _settle(self, model: str, m: _Model, slot: _Slot) -> None:
        rid = slot.replica.id
        if slot.outstanding == 0 and rid not in m.current and m.slots.get(rid) is slot:
            del m.slots[rid]  # an old replica of a roll has drained
        self._report(model, m)

    # -- scale from zero -------------------------------------------------
    async def _wake(self, model: str, m: _Model, deadline: float) -> Sequence[Replica]:
        """Hold the request until the model has a replica; one Backends.wake for all holders."""
        m.waiting += 1
        self._report(model, m)
        try:
            if m.wake is None or m.wake.done():
                m.wake = asyncio.ensure_future(self.backends.wake(model, wait=self.settings.wake_timeout))
                m.wake.add_done_callback(_retrieve)
            remaining = deadline - self._clock()
            try:
                return await asyncio.wait_for(asyncio.shield(m.wake), max(0.0, remaining))
            except asyncio.TimeoutError:
                raise NotReadyInTime(model, self.settings.wake_timeout,
                                     retry_after=self.settings.retry_after) from None
        finally:
            m.waiting -= 1
            self._report(model, m)

    # -- load ------------------------------------------------------------
    def _report(self, model: str, m: _Model) -> None:
        self.backends.report(model, self._load(m))

    def _load(self, m: _Model) -> Load:
        now = self._clock()
        per = {rid: s.outstanding for rid, s in m.slots.items()}
        return Load(outstanding=sum(per.values()), waiting=m.waiting, last_request=m.last_request,
                    replicas=per, ejected=frozenset(rid for rid, s in m.slots.items() if s.ejected_until > now))


def _retrieve(future: asyncio.Future[Sequence[Replica]]) -> None:
    """A wake whose every holder left still ends; read its error so asyncio does not log it."""
    if not future.cancelled():
        future.exception()
