"""Talking to one replica: bounded reads, deadlines, and failures sorted once, where they happen.

aiohttp is the client: on this project's machines it added about 1 ms per
proxied request where httpx added about 3 (`docs/gateway.md`, "Why these
libraries"). Every exchange has a connect bound, a bound on the gap between
reads and an overall deadline; a non-streamed answer is read up to
`max_response_bytes`. Failures become the pool's `Refused` / `Dropped` (the
request may go to another replica) only while nothing has reached the client;
later ones become an error event in the stream (`forward_stream`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Optional

import aiohttp

from substratus.gateway.asgi import JSON, Headers, Reply
from substratus.gateway.backends import Replica
from substratus.gateway.errors import GatewayError, UpstreamError, UpstreamTimeout, error_event
from substratus.gateway.pool import Dropped, Refused
from substratus.gateway.settings import GatewaySettings
from substratus.gateway.sse import DONE, EventFramer, EventTooLarge

PASSED_ON = ("content-type", "retry-after")  # upstream response headers the client sees
EVENT_STREAM = "text/event-stream"


@dataclass(frozen=True)
class Answer:
    """A whole (non-streamed) upstream answer, to pass on as it is."""

    status: int
    headers: Headers
    body: bytes


def classify(exc: BaseException, replica: Replica) -> Exception:
    """The one place where client-library errors become the gateway's."""
    where = f"replica {replica.id} ({replica.url})"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return Refused(f"{where}: no connection within the connect timeout")
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamTimeout(f"{where} did not answer in time", hint="the request ran past the gateway's "
                               "deadline; ask for fewer tokens or raise request_timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Refused(f"{where}: {exc.os_error.strerror or exc}")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError)):
        return Dropped(f"{where} closed the connection: {exc}")
    if isinstance(exc, EventTooLarge):
        return UpstreamError(f"{where}: {exc}")
    return UpstreamError(f"{where} answered badly: {exc}")


class Upstream:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._session: Optional[aiohttp.ClientSession] = None
        self._timeout = aiohttp.ClientTimeout(total=settings.request_timeout, sock_connect=settings.connect_timeout,
                                              sock_read=settings.read_timeout)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.settings.max_connections, limit_per_host=0,
                                             keepalive_timeout=self.settings.keepalive_seconds)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  auto_decompress=False, skip_auto_headers=("User-Agent",))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.asynccontextmanager
    async def _post(self, replica: Replica, path: str, body: bytes, accept: str) -> AsyncIterator[aiohttp.ClientResponse]:
        headers = {"Content-Type": "application/json", "Accept": accept, "Accept-Encoding": "identity"}
        if replica.token:
            headers["Authorization"] = f"Bearer {replica.token}"
        try:
            response = await self._client().post(replica.url + path, data=body, headers=headers)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise classify(exc, replica) from exc
        try:
            if response.status in (401, 403):  # the replica refused the gateway, not the client: say so
                raise UpstreamError(f"replica {replica.id} refused the gateway's request ({response.status})",
                                    hint="the replica's token in the Backends differs from the server's")
            yield response
        finally:
            response.close()  # unread or not: never hand a half-read connection back to the pool

    async def fetch(self, replica: Replica, path: str, body: bytes) -> Answer:
        """POST and read the whole answer (up to max_response_bytes)."""
        async with self._post(replica, path, body, "application/json") as response:
            return await self._read(replica, response)

    async def _read(self, replica: Replica, response: aiohttp.ClientResponse) -> Answer:
        cap = self.settings.max_response_bytes
        if response.content_length is not None and response.content_length > cap:
            raise UpstreamError(f"replica {replica.id} answered {response.content_length} bytes, over the "
                                f"gateway's cap of {cap} bytes", hint="raise max_response_bytes")
        parts: list[bytes] = []
        size = 0
        try:
            while chunk := await response.content.readany():
                size += len(chunk)
                if size > cap:
                    raise UpstreamError(f"replica {replica.id} answered over the gateway's cap of {cap} bytes",
                                        hint="raise max_response_bytes")
                parts.append(chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise classify(exc, replica) from exc
        return Answer(response.status, _passed_on(response), b"".join(parts))

    async def forward_stream(self, replica: Replica, path: str, body: bytes, reply: Reply) -> None:
        """POST a `stream: true` request and pass its events to the client as they come."""
        async with self._post(replica, path, body, EVENT_STREAM) as response:
            if response.status != 200 or EVENT_STREAM not in response.headers.get("Content-Type", ""):
                answer = await self._read(replica, response)  # an error answer: pass it on whole
                await reply.whole(answer.status, answer.body, answer.headers)
                return
            await reply.start(200, [(b"content-type", response.headers["Content-Type"].encode()),
                                    (b"cache-control", b"no-cache")])
            await self._pump(replica, response, reply)

    async def _pump(self, replica: Replica, response: aiohttp.ClientResponse, reply: Reply) -> None:
        """From here the client has the headers: no retry; a failure is an error event, then the end."""
        framer = EventFramer(self.settings.max_event_bytes)
        try:
            async for chunk in response.content.iter_any():
                out = framer.feed(chunk)
                if out:
                    await reply.chunk(out)
        except (aiohttp.ClientError, asyncio.TimeoutError, EventTooLarge) as exc:
            framer.drop()
            failure = classify(exc, replica)
            err = failure if isinstance(failure, GatewayError) else UpstreamError(
                f"{failure} in the middle of the stream", hint="retry the request")
            await reply.end(error_event(err) + DONE)
            return
        await reply.end(framer.rest())


def _passed_on(response: aiohttp.ClientResponse) -> Headers:
    headers = [(name.encode(), response.headers[name].encode()) for name in PASSED_ON if name in response.headers]
    return headers or [(b"content-type", JSON)]
