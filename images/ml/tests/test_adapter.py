"""TRAIN_OUTPUT=adapter (issue 23): a PEFT LoRA adapter alone, small beside its base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from conftest import write_corpus
from substratus_ml.tiny import InitTinyArgs, TinySpec, init_tiny
from trainrun import Dirs, text_dataset, train


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model shaped like examples/models/tiny-gpt's (init-tiny's defaults), untrained."""
    root = tmp_path_factory.mktemp("demo")
    init_tiny(InitTinyArgs([write_corpus(root)], root / "saved", steps=0, spec=TinySpec()), log=lambda _: None)
    return root / "saved"


def test_an_adapter_is_written_alone_and_loads_with_peft(tmp_path: Path, demo_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = Dirs(tmp_path)
    data = text_dataset(tmp_path / "data.jsonl", 30)
    env = {"TRAIN_DATA_PATH": str(data), "TRAIN_OUTPUT": "adapter", "TRAIN_EPOCHS": "2",
           "PARAM_LEARNING_RATE": "0.01"}
    assert train(dirs, demo_dir, monkeypatch, env) == 0
    adapter = dirs.trained / "adapter"
    assert sorted(p.name for p in dirs.trained.iterdir()) == ["adapter", "training_params.json"]
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8 and config["target_modules"] == ["c_attn"]
    base_bytes = (demo_dir / "model.safetensors").stat().st_size
    adapter_bytes = sum(p.stat().st_size for p in adapter.iterdir())
    assert adapter_bytes < 0.05 * base_bytes, (adapter_bytes, base_bytes)
    record = dirs.record()
    assert (record["output"], record["method"], record["params"]["loraTargets"]) == ("adapter", "lora", "c_attn")
    assert "LoRA r=8 on c_attn" in dirs.log() and dirs.metrics()["loss_after"] < dirs.metrics()["loss_before"]

    base = AutoModelForCausalLM.from_pretrained(demo_dir, local_files_only=True)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        before = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, adapter)
        after = tuned(input_ids=ids).logits
    assert not torch.allclose(before, after)


def test_lora_params_shape_the_adapter(tmp_path: Path, demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = Dirs(tmp_path)
    dirs.params_file.write_text(json.dumps({"loraRank": 4, "loraAlpha": 8, "loraTargets": "c_attn,c_proj"}))
    data = text_dataset(tmp_path / "data.jsonl", 12)
    assert train(dirs, demo_dir, monkeypatch, {"TRAIN_DATA_PATH": str(data), "TRAIN_OUTPUT": "adapter"},
                 ("--lora-r", "16", "--lora-targets", "c_fc")) == 0
    config = json.loads((dirs.trained / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"])) == (4, 8, ["c_attn", "c_proj"])


def test_a_target_the_model_lacks_exits_2(tmp_path: Path, demo_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = text_dataset(tmp_path / "data.jsonl", 12)
    env = {"TRAIN_DATA_PATH": str(data), "TRAIN_OUTPUT": "adapter", "PARAM_LORA_TARGETS": "q_proj"}
    assert train(Dirs(tmp_path), demo_dir, monkeypatch, env) == 2
    assert "loraTargets=q_proj:" in capsys.readouterr().err


def test_lora_params_on_a_full_fine_tune_are_said_to_be_unused(tmp_path: Path, tiny_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = Dirs(tmp_path)
    data = text_dataset(tmp_path / "data.jsonl", 12)
    assert train(dirs, tiny_dir, monkeypatch, {"TRAIN_DATA_PATH": str(data), "PARAM_LORA_RANK": "4"},
                 ("--block-size", "16")) == 0
    assert "params: loraRank apply to LoRA training only" in dirs.log()
    assert dirs.record()["method"] == "full" and (dirs.trained / "model.safetensors").exists()
