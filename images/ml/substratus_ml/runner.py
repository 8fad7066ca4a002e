"""The model's two forward passes for continuous batching: prefill and decode.

:class:`ModelRunner` keeps, per cache slot, the state a decode step needs on
the device: the last token, the number of tokens in the cache (the position of
the next one), and the sampling parameters. A decode step therefore reads only
device tensors, and its inputs never cross from the host. On a CUDA device the
decode step of each (batch size, attention length) bucket is captured once as a
CUDA graph and replayed (:class:`DecodeGraphs`): for a small model the time of
an eager step is mostly Python and kernel launches, which a replay removes.
Capture failures fall back to eager steps; ``SUBSTRATUS_CUDA_GRAPHS=0`` turns
graphs off.

LoRA adapters: each slot also holds the bank slot of its request's adapter
(``adapter_slot``, 0 for the base), which the bank's hooks read during a
forward pass (:mod:`substratus_ml.lora_bank`). Graphs are keyed by whether the
step runs the adapters, and dropped when the bank reallocates its stacks.

Only the engine's worker thread calls into a runner.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import torch

from substratus_ml.kvcache import MaskBuilder, SlotCache
from substratus_ml.lora_bank import LoraBank
from substratus_ml.penalties import Penalties


def _num_layers(config: Any) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.num_hidden_layers)


class ModelRunner:
    def __init__(self, model: Any, slots: int, max_len: int, pad_id: int,
                 cuda_graphs: bool = True, bank: LoraBank | None = None) -> None:
        self.model, self.slots, self.max_len, self.pad_id = model, slots, max_len, pad_id
        self.bank = bank if bank is not None else LoraBank(model)
        self.device: torch.device = model.device
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.cache = SlotCache(_num_layers(model.config), slots, max_len, self.device)
        self.masks = MaskBuilder(config, model.dtype)
        self.tokens = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.lengths = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.temperature = torch.zeros(slots, dtype=torch.float32, device=self.device)
        self.top_p = torch.ones(slots, dtype=torch.float32, device=self.device)
        self.adapter_slot = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.slot_index = torch.arange(slots, device=self.device)
        params = inspect.signature(model.forward).parameters
        # transformers 5 renamed past_key_values to cache; accept either release line.
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.penalties: Penalties | None = None  # allocated by the first request that asks
        use_graphs = cuda_graphs and self.device.type == "cuda"
        self.graphs = DecodeGraphs(self) if use_graphs else None

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: Any,
                adapters: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of each row's last input token, ``[B, V]``; ``adapters``: each row's bank slot."""
        self.bank.use(adapters)
        try:
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             use_cache=True, logits_to_keep=1, **{self._cache_kw: self.cache})
        finally:
            self.bank.use(None)
        logits: torch.Tensor = out.logits[:, -1, :]
        return logits

    def prefill(self, first_slot: int, prompts: list[list[int]], temperature: list[float],
                top_p: list[float], adapters: list[int] | None = None) -> torch.Tensor:
        """Put left-padded ``prompts`` into slots ``first_slot..``; logits of their last tokens.

        ``adapters``: the bank slot of each prompt's adapter (0 or None: the base)."""
        width = max(len(p) for p in prompts)
        pad = [width - len(p) for p in prompts]
        ids = torch.tensor([[self.pad_id] * n + p for n, p in zip(pad, prompts)], dtype=torch.long)
        positions = self.cache.plan_prefill(first_slot, pad, width)
        rows = slice(first_slot, first_slot + len(prompts))
        self.adapter_slot[rows] = torch.tensor(adapters or [0] * len(prompts), device=self.device)
        lora = self.adapter_slot[rows] if adapters and any(adapters) else None
        logits = self.forward(ids.to(self.device), positions, self.masks.prefill(pad, width, self.device),
                              lora)
        self.lengths[rows] = torch.tensor([len(p) for p in prompts], device=self.device)
        self.temperature[rows] = torch.tensor(temperature, device=self.device)
        self.top_p[rows] = torch.tensor(top_p, device=self.device)
        return logits

    def decode(self, rows: int, kv_len: int, lora: bool = False) -> torch.Tensor:
        """One token for slots ``0..rows-1`` (fed from ``tokens``); their logits ``[rows, V]``.

        ``lora``: some row uses an adapter (each row's is in ``adapter_slot``)."""
        if self.graphs is not None:
            logits = self.graphs.run(rows, kv_len, lora)
            if logits is not None:
                return logits
        return self.decode_eager(rows, kv_len, lora)

    def decode_eager(self, rows: int, kv_len: int, lora: bool = False) -> torch.Tensor:
        lengths = self.lengths[:rows]
        self.cache.plan_decode(self.slot_index[:rows], lengths, kv_len)
        return self.forward(self.tokens[:rows].unsqueeze(1), lengths.unsqueeze(1),
                            self.masks.decode(lengths, kv_len), self.adapter_slot[:rows] if lora else None)

    def start_penalties(self, first_slot: int, prompts: list[list[int]],
                        settings: list[tuple[float, float, float]], vocab: int) -> None:
        """(repetition, frequency, presence) for the rows just prefilled into ``first_slot..``."""
        if self.penalties is None:
            self.penalties = Penalties(self.slots, vocab, self.device)
        for offset, (prompt, (repetition, frequency, presence)) in enumerate(zip(prompts, settings)):
            self.penalties.start(first_slot + offset, prompt, repetition, frequency, presence)

    def accept(self, rows: slice, tokens: torch.Tensor, fed: bool) -> None:
        """Sampled ``tokens`` become the next inputs; ``fed``: the previous ones are now cached."""
        self.tokens[rows] = tokens
        if fed:
            self.lengths[rows] += 1
        if self.penalties is not None:
            self.penalties.record(rows, tokens)

    def move(self, source: int, target: int, length: int) -> None:
        """Slot ``source`` takes the place of ``target`` (which left); ``source`` becomes free."""
        self.cache.move(source, target, length)
        for state in (self.tokens, self.lengths, self.temperature, self.top_p, self.adapter_slot):
            state[target] = state[source]
        if self.penalties is not None:
            self.penalties.move(source, target)
        self.lengths[source] = 0  # a free slot in a padded graph batch attends to position 0 only
        self.adapter_slot[source] = 0


