"""Shared fixtures: one tiny model per test session, and a live server on it.

The model is deliberately minuscule (2 layers, 32-wide) so that building it and
generating from it takes seconds on two cores; it is trained for a few steps
only so that it produces varied tokens rather than uniform noise.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import uvicorn

from substratus_ml.app import create_app
from substratus_ml.loading import LoadedModel, load_model
from substratus_ml.settings import ServeSettings
from substratus_ml.tiny import InitTinyArgs, TinySpec, init_tiny

TEXT = """The quick brown fox jumps over the lazy dog.
A journey of a thousand miles begins with a single step.
%
All that glitters is not gold; all who wander are not lost.
The early bird catches the worm, but the second mouse gets the cheese.
%
Time flies like an arrow; fruit flies like a banana.
Never put off until tomorrow what you can do the day after tomorrow.
"""

TINY_SPEC = TinySpec(vocab_size=400, n_layer=2, n_embd=32, n_head=2, n_positions=128)


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    # Tests share two cores with other work; one torch thread is the fastest there.
    torch.set_num_threads(1)


def write_corpus(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "corpus.txt"
    path.write_text(TEXT * 4)
    return path


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    out = root / "saved"
    init_tiny(InitTinyArgs([write_corpus(root)], out, steps=15, spec=TINY_SPEC, batch_size=4,
                           block_size=32, lr=1e-2), log=lambda line: None)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_dir: Path) -> LoadedModel:
    return load_model(tiny_dir)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, app: object) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",  # type: ignore[arg-type]
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        import httpx

        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("test server did not become ready in 30 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


SERVER_SETTINGS = ServeSettings(model_dir=Path("in-memory"), model_name="tiny-test",
                                max_batch=16, max_new_tokens=64)


@pytest.fixture(scope="session")
def live_server(tiny_model: LoadedModel) -> Iterator[LiveServer]:
    app = create_app(SERVER_SETTINGS, lambda: tiny_model)
    with LiveServer(app) as server:
        yield server


# -- LoRA adapters made with peft on the tiny model, and their merged references -----------

@dataclass(frozen=True)
class AdapterSpec:
    r: int
    alpha: int
    targets: tuple[str, ...]
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)


# Different ranks (padding to the largest), modules, rsLoRA and PEFT's alpha/rank patterns.
ADAPTERS = {
    "alpha": AdapterSpec(4, 8, ("c_attn",), seed=1),
    "beta": AdapterSpec(8, 16, ("c_attn", "c_proj", "c_fc"), seed=2, extra={"use_rslora": True}),
    "gamma": AdapterSpec(2, 4, ("c_attn", "c_fc"), seed=3,
                         extra={"rank_pattern": {"c_fc": 6}, "alpha_pattern": {"c_fc": 3}}),
}
LORA_PROMPT = "The quick brown fox"
LORA_TOKENS = 16


def make_adapter(base_dir: Path, out: Path, spec: AdapterSpec) -> Path:
    """A PEFT adapter saved by peft itself, with random non-zero B (peft starts B at 0, which
    would leave the output unchanged)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, target_modules=list(spec.targets),
                        lora_dropout=0.0, fan_in_fan_out=True, **spec.extra)  # GPT-2: Conv1D
    model = get_peft_model(load_model(base_dir).model, config)
    generator = torch.Generator().manual_seed(spec.seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 2.0)
    model.save_pretrained(out)
    return out


@dataclass(frozen=True)
class Reference:
    """Greedy output of ``transformers.generate`` on a model: text and token count."""

    text: str
    tokens: int


def greedy_reference(loaded: LoadedModel, prompt: str, new_tokens: int) -> Reference:
    ids = torch.tensor([loaded.tokenizer.encode(prompt)])
    with torch.inference_mode():
        out = loaded.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                    max_new_tokens=new_tokens, pad_token_id=loaded.tokenizer.pad_token_id)
    new = out[0, ids.shape[1]:].tolist()
    eos = loaded.tokenizer.eos_token_id
    new = new[: new.index(eos)] if eos in new else new
    return Reference(loaded.tokenizer.decode(new, skip_special_tokens=True), len(new))


@pytest.fixture(scope="session")
def adapter_dirs(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {name: make_adapter(tiny_dir, root / name, spec) for name, spec in ADAPTERS.items()}


@pytest.fixture(scope="session")
def references(tiny_dir: Path, adapter_dirs: dict[str, Path], tiny_model: LoadedModel,
               tmp_path_factory: pytest.TempPathFactory) -> dict[str | None, Reference]:
    """The prompt's greedy completion by the base (key None) and by each adapter merged into
    the base offline with peft (``substratus-ml merge-adapter``)."""
    from substratus_ml.merge import merge_adapter

    root = tmp_path_factory.mktemp("merged")
    found: dict[str | None, Reference] = {None: greedy_reference(tiny_model, LORA_PROMPT, LORA_TOKENS)}
    for name, path in adapter_dirs.items():
        merged = load_model(merge_adapter(tiny_dir, path, root / name))
        found[name] = greedy_reference(merged, LORA_PROMPT, LORA_TOKENS)
    return found
