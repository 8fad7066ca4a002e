"""``substratus-ml train``: the body of the contract's ``train.sh``.

Substratus runs ``train.sh`` with ``TRAIN_DATA_PATH``, ``TRAIN_DATA_LIMIT``,
``TRAIN_BATCH_SIZE`` and ``TRAIN_EPOCHS`` set from the Model resource. This
module reads them once (:func:`params_from_env`), fine-tunes the model found in
``/model/saved`` and writes the result to ``/model/trained`` together with
``training_params.json``, so the server that later loads it can show which
parameters produced it. Logs and ``metrics.json`` go to ``/model/logs``.
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
from transformers import AutoModelForCausalLM, AutoTokenizer

from substratus_ml import corpus
from substratus_ml.devices import pick_device
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


def run_train(params: TrainParams, dirs: TrainDirs, lr: float = 5e-4,
              block_size: int = 128) -> dict[str, Any]:
    """Fine-tune, save, and return the metrics written to ``metrics.json``."""
    torch.set_num_threads(cpu_threads())
    log = RunLog(dirs.logs_dir / "train.log")
    try:
        records = corpus.read_records(params.data_path, params.data_limit)
        log(f"train: {len(records)} records from {params.data_path} "
            f"(limit {params.data_limit}), epochs {params.epochs}, batch size {params.batch_size}")
        tokenizer = AutoTokenizer.from_pretrained(dirs.model_dir, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(dirs.model_dir, local_files_only=True,
                                                     dtype=torch.float32)
        model.to(pick_device())
        log(f"train: device {model.device}")
        block = min(block_size, int(getattr(model.config, "max_position_embeddings", block_size)))
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        train_records, eval_records = corpus.split_holdout(records)
        train = corpus.blocks(corpus.token_stream(train_records, tokenizer.encode, eos), block)
        held = corpus.blocks(corpus.token_stream(eval_records, tokenizer.encode, eos), block)
        steps = params.epochs * math.ceil(len(train) / params.batch_size)
        started = time.perf_counter()
        loss_before = evaluate(model, held)
        log(f"train: {len(train)} training blocks of {train.shape[1]} tokens, "
            f"{len(held)} held-out blocks, {steps} steps, loss before {loss_before:.4f}")
        fit(model, train, FitConfig(batch_size=params.batch_size, steps=steps, lr=lr), log)
        loss_after = evaluate(model, held)
        metrics = {
            "loss_before": loss_before, "loss_after": loss_after, "epochs": params.epochs,
            "batch_size": params.batch_size, "data_limit": params.data_limit,
            "records": len(records), "steps": steps,
            "seconds": round(time.perf_counter() - started, 2),
        }
        _save(model, tokenizer, params, dirs, metrics)
        log(f"train: loss {loss_before:.4f} -> {loss_after:.4f}; saved to {dirs.out}")
        return metrics
    finally:
        log.close()


def _save(model: Any, tokenizer: Any, params: TrainParams, dirs: TrainDirs,
          metrics: dict[str, Any]) -> None:
    dirs.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dirs.out)
    tokenizer.save_pretrained(dirs.out)
    record = {**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(params).items()},
              **metrics, "base_model": str(dirs.model_dir)}
    (dirs.out / "training_params.json").write_text(json.dumps(record, indent=2) + "\n")
    dirs.logs_dir.mkdir(parents=True, exist_ok=True)
    (dirs.logs_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
