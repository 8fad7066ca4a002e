"""Stop a non-streaming generation when its client goes away.

A streamed response notices a closed connection when it next writes; a
non-streaming one writes nothing until the end, so without this a client that
gave up would keep its batch slot until its last token. The ASGI server
answers ``receive()`` with ``http.disconnect`` once the body has been read and
the connection closes: :func:`until_disconnected` waits for that beside the
work and cancels the work (which cancels the request in the engine) if it
comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection before its response was ready."""


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    raise ClientGone("the client closed the connection; generation stopped")
