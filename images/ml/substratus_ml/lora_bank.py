"""Many LoRA adapters in one decode step: stacked low-rank weights and a per-row index.

S-LoRA and punica serve many adapters of one base model in one batch instead
of one batch per adapter. This is the same design on plain torch ops:

- For every module some loaded adapter adapts, the bank keeps two stacks,
  ``a [slots, in, R]`` and ``b [slots, R, out]`` (scaling folded into ``b``).
  Slot 0 is all zeros and stands for "no adapter"; each loaded adapter owns
  one slot. ``R`` is the largest rank loaded: a smaller adapter is zero-padded
  (its extra columns of ``a`` and rows of ``b`` are 0, so they add exactly 0).
  A module an adapter does not adapt is zero in its slot.
- Each running row carries the slot of its adapter (``ModelRunner.adapter_slot``).
  A forward hook on each adapted module adds, for every row ``i`` at once,
  ``x_i @ a[slot_i] @ b[slot_i]``: a gather of each row's matrices and two
  batched matmuls. Rows of the base model add zero. One forward pass, one
  decode step, whatever the mix of adapters in the batch.
- When no running row uses an adapter the engine turns the hooks off
  (``use(None)``): the base model's step costs what it did before.

Loading an adapter that fits (a free slot, rank <= R, modules already stacked)
copies its weights into its slot in place: the stacks keep their addresses,
so captured CUDA graphs stay valid. Otherwise the stacks are reallocated
(more slots, a larger R, or new modules) and ``layout`` is bumped, which tells
the runner to drop its captured graphs. Adapters are rare events next to
decode steps, so the bank grows and never shrinks.

Only the engine's worker thread touches a bank (the engine runs load and
unload as commands between two steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from substratus_ml.peft_adapter import LoraWeights


@dataclass(eq=False)
class Adapter:
    """A loaded adapter as requests see it; ``slot`` is its place in the bank's stacks."""

    name: str
    path: str
    rank: int
    modules: int
    slot: int = 0  # 0 until installed, and again once freed
    unloaded: bool = False  # no longer accepts requests (set when it is unloaded)
    load_seconds: float = 0.0


@dataclass
class _Target:
    """One adapted module: its stacks and its forward hook."""

    a: torch.Tensor  # [slots, in, R]
    b: torch.Tensor  # [slots, R, out]
    hook: RemovableHandle | None = None


@dataclass
class LoraBank:
    model: nn.Module
    targets: dict[str, _Target] = field(default_factory=dict)
    owners: list[Adapter | None] = field(default_factory=lambda: [None])  # slot -> adapter
    rank: int = 0
    layout: int = 0  # bumped whenever the stacks are reallocated
    _rows: torch.Tensor | None = None  # the slot of each row of the current forward pass

    @property
    def loaded(self) -> int:
        return sum(owner is not None for owner in self.owners)

    def use(self, rows: torch.Tensor | None) -> None:
        """The slot of each row of the next forward passes, or None: no adapter at all."""
        self._rows = rows if self.targets else None

    # The stacks are inference tensors (the engine works in inference mode): every
    # in-place change to them must happen in inference mode too, whoever calls.
    @torch.inference_mode()
    def install(self, adapter: Adapter, weights: LoraWeights) -> None:
        """Give ``adapter`` a slot holding ``weights``."""
        free = next((i for i, owner in enumerate(self.owners) if i and owner is None), None)
        new_modules = set(weights.modules) - set(self.targets)
        if free is None or weights.rank > self.rank or new_modules:
            first_new = len(self.owners)
            # Full: double the adapter slots, so that loading N adapters relays out log(N) times.
            slots = first_new + (max(1, first_new - 1) if free is None else 0)
            self._relayout(slots, max(self.rank, weights.rank), weights)
            free = free if free is not None else first_new
        self.owners[free] = adapter
        adapter.slot = free
        for name, target in self.targets.items():
            target.a[free].zero_()
            target.b[free].zero_()
            module = weights.modules.get(name)
            if module is not None:
                target.a[free, :, : module.rank] = module.a
                target.b[free, : module.rank, :] = module.b

    @torch.inference_mode()
    def free(self, adapter: Adapter) -> None:
        """Zero ``adapter``'s slot and give it back (no running row may still use it)."""
        slot = adapter.slot
        if slot == 0 or self.owners[slot] is not adapter:
            return
        for target in self.targets.values():
            target.a[slot].zero_()
            target.b[slot].zero_()
        self.owners[slot] = None
        adapter.slot = 0

    def _relayout(self, slots: int, rank: int, weights: LoraWeights) -> None:
        """Reallocate every stack for ``slots`` slots of rank ``rank``, old contents kept."""
        while len(self.owners) < slots:
            self.owners.append(None)
        for name, module in weights.modules.items():
            if name not in self.targets:
                a, b = module.a, module.b
                self.targets[name] = _Target(a.new_zeros(0, a.shape[0], 0), b.new_zeros(0, 0, b.shape[1]))
                self.targets[name].hook = self.model.get_submodule(name).register_forward_hook(
                    self._hook(self.targets[name]), with_kwargs=True)
        for target in self.targets.values():
            old_a, old_b = target.a, target.b
            target.a = old_a.new_zeros(slots, old_a.shape[1], rank)
            target.b = old_b.new_zeros(slots, rank, old_b.shape[2])
            target.a[: old_a.shape[0], :, : old_a.shape[2]] = old_a
            target.b[: old_b.shape[0], : old_b.shape[1], :] = old_b
        self.rank = rank
        self.layout += 1

    def _hook(self, target: _Target) -> Any:
        def add_low_rank(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                         output: torch.Tensor) -> torch.Tensor | None:
            rows = self._rows
            if rows is None:
                return None
            x = args[0] if args else next(iter(kwargs.values()))
            batch = x.shape[0]
            # [B, T, in] @ [B, in, R] @ [B, R, out]: each row through its own adapter.
            # (index_select, not a[rows]: advanced indexing made the whole decode step of
            # the CPU benchmark's model 1.3x slower.)
            low = torch.bmm(x.reshape(batch, -1, x.shape[-1]), target.a.index_select(0, rows))
            return output + torch.bmm(low, target.b.index_select(0, rows)).view_as(output)

        return add_low_rank

    def close(self) -> None:
        """Take the hooks off the model (it serves the base alone again)."""
        for target in self.targets.values():
            if target.hook is not None:
                target.hook.remove()
        self.targets.clear()
        self._rows = None
