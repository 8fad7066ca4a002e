"""Async face of the batching engine, for the HTTP routes.

The engine calls its sinks on its worker thread; :class:`Generator` turns
those calls into an async stream per request (one event-loop wake-up per batch
of events, not one per token and request), cancels the request when the
consumer stops listening, cuts text at OpenAI-style stop strings, and turns the
request limits into exceptions that the app maps to HTTP status codes:
prompts over the token limit and more new tokens than the server allows (400),
a full queue (429), a stopped engine (503), a passed deadline (504). Each
carries a ``code``, the stable ``error.code`` of the HTTP body.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from substratus_ml.adapter_errors import UnknownModel
from substratus_ml.engine import (BatchEngine, DoneEvent, EngineStopped, Event, QueueFull,
                                  SamplingParams, TextEvent)
from substratus_ml.lora_bank import Adapter


class GenerationError(RuntimeError):
    """The model failed while generating (the engine reported an error)."""

    code = "generation_failed"


class PromptTooLong(ValueError):
    """The prompt has more tokens than the server accepts."""

    code = "context_length_exceeded"


class TooManyNewTokens(ValueError):
    """A request asked for more new tokens than the server generates per request."""

    code = "max_tokens_too_large"

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class Overloaded(RuntimeError):
    """The engine's queue is full; retry later."""

    code = "queue_full"


class EngineUnavailable(RuntimeError):
    """The engine is shutting down or could not start."""

    code = "engine_unavailable"


class DeadlineExceeded(TimeoutError):
    """The request ran past its deadline and was stopped."""

    code = "timeout"


def new_tokens(requested: int | None, field: str, bound: int, default: int) -> int:
    """The new tokens a request gets: ``requested``, or ``min(default, bound)`` when absent.

    More than ``bound`` is refused, never clipped: the caller asked for something
    this server does not do and should hear so (vLLM answers 400 too)."""
    if requested is None:
        return min(default, bound)
    if requested > bound:
        raise TooManyNewTokens(f"{field} is {requested}; this server generates at most {bound} new "
                               "tokens per request (SUBSTRATUS_MAX_NEW_TOKENS)", field)
    return requested


FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Result:
    text: str
    finish_reason: FinishReason
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


class _Mailbox:
    """Carries engine events into one event loop, with one wake-up per burst of events."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue[Event], Event]] = []
        self._scheduled = False

    def post(self, queue: asyncio.Queue[Event], event: Event) -> None:
        with self._lock:
            self._pending.append((queue, event))
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._deliver)  # raises once the loop is closed

    def _deliver(self) -> None:
        with self._lock:
            pending, self._pending, self._scheduled = self._pending, [], False
        for queue, event in pending:
            queue.put_nowait(event)


class Subscription:
    """One submitted request: iterate for its events; ``cancel`` stops it in the engine."""

    def __init__(self, engine: BatchEngine, mailbox: _Mailbox, prompt_ids: list[int],
                 params: SamplingParams, deadline: float | None, stream: bool,
                 adapter: Adapter | None) -> None:
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        events = self._events

        def sink(event: Event) -> None:
            mailbox.post(events, event)

        if adapter is not None and adapter.unloaded:  # unloaded since the route resolved it
            raise UnknownModel(f"the adapter {adapter.name!r} was unloaded; GET /v1/models lists "
                               "what this server serves")
        try:
            self._handle = engine.submit(prompt_ids, params, sink, deadline, stream, adapter)
        except QueueFull as exc:
            raise Overloaded(str(exc)) from exc
        except EngineStopped as exc:
            raise EngineUnavailable(str(exc)) from exc

    def cancel(self) -> None:
        self._handle.cancel()

    def __del__(self) -> None:
        # A response dropped before it began streaming never runs events()' finally.
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.cancel()

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
    def __init__(self, engine: BatchEngine, tokenizer: Any, max_prompt_tokens: int,
                 timeout_s: float | None = None) -> None:
        self.engine, self.tokenizer = engine, tokenizer
        self.max_prompt_tokens, self.timeout_s = max_prompt_tokens, timeout_s
        self._encode_lock = threading.Lock()  # a fast tokenizer must not be re-entered
        self._mailboxes: dict[asyncio.AbstractEventLoop, _Mailbox] = {}

    def _encode_now(self, text: str, special: bool) -> list[int]:
        with self._encode_lock:
            return list(self.tokenizer.encode(text, add_special_tokens=special))

    async def encode(self, text: str, special: bool = True) -> list[int]:
        """Token ids of ``text``; raises :class:`PromptTooLong` past the limit."""
        ids = await asyncio.to_thread(self._encode_now, text, special)
        if len(ids) > self.max_prompt_tokens:
            raise PromptTooLong(f"the prompt has {len(ids)} tokens; this server accepts at most "
                                f"{self.max_prompt_tokens} (SUBSTRATUS_MAX_PROMPT_TOKENS)")
        return ids

    def _mailbox(self) -> _Mailbox:
        loop = asyncio.get_running_loop()
        if loop not in self._mailboxes:
            self._mailboxes = {l: m for l, m in self._mailboxes.items() if not l.is_closed()}
            self._mailboxes[loop] = _Mailbox(loop)
        return self._mailboxes[loop]

    def stream_text(self, prompt_ids: list[int], params: SamplingParams,
                    stops: Sequence[str] = (), stream: bool = True,
                    adapter: Adapter | None = None) -> AsyncIterator[str | Result]:
        """Submit now (so a full queue raises :class:`Overloaded` before any response
        starts); the iterator yields text pieces, then one :class:`Result` with the
        whole (stop-trimmed) text. ``stream=False``: one piece at the end (the
        engine then does no per-token text work), unless stop strings need the text
        as it comes. ``adapter``: the LoRA adapter to generate with (None: the base)."""
        deadline = time.monotonic() + self.timeout_s if self.timeout_s else None
        subscription = Subscription(self.engine, self._mailbox(), prompt_ids, params, deadline,
                                    stream or bool(stops), adapter)
        return self._pieces(subscription, StopScanner(stops))

    async def _pieces(self, subscription: Subscription,
                      scanner: StopScanner) -> AsyncIterator[str | Result]:
        parts: list[str] = []
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
            if event.finish_reason == "timeout":
                raise DeadlineExceeded(f"the request ran past its deadline of {self.timeout_s:g} s "
                                       "(SUBSTRATUS_REQUEST_TIMEOUT) and was stopped")
            if not scanner.stopped:
                tail = scanner.flush()
                if tail:
                    parts.append(tail)
                    yield tail
            reason: FinishReason = ("length" if event.finish_reason == "length" and not scanner.stopped
                                    else "stop")
            yield Result("".join(parts), reason, event.prompt_tokens, event.completion_tokens)

    async def complete(self, prompt_ids: list[int], params: SamplingParams,
                       stops: Sequence[str] = (), adapter: Adapter | None = None) -> Result:
        result: Result | None = None
        async for item in self.stream_text(prompt_ids, params, stops, False, adapter):
            if isinstance(item, Result):
                result = item
        assert result is not None  # stream_text always ends with a Result
        return result
