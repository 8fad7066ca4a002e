"""Every bound on a request, and the bearer token: each bad request gets its status and a reason."""

from __future__ import annotations

import dataclasses
import functools
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import SERVER_SETTINGS, LiveServer
from substratus_ml.app import create_app
from substratus_ml.loading import LoadedModel, load_model
from substratus_ml.settings import ServeSettings, SettingsError

BOUND = SERVER_SETTINGS.max_new_tokens
LIMITED = dataclasses.replace(SERVER_SETTINGS, max_body_bytes=4096, max_prompt_tokens=40)
LONG_PROMPT = "the quick brown fox jumps over the lazy dog " * 20  # far over 40 tokens


@pytest.fixture(scope="module")
def limited(tiny_model: LoadedModel) -> Iterator[LiveServer]:
    with LiveServer(create_app(LIMITED, lambda: tiny_model)) as server:
        yield server


@pytest.fixture(scope="module")
def slow_model(tiny_dir: Path) -> LoadedModel:
    """Its own copy of the tiny model, 40 ms a forward pass: requests stay running a while."""
    loaded = load_model(tiny_dir)
    real = loaded.model.forward

    @functools.wraps(real)
    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(0.04)
        return real(*args, **kwargs)

    loaded.model.forward = slow
    return loaded


def _metric(url: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# (path, body, status, fragment of the message)
BAD_BODIES = [
    ("/generate", {"prompt": LONG_PROMPT, "max_new_tokens": 4}, 400, "at most 40 (SUBSTRATUS_MAX_PROMPT_TOKENS)"),
    ("/v1/completions", {"prompt": LONG_PROMPT, "max_tokens": 4}, 400, "at most 40"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONG_PROMPT}]}, 400, "at most 40"),
    ("/generate", {"max_new_tokens": 5}, 422, "prompt: Field required"),
    ("/generate", {"prompt": "x", "max_new_tokens": 0}, 422, "greater than or equal to 1"),
    ("/generate", {"prompt": "x", "max_new_tokens": BOUND + 1}, 400,
     f"max_new_tokens is {BOUND + 1}; this server generates at most {BOUND} new tokens per request "
     "(SUBSTRATUS_MAX_NEW_TOKENS)"),
    ("/v1/completions", {"prompt": "x", "max_tokens": BOUND + 1}, 400, f"at most {BOUND} new tokens"),
    ("/generate", {"prompt": "x", "temperature": -1}, 422, "temperature"),
    ("/generate", {"prompt": "x", "top_p": 0}, 422, "top_p"),
    ("/generate", [1, 2], 422, "valid dictionary"),
    ("/generate", {"prompt": "x", "repetition_penalty": 1e-323}, 422, "repetition_penalty"),  # schemathesis
    ("/v1/completions", {"prompt": ["a", "b"]}, 422, "only one prompt"),
    ("/v1/completions", {"prompt": "a", "n": 2}, 422, "n: Input should be less than or equal to 1"),
    ("/v1/completions", {"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, 422, "1 to 4"),
    ("/v1/chat/completions", {"messages": []}, 422, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}, 422, "role"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x"}}]}]}, 422, "content"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": BOUND + 1},
     400, f"max_tokens is {BOUND + 1}; this server generates at most {BOUND}"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                              "max_completion_tokens": BOUND + 1}, 400, "max_completion_tokens is"),
]


@pytest.mark.parametrize("path, body, status, fragment", BAD_BODIES,
                         ids=[f"{i}-{case[0]}-{case[2]}" for i, case in enumerate(BAD_BODIES)])
