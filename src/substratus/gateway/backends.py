"""The gateway's only window on the world: the `Backends` protocol and its data types.

The gateway knows nothing of containers, pods or the store. Whoever serves it
implements `Backends`: the local control plane's daemon (servers are
containers on this machine) and the cluster gateway (servers are pods behind
a Deployment). Both hand the gateway plain values, so the gateway is tested
with a fake (`tests/unit/gateway/fakes.py`) and real upstream servers alone.

Call pattern, per request:

1. `replicas(model)` (sync, cheap, no I/O: it is called for every request)
   gives the replicas that answer now. Unknown name -> raise `UnknownModel`.
2. If it gave none, the gateway calls `wake(model, wait=...)` ONCE for all the
   requests that arrive meanwhile (single-flight), holds them, and routes them
   to what `wake` returns. `wake` starts a stopped server (scale from zero) and
   waits until one replica answers, at most `wait` seconds; past that it raises
   `NotReadyInTime`; a server that cannot start (failed image, crash loop)
   raises `ModelUnavailable` with its reason. After `wake` returns, `replicas`
   must return those replicas too.
3. `report(model, load)` (sync, cheap, must not block) after every change of
   the model's load: arrivals, picks, completions. The autoscaler reads it to
   scale up/down and to stop idle servers (scale to zero); a roll reads
   `load.replicas` to know when an old replica has drained.

During a roll `replicas` may return a different set at any moment: requests in
flight finish on the replica they started on (drain), new requests go to the
new set. A replica's `id` must change when the process behind it does (a
container or pod id), so that a replaced replica starts with a clean record.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Protocol


class ModelState(str, enum.Enum):
    """What `/v1/models` says about a model (its ModelServer's state, simplified)."""

    RUNNING = "running"    # at least one replica answers
    STARTING = "starting"  # being started, built or rolled
    STOPPED = "stopped"    # scaled to zero: the next request starts it
    FAILED = "failed"      # cannot start until its manifest is fixed


@dataclass(frozen=True)
class ModelInfo:
    """One model clients can name: a ModelServer (later also an adapter on one)."""

    id: str                       # the name clients send: names.model_id(namespace, name[, adapter])
    state: ModelState
    created: int = 0              # unix seconds (OpenAI's `created`)
    base: Optional[str] = None    # for an adapter: the id of the server it runs on
    owned_by: str = "substratus"


@dataclass(frozen=True)
class Replica:
    """One server process the gateway may send a model's requests to."""

    id: str                       # stable while the same process serves: container or pod id
    url: str                      # base URL, e.g. http://127.0.0.1:41234 (no trailing slash)
    token: Optional[str] = field(default=None, repr=False)  # bearer token the server requires, if any


@dataclass(frozen=True)
class Load:
    """A model's load as the gateway sees it, for autoscaling and drain decisions."""

    outstanding: int              # requests in flight on the model's replicas
    waiting: int                  # requests held for a ready replica (scale from zero)
    last_request: float           # unix time of the latest request's arrival (0.0: none yet)
    replicas: Mapping[str, int]   # replica id -> requests in flight there (old replicas until drained)
    ejected: frozenset[str] = frozenset()  # replica ids out of rotation after a connection failure


class Backends(Protocol):
    """Implemented by the local control plane and by the cluster gateway; see the module docstring."""

    async def models(self) -> Sequence[ModelInfo]:
        """Every model clients may name, running or not."""
        ...

    def replicas(self, model: str) -> Sequence[Replica]:
        """Replicas of `model` that answer now ([] when none); raise UnknownModel. Called per request."""
        ...

    async def wake(self, model: str, *, wait: float) -> Sequence[Replica]:
        """Start `model` if it is stopped and wait (at most `wait` s) until a replica answers.

        Raise UnknownModel, NotReadyInTime or ModelUnavailable. Never returns [].
        """
        ...

    def report(self, model: str, load: Load) -> None:
        """The model's load changed; keep it (cheaply) for the autoscaler."""
        ...


__all__ = ["Backends", "Load", "ModelInfo", "ModelState", "Replica"]

