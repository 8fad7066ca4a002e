"""The playground proxy (api/dashboard/playground.py) against fake servers (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from substratus.api.dashboard.playground import PlaygroundRequest, run

Handler = Callable[[httpx.Request], httpx.Response]
BASE = "http://127.0.0.1:4000"


def collect(handler: Handler, token: str | None = None, **req: Any) -> list[dict[str, Any]]:
    body = PlaygroundRequest(**{"prompt": "Hello", "max_tokens": 5, "temperature": 0.5, **req})

    async def go() -> list[dict[str, Any]]:
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        return [json.loads(line) async for line in run(client, BASE, token, body)]

    return asyncio.run(go())


def openapi(*paths: str) -> httpx.Response:
    return httpx.Response(200, json={"openapi": "3.1.0", "paths": {p: {} for p in paths}})


def sse(*texts: str) -> bytes:
    events = [f"data: {json.dumps({'choices': [{'text': t, 'index': 0}]})}\n\n" for t in texts]
    return ("".join(events) + ": keep-alive comment\n\ndata: [DONE]\n\n").encode()


def test_an_openai_server_is_streamed_piece_by_piece() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers.get("authorization") == "Bearer tok"
        if request.url.path == "/openapi.json":
            return openapi("/generate", "/v1/completions", "/v1/models")
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "tiny"}]})
        assert request.url.path == "/v1/completions"
        sent.append(json.loads(request.content))
        return httpx.Response(200, content=sse(" wor", "ld", "!"), headers={"content-type": "text/event-stream"})

    lines = collect(handler, token="tok")
    assert [x["text"] for x in lines if "text" in x] == [" wor", "ld", "!"]
    assert lines[-1]["done"] is True and lines[-1]["api"] == "openai" and lines[-1]["pieces"] == 3
    assert sent == [{"prompt": "Hello", "max_tokens": 5, "temperature": 0.5, "stream": True, "model": "tiny"}]


def test_a_contract_only_server_gets_generate_and_one_piece_without_the_prompt() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        if request.url.path == "/openapi.json":
            return openapi("/generate", "/docs")
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"generation": "Hello there friend"})

    lines = collect(handler)
    assert lines[0] == {"text": " there friend"}
    assert lines[-1]["done"] is True and lines[-1]["api"] == "generate"
    assert sent == [{"prompt": "Hello", "max_new_tokens": 5, "temperature": 0.5}]


def test_no_openapi_document_falls_back_to_generate() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/openapi.json":
            return httpx.Response(404, text="nope")
        return httpx.Response(200, json={"generation": "Hello again"})

    assert collect(handler)[0] == {"text": " again"}


def test_server_errors_become_an_error_line() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/openapi.json":
            return openapi("/v1/completions")
        if request.url.path == "/v1/models":
            return httpx.Response(500)
        return httpx.Response(422, json={"detail": [{"msg": "max_tokens too big"}]})

    [line] = collect(handler)
    assert line["api"] == "openai" and "422" in line["error"] and "max_tokens too big" in line["error"]


def test_a_generate_answer_without_generation_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"text": "?"}) if request.url.path == "/generate" else openapi("/generate")

    [line] = collect(handler)
    assert "generation" in line["error"]


def test_an_unreachable_server_is_an_error_line_not_an_exception() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    [line] = collect(handler)
    assert line["error"].startswith("could not reach the server: ConnectError")