def test_bad_bodies_get_their_status_and_a_reason(limited: LiveServer, path: str, body: object,
                                                  status: int, fragment: str) -> None:
    response = httpx.post(f"{limited.url}{path}", json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert fragment in (payload.get("message") or payload.get("detail") or ""), payload


def test_a_body_over_the_bound_is_413_declared_or_streamed(limited: LiveServer) -> None:
    big = json.dumps({"prompt": "x" * 5000}).encode()
    declared = httpx.post(f"{limited.url}/generate", content=big,
                          headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "SUBSTRATUS_MAX_BODY_BYTES" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no content-length: counted as it arrives
        for start in range(0, len(big), 1000):
            yield big[start:start + 1000]

    streamed = httpx.post(f"{limited.url}/v1/completions", content=chunks(),
                          headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "4096 bytes" in streamed.json()["detail"]
    assert _metric(limited.url, "substratus_requests_rejected_total", reason="body_too_large") >= 2


def test_invalid_json_and_a_wrong_content_type_are_422(limited: LiveServer) -> None:
    for content, kind in ((b'{"prompt": "x",', "application/json"), (b"prompt=x", "text/plain")):
        response = httpx.post(f"{limited.url}/generate", content=content, headers={"content-type": kind})
        assert response.status_code == 422, (content, response.text)


def test_a_prompt_at_the_limit_is_served(limited: LiveServer, tiny_model: LoadedModel) -> None:
    words = "the quick brown fox jumps over the lazy dog " * 20
    ids = tiny_model.tokenizer.encode(words)[:40]
    prompt = tiny_model.tokenizer.decode(ids)
    assert len(tiny_model.tokenizer.encode(prompt)) <= 40
    response = httpx.post(f"{limited.url}/generate", json={"prompt": prompt, "max_new_tokens": 3})
    assert response.status_code == 200, response.text


def test_a_full_queue_answers_429_with_retry_after(slow_model: LoadedModel) -> None:
    settings = dataclasses.replace(SERVER_SETTINGS, max_batch=1, max_queue=1)
    body = {"prompt": "The", "max_new_tokens": 40}
    with LiveServer(create_app(settings, lambda: slow_model)) as server:
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(
            httpx.post(f"{server.url}/generate", json=body, timeout=60).status_code)) for _ in range(2)]
        for thread in threads:
            thread.start()
            time.sleep(0.3)  # the first is running, the second waits in the queue
        refused = httpx.post(f"{server.url}/generate", json=body, timeout=60)
        for thread in threads:
            thread.join(60)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "limit 1" in refused.json()["detail"]
        assert sorted(results) == [200, 200]


def test_the_deadline_stops_a_request_504_or_an_error_event(slow_model: LoadedModel) -> None:
    settings = dataclasses.replace(SERVER_SETTINGS, request_timeout_s=0.5)
    with LiveServer(create_app(settings, lambda: slow_model)) as server:
        plain = httpx.post(f"{server.url}/generate", json={"prompt": "The", "max_new_tokens": 60},
                           timeout=60)
        assert plain.status_code == 504 and "SUBSTRATUS_REQUEST_TIMEOUT" in plain.json()["detail"]
        body = {"prompt": "The", "max_tokens": 60, "stream": True, "ignore_eos": True}
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as stream:
            events = [line for line in stream.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        assert json.loads(events[-2][6:])["error"]["type"] == "timeout"
        assert _metric(server.url, "substratus_requests_total", finish_reason="timeout") == 2


def test_a_client_that_leaves_stops_its_non_streaming_generation(slow_model: LoadedModel) -> None:
    with LiveServer(create_app(SERVER_SETTINGS, lambda: slow_model)) as server:
        body = json.dumps({"prompt": "The", "max_new_tokens": BOUND}).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            time.sleep(0.5)  # generating now (40 ms a token: 64 tokens take 2.5 s)
        engine = server.server.config.app.state.slot.engine  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while engine.stats.finished["cancelled"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.stats.finished["cancelled"] == 1
        assert _metric(server.url, "substratus_requests_total", finish_reason="cancelled") == 1
        assert _metric(server.url, "substratus_generation_tokens_total") < BOUND


TOKEN = "s3cret-token-for-tests-0123456789"


def test_the_bearer_token_guards_everything_but_docs_probes_and_metrics(tiny_model: LoadedModel) -> None:
    settings = dataclasses.replace(SERVER_SETTINGS, token=TOKEN)
    with LiveServer(create_app(settings, lambda: tiny_model)) as server:
        for path in ("/docs", "/openapi.json", "/healthz", "/readyz", "/metrics"):
            assert httpx.get(f"{server.url}{path}").status_code == 200, path
        body = {"prompt": "The", "max_new_tokens": 2}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": ""}, {"Authorization": "Bearer"}):
            denied = httpx.post(f"{server.url}/generate", json=body, headers=headers)
            assert denied.status_code == 401, headers
            assert denied.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(f"{server.url}/v1/models").status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.post(f"{server.url}/generate", json=body, headers=good).status_code == 200
        from openai import OpenAI

        client = OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN)
        assert client.models.list().data[0].id == "tiny-test"
        assert _metric(server.url, "substratus_requests_rejected_total", reason="unauthorized") == 6


@pytest.mark.parametrize("value", ["", "short", " " * 20])
def test_a_short_or_empty_token_refuses_to_start(value: str) -> None:
    with pytest.raises(SettingsError, match="SUBSTRATUS_SERVER_TOKEN"):
        ServeSettings.from_env({"SUBSTRATUS_SERVER_TOKEN": value})


def test_limits_come_from_the_environment() -> None:
    settings = ServeSettings.from_env({
        "SUBSTRATUS_MAX_BODY_BYTES": "2048", "SUBSTRATUS_MAX_PROMPT_TOKENS": "100",
        "SUBSTRATUS_MAX_QUEUE": "8", "SUBSTRATUS_REQUEST_TIMEOUT": "30",
        "SUBSTRATUS_MAX_MODEL_LEN": "512", "SUBSTRATUS_SERVER_TOKEN": TOKEN})
    assert (settings.max_body_bytes, settings.max_prompt_tokens, settings.max_queue,
            settings.request_timeout_s, settings.max_model_len) == (2048, 100, 8, 30.0, 512)
    assert TOKEN not in repr(settings)
    with pytest.raises(SettingsError, match="SUBSTRATUS_MAX_QUEUE='0': must be >= 1"):
        ServeSettings.from_env({"SUBSTRATUS_MAX_QUEUE": "0"})
    with pytest.raises(SettingsError, match="SUBSTRATUS_MAX_BODY_BYTES='lots'"):
        ServeSettings.from_env({"SUBSTRATUS_MAX_BODY_BYTES": "lots"})
