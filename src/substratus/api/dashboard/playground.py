"""A server's playground: the browser's prompt, proxied through the control plane to the server.

The browser only ever talks to the dashboard (same origin, session cookie,
CSRF token); the control plane calls the server at the `status.url` it
published itself (so the browser cannot aim it anywhere else) and adds the
server's bearer token when it has one. A server that lists `/v1/completions`
in its OpenAPI document gets an OpenAI streaming request and each piece is
passed on as it arrives; otherwise the contract's `POST /generate` is called
and its completion is passed on in one piece.

Nothing the server answers is read without bounds (`runtimes.answers`): the
lookups at most 1 MiB within 5 s, a generation at most 64 MiB (1 MiB a line)
within 10 minutes, an error body 64 KiB.

What goes back to the browser is NDJSON: `{"text": ...}` pieces, then one
`{"done": true, ...}` or `{"error": ...}` line. The HTTP client is injected
(tests use httpx.MockTransport).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from substratus.runtimes import answers

if TYPE_CHECKING:
    import httpx  # at run time imported by the functions that use it: the control plane starts faster

OPENAI_PATH = "/v1/completions"
GENERATE_PATH = "/generate"
DETAIL_MAX = 400
DETAIL_READ = 64 * 1024        # bytes of an error answer read (DETAIL_MAX of them are shown)
LOOKUP_SECONDS = 5.0           # /openapi.json, /v1/models: the whole request
GENERATION_SECONDS = 600.0     # a generation, streamed or not, from request to last byte


class PlaygroundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=20_000)
    max_tokens: int = Field(64, ge=1, le=2048)
    temperature: float = Field(1.0, ge=0.0, le=2.0)


class UpstreamError(Exception):
    """The server answered with an error, or not at all."""


def headers_for(token: Optional[str]) -> dict[str, str]:
    """Our headers to a server: its token, and no compression (a body is capped as it arrives)."""
    return {"Accept-Encoding": "identity", **({"Authorization": f"Bearer {token}"} if token else {})}


async def get_small(client: "httpx.AsyncClient", url: str, token: Optional[str]) -> tuple[int, bytes]:
    """Status and body of a GET, the body at most answers.SMALL bytes, all within LOOKUP_SECONDS."""
    async def fetch() -> tuple[int, bytes]:
        async with client.stream("GET", url, headers=headers_for(token), timeout=LOOKUP_SECONDS) as resp:
            return resp.status_code, await answers.read_async(resp, answers.SMALL)

    return await asyncio.wait_for(fetch(), LOOKUP_SECONDS)


LOOKUP_ERRORS = (ValueError, AttributeError, answers.AnswerTooLarge, answers.AnswerTooSlow, asyncio.TimeoutError)


async def detect_api(client: "httpx.AsyncClient", base_url: str, token: Optional[str]) -> str:
    """"openai" when the server's OpenAPI document lists /v1/completions, else "generate"."""
    import httpx

    try:
        status, body = await get_small(client, f"{base_url}/openapi.json", token)
        paths = json.loads(body).get("paths", {}) if status == 200 else {}
    except (httpx.HTTPError, *LOOKUP_ERRORS):
        return "generate"
    return "openai" if isinstance(paths, dict) and OPENAI_PATH in paths else "generate"


async def first_model(client: "httpx.AsyncClient", base_url: str, token: Optional[str]) -> Optional[str]:
    """The id the server lists first at /v1/models (None if it lists none: the field is then left out)."""
    import httpx

    try:
        status, body = await get_small(client, f"{base_url}/v1/models", token)
        data = json.loads(body).get("data") if status == 200 else None
        return str(data[0]["id"]) if data else None
    except (httpx.HTTPError, KeyError, IndexError, TypeError, *LOOKUP_ERRORS):
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
    deadline = time.monotonic() + GENERATION_SECONDS
    async with client.stream("POST", f"{base_url}{OPENAI_PATH}", json=body, headers=headers_for(token),
                             timeout=httpx.Timeout(10, read=300)) as resp:
        if resp.status_code != 200:
            raise UpstreamError(error_text(resp, await answers.read_async(resp, DETAIL_READ, deadline)))
        async for line in answers.lines_async(resp, deadline):
            text = sse_text(line)
            if text is None:
                return
            if text:
                yield text


async def generate_pieces(client: "httpx.AsyncClient", base_url: str, token: Optional[str],
                          req: PlaygroundRequest) -> AsyncIterator[str]:
    import httpx

    body = {"prompt": req.prompt, "max_new_tokens": req.max_tokens, "temperature": req.temperature}
    deadline = time.monotonic() + GENERATION_SECONDS
    async with client.stream("POST", f"{base_url}{GENERATE_PATH}", json=body, headers=headers_for(token),
                             timeout=httpx.Timeout(10, read=300)) as resp:
        content = await answers.read_async(resp, answers.STREAM if resp.status_code == 200 else DETAIL_READ, deadline)
    if resp.status_code != 200:
        raise UpstreamError(error_text(resp, content))
    try:
        generation = str(json.loads(content)["generation"])
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
    except (answers.AnswerTooLarge, answers.AnswerTooSlow) as err:
        yield line({"error": f"the server's answer was refused: {err}", "api": api})
        return
    except httpx.HTTPError as err:
        yield line({"error": f"could not reach the server: {type(err).__name__}: {err}"[:DETAIL_MAX], "api": api})
        return
    yield line({"done": True, "api": api, "pieces": pieces, "seconds": round(time.monotonic() - started, 3)})


def line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()
