"""Async face of the batching engine, for the HTTP routes.

The engine calls its sinks on its worker thread; :class:`Generator` turns
those calls into an async stream per request, cancels the request when the
consumer stops listening, and cuts text at OpenAI-style stop strings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from substratus_ml.engine import BatchEngine, DoneEvent, Event, SamplingParams, TextEvent


class GenerationError(RuntimeError):
    """The model failed while generating (the engine reported an error)."""


@dataclass(frozen=True)
class Result:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class StopScanner:
    """Releases text as it streams, holding back a tail that may begin a stop string."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buffer = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        self.buffer += text
        hits = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buffer, self.stopped = self.buffer[: min(hits)], "", True
            return out
        hold = self._partial_stop_length()
        out = self.buffer[: len(self.buffer) - hold]
        self.buffer = self.buffer[len(self.buffer) - hold:]
        return out

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out

    def _partial_stop_length(self) -> int:
        for size in range(min(len(self.buffer), max((len(s) for s in self.stops), default=1) - 1),
                          0, -1):
            if any(s.startswith(self.buffer[-size:]) for s in self.stops):
                return size
        return 0


class Subscription:
    """One submitted request: iterate for its events; ``cancel`` stops it in the engine."""

    def __init__(self, engine: BatchEngine, prompt: str, params: SamplingParams) -> None:
        loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[Event] = asyncio.Queue()

        def sink(event: Event) -> None:
            loop.call_soon_threadsafe(self._events.put_nowait, event)

        self._handle = engine.submit(prompt, params, sink)

    def cancel(self) -> None:
        self._handle.cancel()

    async def events(self) -> AsyncIterator[Event]:
        try:
            while True:
                event = await self._events.get()
                if isinstance(event, DoneEvent) and event.error is not None:
                    raise GenerationError(event.error)
                yield event
                if isinstance(event, DoneEvent):
                    return
        finally:
            self.cancel()  # the consumer left early (client gone): free the batch slot


class Generator:
    def __init__(self, engine: BatchEngine) -> None:
        self.engine = engine

    async def stream_text(self, prompt: str, params: SamplingParams,
                          stops: Sequence[str] = ()) -> AsyncIterator[str | Result]:
        """Text pieces, then one :class:`Result` with the whole (stop-trimmed) text."""
        scanner, parts = StopScanner(stops), []
        subscription = Subscription(self.engine, prompt, params)
        async for event in subscription.events():
            if isinstance(event, TextEvent):
                if scanner.stopped:
                    continue  # text produced before the engine saw the cancel
                piece = scanner.feed(event.text)
                if piece:
                    parts.append(piece)
                    yield piece
                if scanner.stopped:
                    subscription.cancel()
                continue
            if not scanner.stopped:
                tail = scanner.flush()
                if tail:
                    parts.append(tail)
                    yield tail
            reason = "stop" if scanner.stopped else event.finish_reason
            yield Result("".join(parts), reason, event.prompt_tokens, event.completion_tokens)

    async def complete(self, prompt: str, params: SamplingParams,
                       stops: Sequence[str] = ()) -> Result:
        result: Result | None = None
        async for item in self.stream_text(prompt, params, stops):
            if isinstance(item, Result):
                result = item
        assert result is not None  # stream_text always ends with a Result
        return result
