"""Dynamic batching: decode concurrent requests together in one worker thread.

On a CPU a forward pass over 16 sequences costs little more than over one,
because a tiny model's step time is mostly fixed overhead. The engine therefore
gathers requests that arrive within a short window (``window_s``, up to
``max_batch`` of them), left-pads their prompts, and runs one batched forward
pass per generated token with a KV cache. Each row stops at its own
``max_new_tokens``, at end-of-sequence, or when its caller cancels it;
finished rows are dropped from the batch. Text is handed to each request's
sink as it is produced, which is what makes streaming possible.

All model and tokenizer calls happen on the engine's single thread: the HTTP
event loop only enqueues work and receives events (:mod:`substratus_ml.app`).
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from substratus_ml.loading import LoadedModel
from substratus_ml.sampling import next_tokens


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    ignore_eos: bool = False  # benchmarks: always produce max_new_tokens


@dataclass(frozen=True)
class TextEvent:
    """New completion text (may be empty when a token is an incomplete character)."""

    text: str


@dataclass(frozen=True)
class DoneEvent:
    """The request finished; ``finish_reason`` is ``stop``, ``length`` or ``error``."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


Event = TextEvent | DoneEvent
Sink = Callable[[Event], None]


@dataclass
class _Request:
    prompt: str
    params: SamplingParams
    sink: Sink
    cancelled: threading.Event = field(default_factory=threading.Event)


class RequestHandle:
    """Lets the caller stop a request early (client gone, stop sequence seen)."""

    def __init__(self, request: _Request) -> None:
        self._request = request

    def cancel(self) -> None:
        self._request.cancelled.set()


@dataclass
class _Row:
    request: _Request
    prompt_ids: list[int]
    limit: int
    generated: list[int] = field(default_factory=list)
    sent: str = ""


@dataclass
class EngineStats:
    batches: int = 0
    requests: int = 0
    largest_batch: int = 0


class BatchEngine:
    """Owns the model; ``submit`` from any thread, events arrive on the worker thread."""

    def __init__(self, loaded: LoadedModel, max_batch: int = 16, window_s: float = 0.005,
                 seed: int | None = None) -> None:
        self.loaded = loaded
        self.max_batch = max(1, max_batch)
        self.window_s = window_s if self.max_batch > 1 else 0.0
        self.stats = EngineStats()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None
        tok = loaded.tokenizer
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self._eos_ids = _eos_ids(loaded)
        params = inspect.signature(loaded.model.forward).parameters
        # transformers renamed past_key_values to cache; accept either release line.
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="substratus-engine", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def submit(self, prompt: str, params: SamplingParams, sink: Sink) -> RequestHandle:
        request = _Request(prompt, params, sink)
        self._queue.put(request)
        return RequestHandle(request)

    # -- worker thread -------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stopping = self._collect(first)
            try:
                self._run(batch)
            except Exception as exc:  # a model failure must not kill the server
                for request in batch:
                    _emit(request, DoneEvent("error", 0, 0, error=f"{type(exc).__name__}: {exc}"))
            if stopping:
                return

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        batch, deadline = [first], time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _prepare(self, request: _Request) -> _Row:
        ids = list(self.loaded.tokenizer.encode(request.prompt))
        if not ids:
            ids = [self._eos_ids[0] if self._eos_ids else self._pad_id]
        context = self.loaded.context_length
        ids = ids[-(context - 1):]  # keep the end of an over-long prompt
        limit = min(request.params.max_new_tokens, context - len(ids))
        return _Row(request, ids, limit)

    @torch.inference_mode()
    def _run(self, requests: list[_Request]) -> None:
        rows = [self._prepare(r) for r in requests if not r.cancelled.is_set()]
        for r in requests:
            if r.cancelled.is_set():
                _emit(r, DoneEvent("stop", 0, 0))
        if not rows:
            return
        self.stats.batches += 1
        self.stats.requests += len(rows)
        self.stats.largest_batch = max(self.stats.largest_batch, len(rows))
        input_ids, mask = self._left_pad([row.prompt_ids for row in rows])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        temperature = torch.tensor([r.request.params.temperature for r in rows])
        top_p = torch.tensor([r.request.params.top_p for r in rows])
        logits, cache = self._forward(input_ids, mask, positions, None)
        next_position = positions[:, -1] + 1
        while True:
            tokens = next_tokens(logits, temperature, top_p, self._generator)
            keep = [i for i, row in enumerate(rows) if not self._advance(row, int(tokens[i]))]
            if not keep:
                return
            if len(keep) < len(rows):
                index = torch.tensor(keep)
                rows = [rows[i] for i in keep]
                tokens, mask, next_position = tokens[index], mask[index], next_position[index]
                temperature, top_p = temperature[index], top_p[index]
                cache.batch_select_indices(index.to(self.loaded.model.device))
            mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype)], dim=1)
            logits, cache = self._forward(tokens.unsqueeze(1), mask,
                                          next_position.unsqueeze(1), cache)
            next_position = next_position + 1

    def _left_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, seq in enumerate(sequences):
            ids[i, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq):] = 1
        return ids, mask

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 cache: Any) -> tuple[torch.Tensor, Any]:
        kwargs = {self._cache_kw: cache} if cache is not None else {}
        dev = self.loaded.model.device  # inputs go to the model's device; sampling stays on the CPU
        out = self.loaded.model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                                position_ids=positions.to(dev), use_cache=True, logits_to_keep=1, **kwargs)
        new_cache = out.get("cache")
        if new_cache is None:
            new_cache = out.get("past_key_values")
        return out.logits[:, -1, :].float().cpu(), new_cache

    def _advance(self, row: _Row, token: int) -> bool:
        """Record ``token`` for ``row``, send its text; True when the row is finished."""
        request = row.request
        if request.cancelled.is_set():
            reason: str | None = "stop"
        elif token in self._eos_ids and not request.params.ignore_eos:
            reason = "stop"
        else:
            row.generated.append(token)
            reason = "length" if len(row.generated) >= row.limit else None
        self._send_text(row, final=reason is not None)
        if reason is not None:
            _emit(request, DoneEvent(reason, len(row.prompt_ids), len(row.generated)))
        return reason is not None

    def _send_text(self, row: _Row, final: bool) -> None:
        text = self.loaded.tokenizer.decode(row.generated, skip_special_tokens=True,
                                            clean_up_tokenization_spaces=False)
        # A byte-level token can end mid-character; wait for the rest unless finishing.
        if text.endswith("\ufffd") and not final:
            return
        delta = text[len(row.sent):] if text.startswith(row.sent) else ""
        row.sent = text
        if delta:
            _emit(row.request, TextEvent(delta))


def _emit(request: _Request, event: Event) -> None:
    try:
        request.sink(event)
    except Exception:  # a broken sink (caller gone) must not stop other rows
        request.cancelled.set()


def _eos_ids(loaded: LoadedModel) -> list[int]:
    ids: list[int] = []
    for source in (getattr(loaded.model, "generation_config", None), loaded.model.config,
                   loaded.tokenizer):
        value = getattr(source, "eos_token_id", None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and item not in ids:
                ids.append(item)
    return ids
