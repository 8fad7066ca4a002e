"""The causal-LM training loop shared by pre-training and fine-tuning.

``init-tiny`` calls :func:`fit` with a step budget to pre-train a fresh model;
``train`` (:mod:`substratus_ml.finetune`) calls it with an epoch budget. A
plain PyTorch loop keeps the dependency set small and the CPU cost visible:
every ``log_every`` steps it reports loss and tokens per second.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from substratus_ml.checkpoints import Checkpointing, TrainState, rng_state, set_rng_state
from substratus_ml.corpus import IGNORE, TokenBlocks
from substratus_ml.progress import ProgressLog


def cpu_threads(reserve: int = 0) -> int:
    """Torch threads to use: ``SUBSTRATUS_THREADS``, else the CPUs this process may run on,
    less ``reserve`` (at least one).

    Called by entry points only. The server reserves one CPU for its event loop
    (HTTP, JSON, tokenization): on two cores, two torch threads plus the loop
    made batched serving of the tiny model about 2x slower than one torch
    thread (docs/performance.md). The override exists because on an
    oversubscribed host two spinning threads can be several times slower than one.
    """
    override = os.environ.get("SUBSTRATUS_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, available - reserve)


class RunLog:
    """Writes each line to stdout and, when given, to a log file (flushed per line)."""

    def __init__(self, path: Path | None = None, stream: TextIO = sys.stdout) -> None:
        self._stream = stream
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def __call__(self, line: str) -> None:
        for out in (self._stream, self._file):
            if out is not None:
                out.write(line + "\n")
                out.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@dataclass(frozen=True)
class FitConfig:
    batch_size: int
    steps: int
    lr: float
    log_every: int = 10
    progress_every: int = 5
    warmup_fraction: float = 0.1
    warmup_steps: int | None = None  # None: warmup_fraction of the steps
    seed: int = 0


def epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of epoch ``epoch`` (0-based): one generator seeded with ``seed``,
    one permutation per epoch. Recomputed, not replayed, when a run resumes."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(count, generator=generator)
    for _ in range(epoch):
        order = torch.randperm(count, generator=generator)
    return order


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def token_loss(model: Any, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the learned labels, and how many there are.

    Computed here rather than by the model (``labels=``) so that a batch whose
    labels are all ignored (a prompt longer than a block) gives 0, not NaN.
    """
    logits = model(input_ids=ids).logits[:, :-1].float()
    targets = labels[:, 1:]
    total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                              ignore_index=IGNORE, reduction="sum")
    return total, int((targets != IGNORE).sum())


