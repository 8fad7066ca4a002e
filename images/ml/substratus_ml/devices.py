"""Which device and number format the model runs in.

The device is the GPU when the container was given one, else the CPU: the
orchestrator passes a GPU through only when a Model's `compute.types` prefers
it and the engine has one, and the same image then runs on either.
`SUBSTRATUS_DEVICE` (cpu, cuda, cuda:1...) overrides the choice.

The number format is float32 on the CPU (bfloat16 matmuls are slow on most
CPUs) and bfloat16 on GPUs that support it (half the memory traffic per
token); `SUBSTRATUS_DTYPE` (float32, bfloat16, float16) overrides it. Measure
before trusting either: `bench/gpu_bench.py --dtypes float32,bfloat16`.
"""

from __future__ import annotations

import os

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device() -> torch.device:
    wanted = os.environ.get("SUBSTRATUS_DEVICE", "").strip()
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    wanted = os.environ.get("SUBSTRATUS_DTYPE", "").strip().lower()
    if wanted and wanted != "auto":
        if wanted not in DTYPES:
            raise ValueError(f"SUBSTRATUS_DTYPE={wanted!r}: use one of auto, {', '.join(DTYPES)}")
        return DTYPES[wanted]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
