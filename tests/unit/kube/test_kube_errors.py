"""The Kubernetes client classifies the API server's answers once, by status code, into the
project's error types; the executor then follows the shared failure policy (no text matching)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from substratus.api.errors import status_for
from substratus.errors import AlreadyExists, EngineError, Unauthorized
from substratus.reconcile.outcomes import temporary
from substratus.runtimes.kubernetes.client import KubeApi, KubeError, api_error


@pytest.mark.parametrize(("status", "reason", "kind", "is_temporary"), [
    (409, "AlreadyExists", AlreadyExists, True),
    (409, "", AlreadyExists, True),
    (401, "Unauthorized", Unauthorized, False),
    (403, "Forbidden", Unauthorized, False),
    (0, "", KubeError, True),           # no answer
    (429, "TooManyRequests", KubeError, True),
    (500, "InternalError", KubeError, True),
    (503, "ServiceUnavailable", KubeError, True),
    (409, "Conflict", KubeError, True),  # a stale resourceVersion: read again
    (400, "BadRequest", KubeError, False),
    (404, "NotFound", KubeError, False),
    (422, "Invalid", KubeError, False),
])
def test_each_answer_is_one_type(status: int, reason: str, kind: type[Exception], is_temporary: bool) -> None:
    err = api_error(f"POST /x -> {status} {reason}", status=status, reason=reason)
    assert isinstance(err, kind) and isinstance(err, KubeError) and isinstance(err, EngineError)
    assert err.status == status and temporary(err) is is_temporary
    if kind is KubeError:
        assert not isinstance(err, (AlreadyExists, Unauthorized))


def test_a_refusal_by_the_cluster_is_unauthorized_in_the_one_error_table() -> None:
    assert status_for(api_error("x", status=403, reason="Forbidden")) == 401  # Unauthorized in the one table


class Answers:
    """Stands in for the official ApiClient: answers each request from a list."""

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.configuration = type("Cfg", (), {"host": "https://k"})()

    def param_serialize(self, method: str, path: str, **kw: Any) -> tuple[str, str, dict[str, str], Any, None]:
        return method, path, {}, kw.get("body"), None

    def call_api(self, method: str, url: str, **kw: Any) -> Any:
        status, body = self.answers.pop(0)
        data = json.dumps(body).encode()
        return type("Resp", (), {"status": status, "read": lambda self: data})()


def test_the_client_raises_the_typed_error_and_apply_reads_the_type() -> None:
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"}, "data": {"k": "dg=="}}
    exists = (409, {"kind": "Status", "reason": "AlreadyExists", "message": 'secrets "s" already exists'})
    api = KubeApi(Answers(exists))
    with pytest.raises(AlreadyExists):
        api.create(obj)
    same = {**obj, "metadata": {**obj["metadata"], "uid": "u"}}
    assert KubeApi(Answers(exists, (200, same))).apply(obj) == "unchanged"
    forbidden = (403, {"kind": "Status", "reason": "Forbidden", "message": "cannot create secrets"})
    with pytest.raises(Unauthorized) as caught:
        KubeApi(Answers(forbidden)).create(obj)
    assert "RBAC" in caught.value.hint and not temporary(caught.value)