def trained_parameters(model: Any) -> dict[str, torch.nn.Parameter]:
    """The parameters that get gradients, by name (tied weights once)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


@dataclass
class _Loop:
    """The optimizer side of a run: what a checkpoint saves besides the weights."""

    trained: dict[str, torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR

    @classmethod
    def make(cls, model: Any, config: FitConfig) -> "_Loop":
        trained = trained_parameters(model)
        optimizer = torch.optim.AdamW(list(trained.values()), lr=config.lr, weight_decay=0.01)
        warmup = config.warmup_steps if config.warmup_steps is not None else int(
            config.steps * config.warmup_fraction)
        warmup = max(1, warmup)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: _lr_factor(s, config.steps, warmup))
        return cls(trained, optimizer, scheduler)

    def restore(self, state: TrainState) -> None:
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        set_rng_state(state.rng)

    def state(self, step: int, config: FitConfig, per_epoch: int, loss: float,
              order: torch.Tensor) -> TrainState:
        return TrainState(step=step, total_steps=config.steps, steps_per_epoch=per_epoch,
                          seed=config.seed, loss=loss, order=order,
                          weights={k: p.detach() for k, p in self.trained.items()},
                          optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                          rng=rng_state())

    def step(self, model: Any, ids: torch.Tensor, labels: torch.Tensor) -> float:
        with _autocast(model.device):
            total, count = token_loss(model, ids, labels)
            loss = total / max(count, 1)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(list(self.trained.values()), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.item())


def fit(model: Any, data: torch.Tensor | TokenBlocks, config: FitConfig, log: Callable[[str], None],
        progress: ProgressLog | None = None, *, checkpoints: Checkpointing | None = None,
        resume: TrainState | None = None) -> float:
    """Train ``model`` on token blocks ``data`` for ``config.steps`` steps; returns the last loss.

    Only parameters with ``requires_grad`` are trained (all of a plain model; the
    adapter of a LoRA model). Each epoch visits the blocks in the order of
    :func:`epoch_order`, so step ``s`` always trains the same batch: with
    ``resume`` (weights already loaded into ``model``) the run continues after
    ``resume.step`` exactly as if it had never stopped. Progress goes to ``log``
    every ``log_every`` steps and to ``progress`` every ``progress_every`` steps
    and at the end; ``checkpoints`` is asked after every step.
    """
    blocks = data if isinstance(data, TokenBlocks) else TokenBlocks.all_learned(data)
    model.train()
    loop = _Loop.make(model, config)
    per_epoch = math.ceil(len(blocks) / config.batch_size)
    start, loss_value, order = 0, float("nan"), torch.empty(0, dtype=torch.long)
    if resume is not None:
        loop.restore(resume)
        start, loss_value, order = resume.step, resume.loss, resume.order
    latest = checkpoints.latest_step if checkpoints is not None else None
    meter, window = _Meter(), _Meter()
    for step in range(start + 1, config.steps + 1):
        epoch, index = divmod(step - 1, per_epoch)
        if index == 0 or len(order) != len(blocks):
            order = epoch_order(len(blocks), config.seed, epoch)
        rows = order[index * config.batch_size : (index + 1) * config.batch_size]
        ids = blocks.ids[rows].to(model.device)
        loss_value = loop.step(model, ids, blocks.labels[rows].to(model.device))
        meter.add(ids.numel())
        window.add(ids.numel())
        if checkpoints is not None:  # the state is gathered only when a checkpoint is due
            latest = checkpoints.after_step(step, step == config.steps, lambda: loop.state(
                step, config, per_epoch, loss_value, order))
        if progress is not None and (step % config.progress_every == 0 or step == config.steps):
            extra = {"checkpoint": latest} if latest is not None else {}
            progress.write(step, config.steps, step / per_epoch, loss_value,
                           lr=float(loop.scheduler.get_last_lr()[0]), tokens_per_second=meter.tokens_per_second(),
                           steps_per_second=meter.steps_per_second(), **extra)
        if step % config.log_every == 0 or step == config.steps:
            log(f"step {step}/{config.steps} loss {loss_value:.4f} "
                f"tokens/s {window.tokens_per_second():.0f} steps/s {meter.steps_per_second():.3f}")
            window = _Meter()
    model.eval()
    return loss_value


def _autocast(device: torch.device) -> Any:
    """bfloat16 matmuls on GPUs that have them (weights and optimizer stay float32)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Meter:
    """Steps and tokens per second since training began."""

    def __init__(self) -> None:
        self.started, self.steps, self.tokens = time.perf_counter(), 0, 0

    def add(self, tokens: int) -> None:
        self.steps, self.tokens = self.steps + 1, self.tokens + tokens

    def _elapsed(self) -> float:
        return max(time.perf_counter() - self.started, 1e-9)

    def tokens_per_second(self) -> float:
        return self.tokens / self._elapsed()

    def steps_per_second(self) -> float:
        return self.steps / self._elapsed()


@torch.inference_mode()
def evaluate(model: Any, data: torch.Tensor | TokenBlocks, batch_size: int = 16) -> float:
    """Mean next-token loss of ``model`` over the learned labels of token blocks ``data``
    (NaN when none is learned)."""
    blocks = data if isinstance(data, TokenBlocks) else TokenBlocks.all_learned(data)
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        rows = slice(start, start + batch_size)
        summed, learned = token_loss(model, blocks.ids[rows].to(model.device),
                                     blocks.labels[rows].to(model.device))
        total, count = total + float(summed), count + learned
    return total / count if count else float("nan")
