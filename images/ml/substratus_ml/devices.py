"""Which device the model runs on: the GPU when the container was given one, else the CPU.

The orchestrator passes a GPU through only when a Model's `compute.types`
prefers it and the engine has one; the same image then runs on either.
`SUBSTRATUS_DEVICE` (cpu, cuda, cuda:1...) overrides the choice.
"""

from __future__ import annotations

import os

import torch


def pick_device() -> torch.device:
    wanted = os.environ.get("SUBSTRATUS_DEVICE", "").strip()
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
