"""``substratus-ml merge-adapter``: a LoRA adapter merged into its base with ``peft``, saved.

Two uses. A model image that should serve one adapter's model alone (no
adapter machinery at run time) gets it merged. And the tests take it as the
reference for the batched LoRA product of :mod:`substratus_ml.lora_bank`:
greedy output of the server with ``model`` = an adapter must equal, token for
token, greedy output of this merged model (``peft``'s own
``merge_and_unload``, a path that shares no code with the server's).
"""

from __future__ import annotations

from pathlib import Path

import torch

from substratus_ml.adapter_errors import AdapterPathNotFound, NotAPeftAdapter
from substratus_ml.loading import detach_gguf, load_pretrained, make_readable
from substratus_ml.peft_adapter import CONFIG_FILE


def merge_adapter(model_dir: Path, adapter_dir: Path, out: Path) -> Path:
    """Merge the PEFT adapter in ``adapter_dir`` into the model in ``model_dir`` (float32, CPU)."""
    from peft import PeftModel

    if not adapter_dir.is_dir():
        raise AdapterPathNotFound(f"no adapter found at {adapter_dir}: not a directory")
    if not (adapter_dir / CONFIG_FILE).is_file():
        raise NotAPeftAdapter(f"{adapter_dir} has no {CONFIG_FILE}: not a PEFT adapter directory")
    model, tokenizer, _ = load_pretrained(model_dir, torch.float32, torch.device("cpu"))
    merged = PeftModel.from_pretrained(detach_gguf(model), str(adapter_dir)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    make_readable(out)
    return out
