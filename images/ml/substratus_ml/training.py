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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

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
    seed: int = 0


def _batches(data: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Shuffled mini-batches, epoch after epoch, forever."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order), batch_size):
            yield data[order[start : start + batch_size]]


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def fit(model: Any, data: torch.Tensor, config: FitConfig, log: Callable[[str], None],
        progress: ProgressLog | None = None) -> float:
    """Train ``model`` on token blocks ``data`` for ``config.steps`` steps; returns the last loss.

    Only parameters with ``requires_grad`` are trained (all of a plain model; the
    adapter of a LoRA model). Progress goes to ``log`` every ``log_every`` steps and
    to ``progress`` (``progress.jsonl``) every ``progress_every`` steps and at the end.
    """
    model.train()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=0.01)
    warmup = max(1, int(config.steps * config.warmup_fraction))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, config.steps, warmup)
    )
    per_epoch = math.ceil(len(data) / config.batch_size)
    batches = _batches(data, config.batch_size, config.seed)
    loss_value, tokens, started = float("nan"), 0, time.perf_counter()
    meter = _Meter()
    for step in range(1, config.steps + 1):
        batch = next(batches).to(model.device)
        with _autocast(model.device):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value, tokens = loss.item(), tokens + batch.numel()
        meter.add(batch.numel())
        if progress is not None and (step % config.progress_every == 0 or step == config.steps):
            progress.write(step, config.steps, step / per_epoch, loss_value,
                           lr=float(scheduler.get_last_lr()[0]), tokens_per_second=meter.tokens_per_second(),
                           steps_per_second=meter.steps_per_second())
        if step % config.log_every == 0 or step == config.steps:
            elapsed = time.perf_counter() - started
            log(f"step {step}/{config.steps} loss {loss_value:.4f} "
                f"tokens/s {tokens / max(elapsed, 1e-9):.0f} steps/s {meter.steps_per_second():.3f}")
            tokens, started = 0, time.perf_counter()
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
def evaluate(model: Any, data: torch.Tensor, batch_size: int = 16) -> float:
    """Mean next-token loss of ``model`` over the token blocks ``data``."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data), batch_size):
        batch = data[start : start + batch_size].to(model.device)
        predicted = batch.shape[0] * (batch.shape[1] - 1)
        total += model(input_ids=batch, labels=batch).loss.item() * predicted
        count += predicted
    return total / max(count, 1)
