"""Continuous batching: iteration-level scheduling of generation requests on one worker thread.

Each iteration of the worker loop (1) admits waiting requests into free cache
slots and prefills their prompts together, which yields each one's first token,
and (2) runs one decode step for every running request. A request that arrives
while others decode therefore joins at the next step instead of waiting for a
whole batch to finish, and a request that finishes (end of sequence, its token
limit, its caller gone, its deadline) leaves at once, freeing its slot. The KV
cache is preallocated (:mod:`substratus_ml.kvcache`), sampling happens on the
device (:mod:`substratus_ml.sampling`) and only token ids cross to the host,
and text is detokenized incrementally (:mod:`substratus_ml.detok`).

Greedy output does not depend on what else is running: each row keeps its own
positions and attends only to its own tokens (tested: batched equals alone).

LoRA adapters (:mod:`substratus_ml.lora_bank`): a request may name a loaded
adapter; rows of different adapters and of the base share every prefill and
decode step (a per-row slot index into stacked adapter weights). Loading and
unloading run as commands on the worker thread between two steps
(:meth:`BatchEngine.add_adapter`, :meth:`BatchEngine.remove_adapter`); an
unloaded adapter's slot is freed once no waiting or running request uses it.

All model and tokenizer calls happen on the engine's thread; ``submit`` may be
called from any thread and events reach each request's sink on the engine
thread (:mod:`substratus_ml.generation` carries them to the event loop).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch

from substratus_ml.detok import IncrementalDetokenizer, decoder
from substratus_ml.loading import LoadedModel
from substratus_ml.lora_bank import Adapter, LoraBank
from substratus_ml.peft_adapter import LoraWeights
from substratus_ml.runner import ModelRunner
from substratus_ml.sampling import is_greedy, next_tokens

T = TypeVar("T")


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    ignore_eos: bool = False  # benchmarks: always produce max_new_tokens
    stop_token_ids: tuple[int, ...] = ()  # e.g. a chat template's end-of-turn token
    repetition_penalty: float = 1.0  # see substratus_ml.penalties
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    @property
    def penalised(self) -> bool:
        return (self.repetition_penalty != 1.0 or self.frequency_penalty != 0.0
                or self.presence_penalty != 0.0)

    @property
    def penalties(self) -> tuple[float, float, float]:
        return self.repetition_penalty, self.frequency_penalty, self.presence_penalty


@dataclass(frozen=True)
class TextEvent:
    """New completion text (may be empty when a token is an incomplete character)."""

    text: str


@dataclass(frozen=True)
class DoneEvent:
    """The request finished: ``stop``, ``length``, ``cancelled``, ``timeout`` or ``error``."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


Event = TextEvent | DoneEvent
Sink = Callable[[Event], None]


class QueueFull(Exception):
    """Too many requests are waiting; the caller should retry later."""


class EngineStopped(Exception):
    """The engine was closed and takes no more requests."""


class Observer(Protocol):
    """What the engine reports as it works (the server's Prometheus metrics)."""

    def scheduled(self, waiting: int, running: int) -> None: ...

    def token(self, first: bool, seconds: float) -> None: ...

    def finished(self, reason: str, prompt_tokens: int, completion_tokens: int,
                 seconds: float) -> None: ...


class _NoObserver:
    def scheduled(self, waiting: int, running: int) -> None:
        pass

    def token(self, first: bool, seconds: float) -> None:
        pass

    def finished(self, reason: str, prompt_tokens: int, completion_tokens: int,
                 seconds: float) -> None:
        pass


@dataclass(frozen=True)
class EngineConfig:
    max_batch: int = 16  # cache slots: requests decoded together
    max_model_len: int | None = None  # tokens per slot; default min(context, 2048)
    max_queue: int = 256  # waiting requests before submit refuses (QueueFull)
    prefill_tokens: int = 4096  # padded prompt tokens one prefill may take
    seed: int | None = None
    cuda_graphs: bool = True


@dataclass(eq=False)
class _Request:
    prompt_ids: list[int]
    params: SamplingParams
    sink: Sink
    deadline: float | None
    stream: bool = True
    adapter: Adapter | None = None
    arrived: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)


class RequestHandle:
    """Lets the caller stop a request early (client gone, stop sequence seen)."""

    def __init__(self, request: _Request) -> None:
        self._request = request

    def cancel(self) -> None:
        self._request.cancelled.set()


