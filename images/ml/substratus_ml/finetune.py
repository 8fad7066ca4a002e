"""``substratus-ml train``: the body of the contract's ``train.sh``.

Substratus runs ``train.sh`` with ``TRAIN_DATA_PATH``, ``TRAIN_DATA_LIMIT``,
``TRAIN_BATCH_SIZE`` and ``TRAIN_EPOCHS`` set from the Model resource. This
module reads them once (:func:`params_from_env`), fine-tunes the model found in
``/model/saved`` and writes the result to ``/model/trained`` together with
``training_params.json``, so the server that later loads it can show which
parameters produced it. Logs, ``metrics.json`` and ``progress.jsonl`` (the
contract's optional progress extension, :mod:`substratus_ml.progress`) go to
``/model/logs``. Either every weight is trained (the tiny model) or a LoRA
adapter on a few projections (``--lora``, the Gemma example): then the base
gets no gradient and no optimizer state, which is what makes a 270M-parameter
model trainable on two CPU cores.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from substratus_ml import corpus
from substratus_ml.devices import pick_device
from substratus_ml.loading import detach_gguf, load_pretrained, make_readable
from substratus_ml.progress import ProgressLog
from substratus_ml.training import FitConfig, RunLog, cpu_threads, evaluate, fit


class ParamError(ValueError):
    """A ``TRAIN_*`` variable is missing or not a valid value; the message names it."""


@dataclass(frozen=True)
class TrainParams:
    data_path: Path
    data_limit: int | None = None
    batch_size: int = 8
    epochs: int = 1


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ParamError(f"{name}={raw!r}: must be a whole number >= 1") from None
    if value < 1:
        raise ParamError(f"{name}={raw!r}: must be >= 1")
    return value


def params_from_env(env: Mapping[str, str]) -> TrainParams:
    """Training parameters from the contract's environment variables."""
    path = env.get("TRAIN_DATA_PATH", "").strip() or env.get("DATASET_PATH", "").strip()
    if not path:
        raise ParamError("TRAIN_DATA_PATH is not set: point it at the dataset file "
                         "(JSONL with one {\"text\": ...} per line, or plain text)")
    batch_size = _positive_int(env, "TRAIN_BATCH_SIZE")
    epochs = _positive_int(env, "TRAIN_EPOCHS")
    return TrainParams(
        data_path=Path(path),
        data_limit=_positive_int(env, "TRAIN_DATA_LIMIT"),
        batch_size=batch_size if batch_size is not None else TrainParams.batch_size,
        epochs=epochs if epochs is not None else TrainParams.epochs,
    )


@dataclass(frozen=True)
class TrainDirs:
    model_dir: Path = Path("/model/saved")
    out: Path = Path("/model/trained")
    logs_dir: Path = Path("/model/logs")


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA adapter on a few projections: the base stays frozen (no gradient, no optimizer state)."""

    r: int = 8
    alpha: int = 16
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainOptions:
    lr: float = 5e-4
    block_size: int = 128
    lora: LoraSpec | None = None  # None: train every weight


def run_train(params: TrainParams, dirs: TrainDirs, options: TrainOptions = TrainOptions()) -> dict[str, Any]:
    """Fine-tune, save, and return the metrics written to ``metrics.json``."""
    torch.set_num_threads(cpu_threads())
    log = RunLog(dirs.logs_dir / "train.log")
    progress = ProgressLog(dirs.logs_dir / "progress.jsonl")
    try:
        records = corpus.read_records(params.data_path, params.data_limit)
        log(f"train: {len(records)} records from {params.data_path} "
            f"(limit {params.data_limit}), epochs {params.epochs}, batch size {params.batch_size}"
            f"{', LoRA ' + str(options.lora) if options.lora else ''}")
        started = time.perf_counter()
        model, tokenizer, _ = load_pretrained(dirs.model_dir, torch.float32, pick_device())
        log(f"train: {type(model).__name__} on {model.device}, loaded in "
            f"{time.perf_counter() - started:.0f}s")
        if options.lora is not None:
            model = _with_lora(model, options.lora, log)
        train, held = _blocks(model, tokenizer, records, options.block_size)
        steps = params.epochs * math.ceil(len(train) / params.batch_size)
        started = time.perf_counter()
        loss_before = evaluate(model, held)
        log(f"train: {len(train)} training blocks of {train.shape[1]} tokens, "
            f"{len(held)} held-out blocks, {steps} steps, loss before {loss_before:.4f}")
        last = fit(model, train, FitConfig(batch_size=params.batch_size, steps=steps, lr=options.lr),
                   log, progress)
        loss_after = evaluate(model, held)
        metrics = {
            "loss_before": loss_before, "loss_after": loss_after, "epochs": params.epochs,
            "batch_size": params.batch_size, "data_limit": params.data_limit,
            "records": len(records), "steps": steps,
            "seconds": round(time.perf_counter() - started, 2),
            "steps_per_second": round(steps / max(time.perf_counter() - started, 1e-9), 4),
        }
        progress.write(steps, steps, params.epochs, last, eval_loss_before=loss_before,
                       eval_loss=loss_after)
        _save(model, tokenizer, params, dirs, metrics, options.lora is not None)
        log(f"train: loss {loss_before:.4f} -> {loss_after:.4f}; saved to {dirs.out}")
        return metrics
    finally:
        progress.close()
        log.close()


def _with_lora(model: Any, spec: LoraSpec, log: RunLog) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, target_modules=list(spec.targets),
                        lora_dropout=spec.dropout, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log(f"train: LoRA r={spec.r} on {', '.join(spec.targets)}: {trainable / 1e6:.2f}M of "
        f"{total / 1e6:.0f}M parameters trained")
    return model


def _blocks(model: Any, tokenizer: Any, records: list[str], block_size: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and held-out token blocks (the last 10% of the records are held out)."""
    context = int(getattr(model.config, "max_position_embeddings", block_size))
    block = min(block_size, context)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    train_records, eval_records = corpus.split_holdout(records)
    train = corpus.blocks(corpus.token_stream(train_records, tokenizer.encode, eos), block)
    held = corpus.blocks(corpus.token_stream(eval_records, tokenizer.encode, eos), block)
    return train, held


def _save(model: Any, tokenizer: Any, params: TrainParams, dirs: TrainDirs,
          metrics: dict[str, Any], lora: bool) -> None:
    """A plain ``save_pretrained`` directory the server loads as it is.

    A LoRA model is saved twice: the adapter alone in ``adapter/`` (small, for
    reuse) and merged into the base weights, in bfloat16 to halve the image layer
    (the server computes in float32 on CPUs either way).
    """
    dirs.out.mkdir(parents=True, exist_ok=True)
    if lora:
        model.save_pretrained(dirs.out / "adapter")
        model = model.merge_and_unload().to(torch.bfloat16)
    detach_gguf(model).save_pretrained(dirs.out)
    tokenizer.save_pretrained(dirs.out)
    record = {**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(params).items()},
              **metrics, "base_model": str(dirs.model_dir), "method": "lora" if lora else "full"}
    (dirs.out / "training_params.json").write_text(json.dumps(record, indent=2) + "\n")
    make_readable(dirs.out)
    dirs.logs_dir.mkdir(parents=True, exist_ok=True)
    (dirs.logs_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
