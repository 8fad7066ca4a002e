"""A preallocated, slot-per-request KV cache that a ``transformers`` model writes into.

Continuous batching needs rows to join and leave the running batch between two
decode steps. With ``transformers``' own caches that means concatenating or
index-selecting every layer's keys and values, a copy of the whole cache per
change. Here each layer owns one buffer ``[slots, kv_heads, max_len + 1, head_dim]``
allocated once; request ``i`` of the running batch lives in slot ``i`` with its
tokens at positions ``0..length-1`` (left-aligned, no padding). Then:

- a decode step writes each row's new key/value at its own position and attends
  over the view ``buffer[:rows, :, :L]`` (no copy);
- a prefill of new rows (left-padded prompts) scatters their keys and values
  into free slots, each token at its position in its own prompt; padding goes to
  a spare column ``max_len`` that nothing ever attends to;
- a row that leaves is replaced by the last row (one row's keys copied), which
  keeps the running rows in slots ``0..rows-1``.

The engine says what the next forward pass is before running it
(:meth:`SlotCache.plan_prefill`, :meth:`SlotCache.plan_decode`), and builds the
attention masks itself (:func:`decode_masks`, :func:`prefill_masks`): a 4D mask
(or a mapping per layer type, for models with sliding-window layers such as
Gemma 3) is passed to the model, which then uses it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


@dataclass
class _Plan:
    """Where the next forward pass writes, and what its attention reads."""

    rows: torch.Tensor  # [B, 1] slot of each row, broadcast against positions
    positions: torch.Tensor  # [B, T] cache position of each input token
    first_row: int
    kv_len: int  # 0 for a prefill: attention reads the fresh keys only


class SlotLayer(CacheLayerMixin):
    """One layer's keys and values, for every slot, allocated on first use."""

    is_sliding = False

    def __init__(self, owner: "SlotCache") -> None:
        super().__init__()
        self.owner = owner

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        shape = (self.owner.slots, key_states.shape[1], self.owner.max_len + 1)
        self.keys = key_states.new_zeros(*shape, key_states.shape[-1])
        self.values = value_states.new_zeros(*shape, value_states.shape[-1])
        self.device = key_states.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        assert self.keys is not None and self.values is not None
        plan = self.owner.plan
        # [B, H, T, D] -> [B, T, H, D]: the shape of keys[rows, :, positions].
        self.keys[plan.rows, :, plan.positions] = key_states.transpose(1, 2)
        self.values[plan.rows, :, plan.positions] = value_states.transpose(1, 2)
        if plan.kv_len == 0:
            return key_states, value_states
        rows = slice(plan.first_row, plan.first_row + key_states.shape[0])
        return self.keys[rows, :, : plan.kv_len], self.values[rows, :, : plan.kv_len]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.plan.kv_len or query_length, 0

    def get_seq_length(self) -> int:
        return 0  # per-row lengths live in the engine; positions are always passed explicitly

    def get_max_length(self) -> int:
        return self.owner.max_len

    def move(self, source: int, target: int, length: int) -> None:
        if self.keys is not None and self.values is not None and length > 0:
            self.keys[target, :, :length] = self.keys[source, :, :length]
            self.values[target, :, :length] = self.values[source, :, :length]


class SlotCache(Cache):
    """The cache object handed to the model's forward pass (``cache=`` / ``past_key_values=``)."""

    def __init__(self, num_layers: int, slots: int, max_len: int, device: torch.device) -> None:
        self.slots, self.max_len, self.device = slots, max_len, device
        self.plan = _Plan(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long), 0, 0)
        super().__init__(layers=[SlotLayer(self) for _ in range(num_layers)])

    def plan_prefill(self, first_slot: int, pad: list[int], width: int) -> torch.Tensor:
        """Rows ``first_slot..`` get left-padded prompts of ``width`` tokens; returns position ids."""
        rows = torch.arange(first_slot, first_slot + len(pad), device=self.device).unsqueeze(1)
        columns = torch.arange(width, device=self.device).unsqueeze(0)
        positions = columns - torch.tensor(pad, device=self.device).unsqueeze(1)
        spare = torch.full_like(positions, self.max_len)
        self.plan = _Plan(rows, torch.where(positions >= 0, positions, spare), first_slot, 0)
        return positions.clamp(min=0)

    def plan_decode(self, rows: torch.Tensor, lengths: torch.Tensor, kv_len: int) -> None:
        """Row ``i`` (slot ``i``) writes one token at ``lengths[i]``; attention reads ``kv_len``."""
        self.plan = _Plan(rows.unsqueeze(1), lengths.unsqueeze(1), 0, kv_len)

    def move(self, source: int, target: int, length: int) -> None:
        """Copy slot ``source``'s first ``length`` positions into slot ``target``, every layer."""
        for layer in self.layers:
            assert isinstance(layer, SlotLayer)
            layer.move(source, target, length)


def _sliding_window(model_config: Any) -> int | None:
    types = getattr(model_config, "layer_types", None) or []
    if "sliding_attention" in types:
        return int(model_config.sliding_window)
    return None


class MaskBuilder:
    """Builds the masks a model's attention layers take, boolean for SDPA, additive for eager."""

    def __init__(self, model_config: Any, dtype: torch.dtype) -> None:
        self.window = _sliding_window(model_config)
        self.additive = getattr(model_config, "_attn_implementation", "sdpa") == "eager"
        self.dtype = dtype

    def _finish(self, allowed: torch.Tensor, query: torch.Tensor, key: torch.Tensor) -> Any:
        full = self._format(allowed)
        if self.window is None:
            return full
        sliding = self._format(allowed & (query - key < self.window))
        return {"full_attention": full, "sliding_attention": sliding}

    def _format(self, allowed: torch.Tensor) -> torch.Tensor:
        if not self.additive:
            return allowed
        zero = torch.zeros((), dtype=self.dtype, device=allowed.device)
        return torch.where(allowed, zero, torch.finfo(self.dtype).min)

    def decode(self, lengths: torch.Tensor, kv_len: int) -> Any:
        """``[B, 1, 1, kv_len]``: row ``i`` sees cache positions ``0..lengths[i]``."""
        key = torch.arange(kv_len, device=lengths.device).view(1, 1, 1, kv_len)
        query = lengths.view(-1, 1, 1, 1)
        return self._finish(key <= query, query, key)

    def prefill(self, pad: list[int], width: int, device: torch.device) -> Any:
        """``[B, 1, T, T]`` causal over each row's own tokens (padding sees only itself)."""
        index = torch.arange(width, device=device)
        query, key = index.view(1, 1, width, 1), index.view(1, 1, 1, width)
        starts = torch.tensor(pad, device=device).view(-1, 1, 1, 1)
        # A padding query with nothing to attend to would give NaN, which then leaks
        # through 0 * NaN in the value product: let it see itself.
        allowed = (key <= query) & ((key >= starts) | (key == query))
        return self._finish(allowed, query, key)
