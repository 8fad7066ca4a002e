"""Load a causal LM and its tokenizer from a local directory, never from a hub.

The server loads exactly one model at start-up from ``/model/saved``. Two
layouts are supported: a ``save_pretrained`` directory (what ``init-tiny`` and
``train`` write) and a directory holding one ``.gguf`` file (what
``init-gemma`` writes), which ``transformers`` de-quantises with ``gguf``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from substratus_ml.devices import pick_device, pick_dtype


class ModelDirError(Exception):
    """The model directory is missing or holds no loadable model."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    kind: str  # "transformers" or "gguf"
    source: Path
    training_params: dict[str, Any] | None = field(default=None)

    @property
    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 1024) or 1024)


def _gguf_file(model_dir: Path) -> str | None:
    found = sorted(p.name for p in model_dir.glob("*.gguf"))
    return found[0] if found else None


def _from_pretrained(auto: Any, model_dir: Path, **kwargs: Any) -> Any:
    """SDPA attention where the architecture has it (fused kernels, masks as given)."""
    try:
        return auto.from_pretrained(model_dir, local_files_only=True, attn_implementation="sdpa",
                                    **kwargs)
    except ValueError as exc:
        if "sdpa" not in str(exc).lower():
            raise
        return auto.from_pretrained(model_dir, local_files_only=True, **kwargs)


def load_pretrained(model_dir: Path, dtype: Any, device: Any) -> tuple[Any, Any, str]:
    """(model, tokenizer, kind) from ``model_dir``, offline; used to serve and to fine-tune.

    A ``chat_template.jinja`` beside a GGUF file becomes the tokenizer's chat
    template (GGUF files may carry none; ``init-gemma`` writes Gemma's).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Nothing may be fetched: the image must serve what it was built with.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not model_dir.is_dir():
        raise ModelDirError(f"model directory {model_dir} does not exist; build the image "
                            "with a model in /model/saved or pass --model-dir")
    gguf = _gguf_file(model_dir)
    if gguf is None and not (model_dir / "config.json").exists():
        raise ModelDirError(f"{model_dir} holds neither config.json (save_pretrained) "
                            "nor a .gguf file")
    extra: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, **extra)
    template = model_dir / "chat_template.jinja"
    if not getattr(tokenizer, "chat_template", None) and template.is_file():
        tokenizer.chat_template = template.read_text(encoding="utf-8")
    model = _from_pretrained(AutoModelForCausalLM, model_dir, dtype=dtype, **extra)
    model.to(device)
    return model, tokenizer, "gguf" if gguf else "transformers"


def detach_gguf(model: Any) -> Any:
    """Make a model loaded from GGUF saveable with ``save_pretrained``.

    ``transformers`` de-quantises GGUF weights into ordinary tensors but keeps a
    GGUF "quantizer" on the model, and ``save_pretrained`` refuses any model with
    a quantizer that cannot re-serialise its format. The weights are plain
    tensors by then, so dropping the marker is all a save needs.
    """
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


def make_readable(directory: Path) -> None:
    """Give every file under ``directory`` read permission for all.

    safetensors writes through a temporary file, which is created 0600: a model
    image built by root would then not be readable by a server running as another
    user.
    """
    for path in directory.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode | 0o444)


def load_model(model_dir: Path) -> LoadedModel:
    """Load the model in ``model_dir`` for inference (eval mode) on the GPU if present, else CPU.

    float32 on the CPU, bfloat16 on a GPU that has it (:mod:`substratus_ml.devices`)."""
    device = pick_device()
    model, tokenizer, kind = load_pretrained(model_dir, pick_dtype(device), device)
    model.eval()
    params_file = model_dir / "training_params.json"
    params = json.loads(params_file.read_text()) if params_file.exists() else None
    return LoadedModel(model, tokenizer, kind, model_dir, params)
