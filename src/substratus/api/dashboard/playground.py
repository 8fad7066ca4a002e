"""A server's playground: the browser's prompt, proxied through the control plane to the server.

The browser only ever talks to the dashboard (same origin, session cookie,
CSRF token); the control plane calls the server at the `status.url` it
published itself (so the browser cannot aim it anywhere else) and adds the
server's bearer token when it has one. A server that lists `/v1/completions`
in its OpenAPI document gets an OpenAI streaming request and each piece is
passed on as it arrives; otherwise the contract's `POST /generate` is called
and its completion is passed on in one piece.

What goes back to the browser is NDJSON: `{"text": ...}` pieces, then one
`{"done": true, ...}` or `{"error": ...}` line. The HTTP client is injected
(tests use httpx.MockTransport).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import httpx  # at run time imported by the functions that use it: the control plane starts faster

OPENAI_PATH = "/v1/completions"
GENERATE_PATH = "/generate"
DETAIL_MAX = 400


class PlaygroundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=20_000)
    max_tokens: int = Field(64, ge=1, le=2048)
    temperature: float = Field(1.0, ge=0.0, le=2.0)


class UpstreamError(Exception):
    """The server answered with an error, or not at all."""


def headers_for(token: Optional[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def detect_api(client: "httpx.AsyncClient", base_url: str, token: Optional[str]) -> str:
    """"openai" when the server's OpenAPI document lists /v1/completions, else "generate"."""
    import httpx

    try:
        resp = await client.get(f"{base_url}/openapi.json", headers=headers_for(token), timeout=5)
        paths = resp.json().get("paths", {}) if resp.status_code == 200 else {}
    except (httpx.HTTPError, ValueError, AttributeError):
        return "generate"
    return "openai" if isinstance(paths, dict) and OPENAI_PATH in paths else "generate"


async def first_model(client: "httpx.AsyncClient", base_url: str, token: Optional[str]) -> Optional[str]:
    """The id the server lists first at /v1/models (None if it lists none: the field is then left out)."""
    import httpx

    try:
        resp = await client.get(f"{base_url}/v1/models", headers=headers_for(token), timeout=5)
        data = resp.json().get("data") if resp.status_code == 200 else None
        return str(data[0]["id"]) if data else None
    except (httpx.HTTPError, ValueError, AttributeError, KeyError, IndexError, TypeError):
        return None


def error_text(resp: "httpx.Response", body: bytes) -> str:
    try:
        detail: Any = json.loads(body).get("detail", body.decode(errors="replace"))
    except (ValueError, AttributeError):
        detail = body.decode(errors="replace")
    text = detail if isinstance(detail, str) else json.dumps(detail)
    return f"the server answered {resp.status_code}: {text[:DETAIL_MAX]}"


def sse_text(line: str) -> Optional[str]:
    """The text of one `data:` line of an OpenAI completion stream ('' for none, None at [DONE])."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        choices = json.loads(data).get("choices") or []
        return str(choices[0].get("text") or "") if choices else ""
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""


async def openai_pieces(client: "httpx.AsyncClient", base_url: str, token: Optional[str],
                        req: PlaygroundRequest) -> AsyncIterator[str]:
    import httpx

    body: dict[str, Any] = {"prompt": req.prompt, "max_tokens": req.max_tokens, "temperature": req.temperature,
                            "stream": True}
    model = await first_model(client, base_url, token)
    if model:
        body["model"] = model
    async with client.stream("POST", f"{base_url}{OPENAI_PATH}", json=body, headers=headers_for(token),
                             timeout=httpx.Timeout(10, read=300)) as resp:
        if resp.status_code != 200:
            raise UpstreamError(error_text(resp, await resp.aread()))
        async for line in resp.aiter_lines():
            text = sse_text(line)
            if text is None:
                return
            if text:
                yield text


async def generate_pieces(client: "httpx.AsyncClient", base_url: str, token: Optional[str],
                          req: PlaygroundRequest) -> AsyncIterator[str]:
    import httpx

    body = {"prompt": req.prompt, "max_new_tokens": req.max_tokens, "temperature": req.temperature}
    resp = await client.post(f"{base_url}{GENERATE_PATH}", json=body, headers=headers_for(token),
                             timeout=httpx.Timeout(10, read=300))
    if resp.status_code != 200:
        raise UpstreamError(error_text(resp, resp.content))
    try:
        generation = str(resp.json()["generation"])
    except (ValueError, KeyError, TypeError) as err:
        raise UpstreamError("the server's /generate answer has no \"generation\" field") from err
    yield generation[len(req.prompt):] if generation.startswith(req.prompt) else generation


async def run(client: "httpx.AsyncClient", base_url: str, token: Optional[str],
              req: PlaygroundRequest) -> AsyncIterator[bytes]:
    """NDJSON lines for the browser; never raises (errors become an `error` line)."""
    import httpx

    started = time.monotonic()
    api, pieces = "generate", 0
    try:
        api = await detect_api(client, base_url, token)
        stream = openai_pieces if api == "openai" else generate_pieces
        async for text in stream(client, base_url, token, req):
            pieces += 1
            yield line({"text": text})
    except UpstreamError as err:
        yield line({"error": str(err), "api": api})
        return
    except httpx.HTTPError as err:
        yield line({"error": f"could not reach the server: {type(err).__name__}: {err}"[:DETAIL_MAX], "api": api})
        return
    yield line({"done": True, "api": api, "pieces": pieces, "seconds": round(time.monotonic() - started, 3)})


def line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()
