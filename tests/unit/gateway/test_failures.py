"""What goes wrong between a client, the gateway and a model server, one behaviour per test,
over real HTTP: slow and dying upstreams, clients that leave, bounds and deadlines."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import httpx
import openai
import pytest

from substratus.gateway import Gateway, GatewaySettings, KeyStore
from substratus.gateway.backends import Replica
from tests.unit.gateway.fakes import FakeBackends, FakeModelServer, LiveServer, free_port

KEY_DIR = "keys"


@contextmanager
def gateway_over(tmp_path: Path, backends: FakeBackends, **settings: Any) -> Iterator[tuple[str, dict[str, str]]]:
    keys = KeyStore(tmp_path / KEY_DIR)
    key = keys.create("t").key
    with LiveServer(Gateway(backends, keys=keys, settings=GatewaySettings(**settings))) as gw:
        yield gw.url, {"Authorization": f"Bearer {key}"}


@contextmanager
def one_upstream(tmp_path: Path, server: FakeModelServer, **settings: Any) -> Iterator[tuple[str, dict[str, str]]]:
    with LiveServer(server) as up, gateway_over(tmp_path, FakeBackends({"m": [up.replica()]}), **settings) as gw:
        yield gw


def events(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.startswith("data: "):
            yield line[len("data: "):]


def stream_request(url: str, headers: dict[str, str], model: str = "m") -> Any:
    return httpx.stream("POST", f"{url}/v1/completions", headers=headers, timeout=10,
                        json={"model": model, "prompt": "hi", "stream": True})


def test_the_first_chunk_is_passed_on_before_the_next_exists(tmp_path: Path) -> None:
    with one_upstream(tmp_path, FakeModelServer("up", events=2, event_delay=1.0)) as (url, headers):
        with stream_request(url, headers) as response:
            arrivals = [(time.monotonic(), json.loads(e)) for e in events(response.iter_lines()) if e != "[DONE]"]
    assert [body["choices"][0]["text"] for _, body in arrivals] == [" t0", " t1"]
    # The upstream sends the second event 1 s after the first: had the gateway held the first
    # (buffering), both would arrive together. Measured between the two, so a busy machine's
    # slow start does not count.
    assert arrivals[1][0] - arrivals[0][0] > 0.7


def test_a_client_that_leaves_cancels_the_upstream_request(tmp_path: Path) -> None:
    server = FakeModelServer("up", events=50, event_delay=0.2)
    with one_upstream(tmp_path, server) as (url, headers):
        with stream_request(url, headers) as response:
            next(events(response.iter_lines()))
        left = time.monotonic()
        assert server.disconnected.wait(5)
        assert time.monotonic() - left < 1.0
    assert server.disconnects == 1


def test_a_client_that_leaves_a_whole_request_cancels_it_too(tmp_path: Path) -> None:
    server = FakeModelServer("up", answer_delay=30)
    with one_upstream(tmp_path, server) as (url, headers):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/completions", headers=headers, json={"model": "m", "prompt": "x"}, timeout=0.3)
        assert server.disconnected.wait(5)


@pytest.mark.parametrize("tear", [False, True], ids=["between-events", "inside-an-event"])
def test_an_upstream_dying_mid_stream_gives_an_error_event_at_once(tmp_path: Path, tear: bool) -> None:
    with one_upstream(tmp_path, FakeModelServer("up", events=5, die_after=2, tear=tear)) as (url, headers):
        started = time.monotonic()
        with stream_request(url, headers) as response:
            got = list(events(response.iter_lines()))
        took = time.monotonic() - started
    assert [json.loads(e)["choices"][0]["text"] for e in got[:2]] == [" t0", " t1"]
    error = json.loads(got[2])["error"]
    assert error["code"] == "upstream_error" and "closed the connection" in error["message"]
    assert got[3:] == ["[DONE]"] and took < 2.0


def test_the_openai_sdk_raises_on_the_error_event(tmp_path: Path) -> None:
    with one_upstream(tmp_path, FakeModelServer("up", events=5, die_after=1)) as (url, headers):
        client = openai.OpenAI(base_url=url + "/v1", api_key=headers["Authorization"][7:], max_retries=0)
        seen: list[Optional[str]] = []
        with pytest.raises(openai.APIError, match="closed the connection"):
            for chunk in client.completions.create(model="m", prompt="x", stream=True):
                seen.append(chunk.choices[0].text)
    assert seen == [" t0"]


def test_a_refusing_replica_is_skipped_for_a_live_one(tmp_path: Path) -> None:
    dead = Replica("dead", f"http://127.0.0.1:{free_port()}")
    with LiveServer(FakeModelServer("up")) as up:
        backends = FakeBackends({"m": [dead, up.replica()]})
        with gateway_over(tmp_path, backends) as (url, headers):
            for _ in range(3):
                answer = httpx.post(f"{url}/v1/completions", headers=headers, json={"model": "m", "prompt": "x"})
                assert answer.json()["choices"][0]["text"] == "from up"
    assert backends.last("m").ejected == frozenset({"dead"})


def test_only_refusing_replicas_is_503_with_retry_after(tmp_path: Path) -> None:
    backends = FakeBackends({"m": [Replica("dead", f"http://127.0.0.1:{free_port()}")]})
    with gateway_over(tmp_path, backends) as (url, headers):
        answer = httpx.post(f"{url}/v1/completions", headers=headers, json={"model": "m", "prompt": "x"})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json()["error"]["code"] == "replicas_unreachable"


def test_a_start_past_the_wait_bound_is_503_with_retry_after(tmp_path: Path) -> None:
    backends = FakeBackends(asleep={"m": [Replica("r", "http://127.0.0.1:9")]}, start_delay=30)
    with gateway_over(tmp_path, backends, wake_timeout=0.3, retry_after=7) as (url, headers):
        started = time.monotonic()
        answer = httpx.post(f"{url}/v1/completions", headers=headers, json={"model": "m", "prompt": "x"})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "7"
    assert answer.json()["error"]["code"] == "model_not_ready" and time.monotonic() - started < 2


def test_an_upstream_past_the_deadline_is_504(tmp_path: Path) -> None:
    with one_upstream(tmp_path, FakeModelServer("up", answer_delay=5), request_timeout=0.3) as (url, headers):
        answer = httpx.post(f"{url}/v1/completions", headers=headers, json={"model": "m", "prompt": "x"})
    assert answer.status_code == 504 and answer.json()["error"]["code"] == "upstream_timeout"


def test_a_stream_past_the_deadline_ends_with_an_error_event(tmp_path: Path) -> None:
    server = FakeModelServer("up", events=50, event_delay=0.1)
    with one_upstream(tmp_path, server, request_timeout=0.5) as (url, headers):
        with stream_request(url, headers) as response:
            got = list(events(response.iter_lines()))
    assert 2 <= len(got) - 2 < 10
    assert json.loads(got[-2])["error"]["code"] == "upstream_timeout" and got[-1] == "[DONE]"


def test_an_answer_over_the_byte_cap_is_502(tmp_path: Path) -> None:
    with one_upstream(tmp_path, FakeModelServer("up", answer_bytes=5000), max_response_bytes=1000) as (url, headers):
        answer = httpx.post(f"{url}/v1/completions", headers=headers, json={"model": "m", "prompt": "x"})
    assert answer.status_code == 502 and "cap of 1000 bytes" in answer.json()["error"]["message"]


def test_a_replica_refusing_the_gateway_token_is_502_not_401(tmp_path: Path) -> None:
    with one_upstream(tmp_path, FakeModelServer("up", token="a-token-the-gateway-lacks")) as (url, headers):
        answer = httpx.post(f"{url}/v1/completions", headers=headers, json={"model": "m", "prompt": "x"})
    assert answer.status_code == 502 and "refused the gateway" in answer.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_model_server_error_answer_passes_through(tmp_path: Path, stream: bool) -> None:
    with one_upstream(tmp_path, FakeModelServer("up", status=429)) as (url, headers):
        answer = httpx.post(f"{url}/v1/completions", headers=headers, json={"model": "m", "prompt": "x",
                                                                             "stream": stream})
    assert answer.status_code == 429 and answer.headers["retry-after"] == "3"
    assert answer.json()["error"]["message"] == "queue full"


@pytest.mark.parametrize("body,status,code", [
    (b"not json", 400, "invalid_request"),
    (b'{"prompt": "no model"}', 400, "invalid_request"),
    (b'["a list"]', 400, "invalid_request"),
    (b'{"model": "Bad Name!"}', 404, "model_not_found"),
    (b'{"model": "m", "prompt": "' + b"x" * 2000 + b'"}', 413, "request_too_large"),
])
def test_bad_requests_are_refused_in_the_openai_shape(tmp_path: Path, body: bytes, status: int, code: str) -> None:
    with one_upstream(tmp_path, FakeModelServer("up"), max_request_bytes=1000) as (url, headers):
        answer = httpx.post(f"{url}/v1/completions", headers={**headers, "Content-Type": "application/json"},
                            content=body)
    assert answer.status_code == status and answer.json()["error"]["code"] == code


def test_unknown_routes_and_methods(tmp_path: Path) -> None:
    with gateway_over(tmp_path, FakeBackends({})) as (url, headers):
        assert httpx.get(f"{url}/v2/nothing", headers=headers).status_code == 404
        assert httpx.get(f"{url}/v1/completions", headers=headers).status_code == 405
        assert httpx.post(f"{url}/v1/models", headers=headers).status_code == 405
