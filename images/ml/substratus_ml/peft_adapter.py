"""Read a LoRA adapter saved by ``peft`` and check it against the served base model.

A PEFT adapter directory holds ``adapter_config.json`` and
``adapter_model.safetensors`` (what ``PeftModel.save_pretrained`` writes, and
what ``substratus-ml train --lora`` leaves in ``/model/trained/adapter``).
Each adapted module ``M`` has two matrices, ``M.lora_A.weight`` ``[r, in]``
and ``M.lora_B.weight`` ``[out, r]``; PEFT computes ``base(x) + scaling *
B(A(x))`` with ``scaling = alpha / r`` (``alpha / sqrt(r)`` with rsLoRA).

:func:`read_adapter` returns, per module, ``A^T`` ``[in, r]`` and ``scaling *
B^T`` ``[r, out]`` in the model's dtype and device: the layout the batched
product of :mod:`substratus_ml.lora_bank` stacks. It never imports ``peft``
(reading JSON and safetensors is all it takes) and runs off the engine's
thread; everything it rejects is an :mod:`~substratus_ml.adapter_errors` case
with a message that names the file, the module or the field at fault.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from substratus_ml.adapter_errors import AdapterIncompatible, AdapterPathNotFound, NotAPeftAdapter

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$")
# PEFT features whose forward is not ``base(x) + scaling * B(A(x))`` on Linear layers.
_UNSUPPORTED = {"use_dora": "DoRA", "lora_bias": "a LoRA bias", "modules_to_save": "modules_to_save",
                "target_parameters": "target_parameters", "trainable_token_indices": "trainable tokens",
                "alora_invocation_tokens": "aLoRA", "use_qalora": "QALoRA",
                "layer_replication": "layer_replication"}


@dataclass(frozen=True)
class LoraModule:
    """One adapted module: ``delta(x) = x @ a @ b`` (scaling folded into ``b``)."""

    a: torch.Tensor  # [in, r]
    b: torch.Tensor  # [r, out]

    @property
    def rank(self) -> int:
        return int(self.a.shape[1])


@dataclass(frozen=True)
class LoraWeights:
    name: str
    path: Path
    modules: dict[str, LoraModule]  # module path in the base model -> its matrices

    @property
    def rank(self) -> int:
        return max(m.rank for m in self.modules.values())


def read_adapter(name: str, path: Path, model: nn.Module, max_rank: int) -> LoraWeights:
    """The adapter at ``path`` for ``model``; raises an ``AdapterError`` case."""
    config = read_config(path)
    weights = _read_weights(path)
    pairs = _pairs(weights, path)
    modules: dict[str, LoraModule] = {}
    missing = [m for m in pairs if _module(model, m) is None]
    if missing:
        raise AdapterIncompatible(
            f"adapter {path} adapts {len(missing)} module(s) the base model does not have, e.g. "
            f"{', '.join(sorted(missing)[:3])}; it was trained for another model (its config says "
            f"{config.get('base_model_name_or_path') or 'nothing'})")
    param = next(iter(model.parameters()))
    for module_name, (a, b) in sorted(pairs.items()):
        modules[module_name] = _prepare(module_name, a, b, config, _module(model, module_name), param)
    loaded = LoraWeights(name, path, modules)
    if loaded.rank > max_rank:
        raise AdapterIncompatible(f"adapter {path} has rank {loaded.rank}; this server accepts at "
                                  f"most {max_rank} (SUBSTRATUS_MAX_LORA_RANK)")
    return loaded


def read_config(path: Path) -> dict[str, Any]:
    """``adapter_config.json`` of a LoRA adapter, its unsupported features refused."""
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, no permission...
        raise AdapterPathNotFound(f"no adapter found at {str(path)[:200]!r}: {exc}") from None
    if not exists:
        raise AdapterPathNotFound(f"no adapter found at {path}: the path does not exist")
    if not is_dir:
        raise NotAPeftAdapter(f"{path} is a file; an adapter is a directory holding "
                              f"{CONFIG_FILE} and {WEIGHTS_FILE} (peft's save_pretrained)")
    config_file = path / CONFIG_FILE
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotAPeftAdapter(f"{path} has no {CONFIG_FILE}: not a PEFT adapter directory "
                              "(peft's save_pretrained writes one)") from None
    except (OSError, ValueError) as exc:
        raise NotAPeftAdapter(f"{config_file} could not be read as JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        kind = config.get("peft_type") if isinstance(config, dict) else type(config).__name__
        raise NotAPeftAdapter(f"{config_file}: peft_type is {kind!r}; only LORA adapters are served")
    used = [what for key, what in _UNSUPPORTED.items() if config.get(key)]
    if config.get("bias", "none") != "none":
        used.append(f"bias={config['bias']!r}")
    if used:
        raise AdapterIncompatible(f"{config_file} uses {', '.join(used)}, which the batched LoRA "
                                  "product does not serve; train a plain LoRA adapter (or merge this "
                                  "one: substratus-ml merge-adapter)")
    return config


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    file = path / WEIGHTS_FILE
    if not file.is_file():
        raise NotAPeftAdapter(f"{path} has no {WEIGHTS_FILE} (only safetensors weights are read; "
                              "save the adapter with a recent peft)")
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise NotAPeftAdapter(f"{file} could not be read as safetensors: {exc}") from exc


def _pairs(weights: dict[str, torch.Tensor], path: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    parts: dict[str, dict[str, torch.Tensor]] = {}
    others = []
    for key, tensor in weights.items():
        match = _KEY.match(key)
        if match is None:
            others.append(key)
            continue
        parts.setdefault(match["module"], {})[match["part"]] = tensor
    if others:
        raise AdapterIncompatible(f"{path / WEIGHTS_FILE} holds weights other than LoRA A/B "
                                  f"matrices (e.g. {', '.join(sorted(others)[:3])}): embedding "
                                  "adapters, DoRA and saved modules are not served")
    unpaired = sorted(m for m, p in parts.items() if set(p) != {"A", "B"})
    if unpaired:
        raise NotAPeftAdapter(f"{path / WEIGHTS_FILE}: module(s) {', '.join(unpaired[:3])} lack "
                              "their lora_A or lora_B weight")
    if not parts:
        raise NotAPeftAdapter(f"{path / WEIGHTS_FILE} holds no LoRA weights")
    return {m: (p["A"], p["B"]) for m, p in parts.items()}


def _module(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _features(module: nn.Module) -> tuple[int, int] | None:
    """(in, out) of a layer the batched product can adapt; None for any other kind."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, Conv1D):  # GPT-2's projections: weight [in, out]
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return None


