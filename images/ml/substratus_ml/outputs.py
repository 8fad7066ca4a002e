"""What ``train`` leaves in ``/model/trained`` and ``/model/logs``.

``TRAIN_OUTPUT`` (this project's extension of the contract, issue 23) picks the
layout of ``/model/trained``:

- ``merged`` (default, the contract's behaviour): a ``save_pretrained`` model the
  server loads as it is. A LoRA run (``train.sh --lora``) is merged into its base
  and saved in bfloat16, with the adapter alone in ``adapter/`` beside it.
- ``adapter``: only the LoRA adapter, in PEFT's format, in ``adapter/``
  (``adapter_config.json`` + ``adapter_model.safetensors``, loadable with
  ``peft.PeftModel.from_pretrained(base, "adapter")``); no base weights, so the
  result is a small fraction of the model.

Either way ``training_params.json`` records the parameters, the data, the losses
and the base model, and ``/model/logs/metrics.json`` the run's figures.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from substratus_ml.loading import detach_gguf, make_readable

ADAPTER_DIR = "adapter"
PARAMS_RECORD = "training_params.json"


class Output(enum.Enum):
    MERGED = "merged"
    ADAPTER = "adapter"


def save_model(model: Any, tokenizer: Any, out: Path, output: Output, lora: bool) -> None:
    """The trained model (or adapter) in ``out`` as ``output`` says."""
    out.mkdir(parents=True, exist_ok=True)
    if output is Output.ADAPTER:
        model.save_pretrained(out / ADAPTER_DIR)
        return
    if lora:
        model.save_pretrained(out / ADAPTER_DIR)
        model = model.merge_and_unload().to(torch.bfloat16)
    detach_gguf(model).save_pretrained(out)
    tokenizer.save_pretrained(out)


def write_records(out: Path, logs_dir: Path, record: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
    """``training_params.json`` in ``out`` (read by the server's ``GET /info``) and ``metrics.json``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / PARAMS_RECORD).write_text(json.dumps(dict(record), indent=2) + "\n")
    make_readable(out)
    logs_dir.mkdir(parents=True, exist_ok=True)
    (logs_dir / "metrics.json").write_text(json.dumps(dict(metrics), indent=2) + "\n")
