"""The gateway's errors, the one table mapping them to HTTP, and the OpenAI-shaped body.

Clients of the gateway are OpenAI clients, so every error answer has OpenAI's
shape, `{"error": {"message", "type", "param", "code"}}`, which the official
SDK turns into `AuthenticationError`, `NotFoundError`, ... . Backends
implementations raise `UnknownModel`, `NotReadyInTime` and `ModelUnavailable`.

    SubstratusError                     (substratus.errors)
    └── GatewayError                    500 server_error
        ├── Unauthorized                401 invalid_api_key
        ├── BadRequest                  400 invalid_request_error
        │   └── RequestTooLarge         413 request_too_large
        ├── RouteNotFound               404 not_found
        ├── MethodNotAllowed            405 method_not_allowed
        ├── UnknownModel                404 model_not_found   (also a substratus NotFoundError)
        ├── ModelUnavailable            503 model_unavailable  + Retry-After
        │   ├── NotReadyInTime          503 model_not_ready    + Retry-After
        │   └── ReplicasUnreachable     503 replicas_unreachable + Retry-After
        └── UpstreamError               502 upstream_error
            └── UpstreamTimeout         504 upstream_timeout
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Optional

from substratus.errors import NotFoundError, SubstratusError

KNOWN_NAMES_SHOWN = 50  # a 404 lists at most this many known models


class GatewayError(SubstratusError):
    """Base of the gateway's errors; `param` names the request field at fault, if any."""

    def __init__(self, message: str, *, hint: str = "", param: Optional[str] = None) -> None:
        super().__init__(message, hint=hint)
        self.param = param


class Unauthorized(GatewayError):
    """No API key, or one the KeyStore does not hold."""


class BadRequest(GatewayError):
    """The request cannot be routed: not JSON, no `model` field, a bad path."""


class RequestTooLarge(BadRequest):
    """The request body is over the gateway's byte cap."""


class RouteNotFound(GatewayError):
    """No route has this path."""


class MethodNotAllowed(GatewayError):
    """The path exists, but not with this method."""


class UnknownModel(GatewayError, NotFoundError):
    """No model has this name; `known` holds the names that exist (for the message)."""

    def __init__(self, model: str, known: Sequence[str] = (), *, hint: str = "") -> None:
        self.model, self.known = model, list(known)
        shown = ", ".join(self.known[:KNOWN_NAMES_SHOWN]) or "none"
        more = f" (and {len(self.known) - KNOWN_NAMES_SHOWN} more)" if len(self.known) > KNOWN_NAMES_SHOWN else ""
        super().__init__(f"The model `{model}` does not exist. Known models: {shown}{more}.",
                         hint=hint or "GET /v1/models lists every model; names are `name` in the default "
                                      "namespace, `namespace/name` elsewhere", param="model")


class ModelUnavailable(GatewayError):
    """The model exists but cannot answer now; retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float = 5.0, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class NotReadyInTime(ModelUnavailable):
    """No replica became ready within the wait bound (scale from zero took longer)."""

    def __init__(self, model: str, waited: float, *, retry_after: float = 5.0, hint: str = "") -> None:
        self.model, self.waited = model, waited
        super().__init__(f"The model `{model}` is starting but had no ready replica after {waited:.0f} s.",
                         retry_after=retry_after,
                         hint=hint or "retry after the Retry-After seconds; `sub describe modelserver "
                                      f"{model}` shows what it is doing")


class ReplicasUnreachable(ModelUnavailable):
    """Every replica of the model refused or dropped the connection for this request."""


class UpstreamError(GatewayError):
    """The model server answered in a way the gateway cannot pass on (too large, broken)."""


class UpstreamTimeout(UpstreamError):
    """The model server did not answer within the gateway's deadline."""


# The one table: exception class -> (HTTP status, OpenAI error type, OpenAI error code).
# First match wins, so subclasses come before their bases.
STATUS_FOR: list[tuple[type[GatewayError], int, str, str]] = [
    (Unauthorized, 401, "invalid_request_error", "invalid_api_key"),
    (RequestTooLarge, 413, "invalid_request_error", "request_too_large"),
    (BadRequest, 400, "invalid_request_error", "invalid_request"),
    (RouteNotFound, 404, "invalid_request_error", "not_found"),
    (MethodNotAllowed, 405, "invalid_request_error", "method_not_allowed"),
    (UnknownModel, 404, "invalid_request_error", "model_not_found"),
    (NotReadyInTime, 503, "server_error", "model_not_ready"),
    (ReplicasUnreachable, 503, "server_error", "replicas_unreachable"),
    (ModelUnavailable, 503, "server_error", "model_unavailable"),
    (UpstreamTimeout, 504, "server_error", "upstream_timeout"),
    (UpstreamError, 502, "server_error", "upstream_error"),
    (GatewayError, 500, "server_error", "internal_error"),
]


def status_for(err: GatewayError) -> tuple[int, str, str]:
    return next((status, kind, code) for cls, status, kind, code in STATUS_FOR if isinstance(err, cls))


def error_body(err: GatewayError) -> dict[str, Any]:
    """OpenAI's error shape; the hint rides along in the message, as people read that."""
    _, kind, code = status_for(err)
    message = f"{err.message} ({err.hint})" if err.hint else err.message
    return {"error": {"message": message, "type": kind, "param": err.param, "code": code}}


def error_headers(err: GatewayError) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json")]
    if isinstance(err, ModelUnavailable):
        headers.append((b"retry-after", str(max(1, round(err.retry_after))).encode()))
    if isinstance(err, Unauthorized):
        headers.append((b"www-authenticate", b'Bearer realm="substratus-gateway"'))
    return headers


def error_event(err: GatewayError) -> bytes:
    """The same body as a server-sent event, for an error after a stream has begun."""
    return b"data: " + json.dumps(error_body(err)).encode() + b"\n\n"