def _prepare(name: str, a: torch.Tensor, b: torch.Tensor, config: dict[str, Any],
             module: nn.Module | None, like: torch.Tensor) -> LoraModule:
    assert module is not None
    features = _features(module)
    if features is None:
        raise AdapterIncompatible(f"module {name} is a {type(module).__name__}; only Linear (and "
                                  "GPT-2's Conv1D) layers can be adapted")
    rank = int(a.shape[0])
    if a.dim() != 2 or b.dim() != 2 or b.shape[1] != rank or rank < 1:
        raise NotAPeftAdapter(f"module {name}: lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} "
                              "are not [r, in] and [out, r]")
    if (int(a.shape[1]), int(b.shape[0])) != features:
        raise AdapterIncompatible(f"module {name}: the adapter maps {a.shape[1]} -> {b.shape[0]} "
                                  f"features, the base model's layer {features[0]} -> {features[1]}; "
                                  "it was trained for another model")
    scaling = _scaling(name, rank, config)
    return LoraModule(a.t().contiguous().to(like.device, like.dtype),
                      (b.float().t() * scaling).contiguous().to(like.device, like.dtype))


def _pattern_value(patterns: dict[str, Any], name: str, default: float) -> float:
    """PEFT's rank/alpha pattern rule: the first key that matches the end of the module name."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return float(value)
    return default


def _scaling(name: str, rank: int, config: dict[str, Any]) -> float:
    alpha = _pattern_value(config.get("alpha_pattern") or {}, name, float(config.get("lora_alpha", 8)))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