@dataclass(eq=False)
class _Row:
    request: _Request
    prompt_len: int
    limit: int
    detok: IncrementalDetokenizer
    length: int = 0  # tokens in this row's cache slot
    generated: int = 0
    last_time: float = 0.0


@dataclass
class EngineStats:
    steps: int = 0
    prefills: int = 0
    requests: int = 0
    largest_batch: int = 0
    finished: collections.Counter[str] = field(default_factory=collections.Counter)


class BatchEngine:
    """Owns the model; ``submit`` from any thread, events arrive on the worker thread."""

    def __init__(self, loaded: LoadedModel, config: EngineConfig | None = None,
                 observer: Observer | None = None) -> None:
        self.loaded, self.config = loaded, config or EngineConfig()
        self.max_batch = max(1, self.config.max_batch)
        self.max_len = min(loaded.context_length, self.config.max_model_len or 2048)
        self.stats = EngineStats()
        self._observer: Observer = observer or _NoObserver()
        self._waiting: collections.deque[_Request] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._rows: list[_Row] = []
        self._admitting: list[_Request] = []  # taken from the queue, being prefilled
        tok = loaded.tokenizer
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self._eos_ids = frozenset(eos_ids(loaded))
        self._text_of = decoder(tok)
        self._runner: ModelRunner | None = None
        self._generator: torch.Generator | None = None
        self._commands: collections.deque[tuple[Callable[[], Any], Future[Any]]] = collections.deque()
        self._retired: list[Adapter] = []  # unloaded, freed once no request uses them
        self.bank = LoraBank(loaded.model)

    # -- any thread ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="substratus-engine", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
        else:  # never started: nobody else will answer the queued commands
            self._cancel_commands()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, prompt_ids: list[int], params: SamplingParams, sink: Sink,
               deadline: float | None = None, stream: bool = True,
               adapter: Adapter | None = None) -> RequestHandle:
        """Queue a request; raises :class:`QueueFull` or :class:`EngineStopped`.

        ``stream=False``: the text arrives in one event when the request finishes
        (less work per token for callers that only want the whole answer).
        ``adapter``: a LoRA adapter installed with :meth:`add_adapter` (None: the base)."""
        request = _Request(list(prompt_ids), params, sink, deadline, stream, adapter)
        with self._wake:
            if self._closing:
                raise EngineStopped("the engine is shutting down")
            if len(self._waiting) >= self.config.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting "
                                f"(limit {self.config.max_queue})")
            self._waiting.append(request)
            self._wake.notify()
        return RequestHandle(request)

    def add_adapter(self, adapter: Adapter, weights: LoraWeights) -> Future[None]:
        """Install ``weights`` for ``adapter`` between two steps; the future completes then."""
        return self.call(lambda: self.bank.install(adapter, weights))

    def remove_adapter(self, adapter: Adapter) -> Future[None]:
        """Retire ``adapter``: its slot is freed once no waiting or running request uses it.

        The caller stops handing it to :meth:`submit` first (``adapter.unloaded``)."""
        def retire() -> None:
            self._retired.append(adapter)
            self._free_retired()
        return self.call(retire)

    def call(self, command: Callable[[], T]) -> Future[T]:
        """Run ``command`` on the worker thread between two steps; raises :class:`EngineStopped`."""
        future: Future[T] = Future()
        with self._wake:
            if self._closing:
                raise EngineStopped("the engine is shutting down")
            self._commands.append((command, future))
            self._wake.notify()
        return future

    # -- worker thread -------------------------------------------------------------

    def _setup(self) -> None:
        model = self.loaded.model
        self._runner = ModelRunner(model, self.max_batch, self.max_len, self._pad_id,
                                   self.config.cuda_graphs, self.bank)
        if self.config.seed is not None:
            self._generator = torch.Generator(device=model.device).manual_seed(self.config.seed)

    def _loop(self) -> None:
        try:
            self._setup()
        except Exception as exc:  # e.g. no memory for the cache: refuse work, say why
            with self._wake:
                self._closing = True
            self._fail_all(f"the engine could not start: {type(exc).__name__}: {exc}")
            self._cancel_commands()
            return
        while True:
            with self._wake:
                while (not self._waiting and not self._rows and not self._commands
                       and not self._closing):
                    self._wake.wait()
                if self._closing:
                    break
            self._run_commands()
            try:
                self._iterate()
            except Exception as exc:  # a model failure must not kill the server
                self._fail_all(f"{type(exc).__name__}: {exc}")
        self._fail_all("the engine shut down", reason="cancelled")
        self._cancel_commands()
        self.bank.close()  # the model may be served again, by another engine

    def _run_commands(self) -> None:
        while True:
            with self._wake:
                if not self._commands:
                    return
                command, future = self._commands.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                with torch.inference_mode():
                    future.set_result(command())
            except Exception as exc:  # reported to the caller, the engine goes on
                future.set_exception(exc)

    def _cancel_commands(self) -> None:
        with self._wake:
            pending, self._commands = list(self._commands), collections.deque()
        for _, future in pending:
            if future.set_running_or_notify_cancel():
                future.set_exception(EngineStopped("the engine shut down"))

    def _free_retired(self) -> None:
        """Free the slots of unloaded adapters that no waiting or running request uses."""
        with self._wake:
            users = {id(r.adapter) for r in self._waiting if r.adapter is not None}
        users |= {id(row.request.adapter) for row in self._rows if row.request.adapter is not None}
        users |= {id(r.adapter) for r in self._admitting if r.adapter is not None}
        for adapter in [a for a in self._retired if id(a) not in users]:
            self.bank.free(adapter)
            self._retired.remove(adapter)

    def _iterate(self) -> None:
        with torch.inference_mode():
            self._admitting = self._take_waiting()
            if self._admitting:
                self._prefill(self._admitting)
            self._admitting = []
            if self._rows:
                self._decode()
            if self._retired:
                self._free_retired()
        self._observer.scheduled(len(self._waiting), len(self._rows))

    def _take_waiting(self) -> list[_Request]:
        """Waiting requests that fit in the free slots and the prefill budget (FIFO)."""
        taken: list[_Request] = []
        width = 0
        with self._wake:
            self._drop_dead_waiting()
            while self._waiting and len(self._rows) + len(taken) < self.max_batch:
                request = self._waiting[0]
                wider = max(width, min(len(request.prompt_ids), self.max_len - 1))
                if taken and wider * (len(taken) + 1) > self.config.prefill_tokens:
                    break
                taken.append(self._waiting.popleft())
                width = wider
        return taken

    def _drop_dead_waiting(self) -> None:
        """Finish waiting requests whose caller left or whose deadline passed (lock held)."""
        now = time.monotonic()
        if not any(r.cancelled.is_set() or _expired(r, now) or _uninstalled(r) for r in self._waiting):
            return
        alive: collections.deque[_Request] = collections.deque()
        for request in self._waiting:
            if request.adapter is not None and _uninstalled(request):  # a race the routes prevent
                self._finish(request, "error", len(request.prompt_ids), 0,
                             f"the adapter {request.adapter.name!r} is not loaded")
            elif request.cancelled.is_set():
                self._finish_unstarted(request, "cancelled")
            elif _expired(request, now):
                self._finish_unstarted(request, "timeout")
            else:
                alive.append(request)
        self._waiting = alive

    def _prefill(self, requests: list[_Request]) -> None:
        assert self._runner is not None
        prompts = [self._fit(r.prompt_ids) for r in requests]
        first = len(self._rows)
        logits = self._runner.prefill(first, prompts, [r.params.temperature for r in requests],
                                      [r.params.top_p for r in requests],
                                      [r.adapter.slot if r.adapter else 0 for r in requests])
        if self._runner.penalties is not None or any(r.params.penalised for r in requests):
            self._runner.start_penalties(first, prompts, [r.params.penalties for r in requests],
                                         logits.shape[-1])
        rows = [_Row(r, len(p), min(r.params.max_new_tokens, self.max_len - len(p)),
                     IncrementalDetokenizer(self.loaded.tokenizer, p, self._text_of), length=len(p))
                for r, p in zip(requests, prompts)]
        self._rows.extend(rows)
        self.stats.prefills += 1
        self.stats.requests += len(rows)
        self._sample_and_advance(logits, slice(first, first + len(rows)), fed=False)

    def _fit(self, ids: list[int]) -> list[int]:
        if not ids:
            ids = [min(self._eos_ids) if self._eos_ids else self._pad_id]
        return ids[-(self.max_len - 1):]  # keep the end of an over-long prompt

    def _decode(self) -> None:
        assert self._runner is not None
        count = len(self._rows)
        self.stats.steps += 1
        self.stats.largest_batch = max(self.stats.largest_batch, count)
        kv_len = max(row.length for row in self._rows) + 1
        lora = any(row.request.adapter is not None for row in self._rows)
        logits = self._runner.decode(count, kv_len, lora)
        for row in self._rows:
            row.length += 1
        self._sample_and_advance(logits, slice(0, count), fed=True)

    def _sample_and_advance(self, logits: torch.Tensor, rows: slice, fed: bool) -> None:
        assert self._runner is not None
        runner = self._runner
        batch = self._rows[rows]
        any_sampled = any(not is_greedy(row.request.params.temperature) for row in batch)
        if runner.penalties is not None and any(row.request.params.penalised for row in batch):
            logits = runner.penalties.apply(logits, rows)
        tokens = next_tokens(logits, runner.temperature[rows], runner.top_p[rows],
                             self._generator, any_sampled)
        runner.accept(rows, tokens, fed)
        now = time.monotonic()
        finished = [row for row, token in zip(batch, tokens.tolist()) if self._advance(row, token, now)]
        for row in finished:
            self._remove(row)

    def _advance(self, row: _Row, token: int, now: float) -> bool:
        """Record ``token`` for ``row`` and send its text; True when the row is finished."""
        request = row.request
        params = request.params
        reason: str | None = None
        if request.cancelled.is_set():
            reason = "cancelled"
        elif _expired(request, now):
            reason = "timeout"
        elif not params.ignore_eos and (token in self._eos_ids or token in params.stop_token_ids):
            reason = "stop"
        else:
            row.generated += 1
            self._observer.token(row.generated == 1, now - (row.last_time or request.arrived))
            row.last_time = now
            if row.generated >= row.limit:
                reason = "length"
        kept = token if reason is None or reason == "length" else None
        if request.stream or reason is not None:
            text = row.detok.add(kept, final=reason is not None)
        else:  # nobody reads text before the end: decode once, when the request finishes
            text = row.detok.push(kept)
        if text:
            _emit(request, TextEvent(text))
        if reason is not None:
            self._finish(request, reason, row.prompt_len, row.generated)
        return reason is not None

    def _remove(self, row: _Row) -> None:
        """Free ``row``'s slot; the last row moves into it, so running rows stay in 0..n-1."""
        assert self._runner is not None
        slot, last = self._rows.index(row), len(self._rows) - 1
        if slot != last:
            moved = self._rows[last]
            self._runner.move(last, slot, moved.length)
            self._rows[slot] = moved
        else:
            self._runner.lengths[last] = 0
        self._rows.pop()

    def _finish(self, request: _Request, reason: str, prompt: int, generated: int,
                error: str | None = None) -> None:
        self.stats.finished[reason] += 1
        self._observer.finished(reason, prompt, generated, time.monotonic() - request.arrived)
        _emit(request, DoneEvent(reason, prompt, generated, error))

    def _finish_unstarted(self, request: _Request, reason: str) -> None:
        self._finish(request, reason, len(request.prompt_ids), 0)

    def _fail_all(self, error: str, reason: str = "error") -> None:
        with self._wake:
            pending, self._waiting = list(self._waiting), collections.deque()
        running = [row.request for row in self._rows]
        admitting = [r for r in self._admitting if r not in running]
        self._admitting = []
        for request in running + admitting + pending:
            self.stats.finished[reason] += 1
            self._observer.finished(reason, len(request.prompt_ids), 0,
                                    time.monotonic() - request.arrived)
            _emit(request, DoneEvent(reason, len(request.prompt_ids), 0, error=error))
        self._rows = []
        if self._runner is not None:
            self._runner.lengths.zero_()


def _expired(request: _Request, now: float) -> bool:
    return request.deadline is not None and now >= request.deadline


def _uninstalled(request: _Request) -> bool:
    """The request names an adapter that is not (or no longer) in the bank."""
    return request.adapter is not None and request.adapter.slot == 0


def _emit(request: _Request, event: Event) -> None:
    try:
        request.sink(event)
    except Exception:  # a broken sink (caller gone) must not stop other rows
        request.cancelled.set()


def eos_ids(loaded: LoadedModel) -> list[int]:
    """End-of-sequence ids from the generation config, the model config and the tokenizer."""
    ids: list[int] = []
    sources: list[Any] = [getattr(loaded.model, "generation_config", None), loaded.model.config,
                          loaded.tokenizer]
    for source in sources:
        value = getattr(source, "eos_token_id", None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and item not in ids:
                ids.append(item)
    return ids
