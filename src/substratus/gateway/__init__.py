"""One OpenAI endpoint for every model: routing by name, scale from zero, replicas.

The gateway sits in front of the model servers (ModelServer objects). It knows
them only through the `Backends` protocol (`backends.py`), which the local
control plane and the cluster gateway implement, and keeps no state of its own
besides load counters. Layer: beside `controlplane` (see `.importlinter`): it
imports `resources`, `errors` and third-party libraries only.

    names.py     the naming rule: `name`, `namespace/name`, later `base:adapter`
    backends.py  Backends protocol; ModelInfo, ModelState, Replica, Load
    errors.py    the exception tree, the one HTTP table, OpenAI-shaped bodies
    keys.py      KeyStore: API keys hashed at rest, shown once
    pool.py      balancing, failover, single-flight scale from zero, load reports
    upstream.py  the HTTP client side: bounded reads, deadlines, streaming
    sse.py       whole server-sent events only
    asgi.py      body caps, replies, disconnects
    app.py       the ASGI app and its routes
    settings.py  every bound and timeout
"""

from substratus.gateway.app import Gateway
from substratus.gateway.backends import Backends, Load, ModelInfo, ModelState, Replica
from substratus.gateway.errors import (GatewayError, ModelUnavailable, NotReadyInTime, UnknownModel)
from substratus.gateway.keys import CreatedKey, KeyInfo, KeyStore
from substratus.gateway.names import ModelRef, model_id, parse_model_id
from substratus.gateway.settings import GatewaySettings

__all__ = ["Backends", "CreatedKey", "Gateway", "GatewayError", "GatewaySettings", "KeyInfo", "KeyStore", "Load",
           "ModelInfo", "ModelRef", "ModelState", "ModelUnavailable", "NotReadyInTime", "Replica", "UnknownModel",
           "model_id", "parse_model_id"]