def _bucket(value: int, sizes: list[int]) -> int | None:
    return next((size for size in sizes if size >= value), None)


class DecodeGraphs:
    """CUDA graphs of the decode step, one per (batch bucket, attention-length bucket)."""

    def __init__(self, runner: ModelRunner, length_step: int = 256) -> None:
        self.runner = runner
        self.batch_sizes = sorted({min(runner.slots, 2 ** i) for i in range(12)})
        self.lengths = sorted({min(runner.max_len, length_step * i)
                               for i in range(1, runner.max_len // length_step + 2)})
        self.graphs: dict[tuple[int, int, bool], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self.failed = False
        self.layout = runner.bank.layout  # graphs read the bank's stacks at their addresses

    def run(self, rows: int, kv_len: int, lora: bool = False) -> torch.Tensor | None:
        if self.failed:
            return None
        batch, length = _bucket(rows, self.batch_sizes), _bucket(kv_len, self.lengths)
        if batch is None or length is None:
            return None
        if self.layout != self.runner.bank.layout:  # stacks reallocated: graphs hold stale addresses
            self.graphs.clear()
            self.layout = self.runner.bank.layout
        key = (batch, length, lora)
        if key not in self.graphs:
            try:
                self.graphs[key] = self._capture(batch, length, lora)
            except Exception as exc:  # an op that cannot be captured: decode eagerly from now on
                self.failed = True
                print(f"engine: CUDA graph capture failed ({type(exc).__name__}: {exc}); "
                      "decoding without graphs", file=sys.stderr, flush=True)
                return None
        graph, logits = self.graphs[key]
        graph.replay()
        return logits[:rows]

    def _capture(self, batch: int, length: int, lora: bool) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        # Warm-up on a side stream (as torch.cuda.graphs asks). It writes each row's
        # current token at its current position: the step about to run writes the same.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self.runner.decode_eager(batch, length, lora)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self.runner.decode_eager(batch, length, lora)
        return graph, logits
