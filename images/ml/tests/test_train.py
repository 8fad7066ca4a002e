"""``substratus-ml train`` (train.sh): contract env vars in, trained model and metrics out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from substratus_ml import corpus
from trainrun import SENTENCES, Dirs, text_dataset, train

def _dataset(path: Path, count: int) -> Path:
    return text_dataset(path, count)


def _run(tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch,
         env: dict[str, str], extra: tuple[str, ...] = ()) -> int:
    return train(Dirs(tmp_path), tiny_dir, monkeypatch, env, ("--lr", "0.01", "--block-size", "32", *extra))


def test_training_lowers_loss_and_honours_the_params(
        tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _dataset(tmp_path / "data.jsonl", 200)
    code = _run(tmp_path, tiny_dir, monkeypatch, {
        "TRAIN_DATA_PATH": str(data), "TRAIN_DATA_LIMIT": "60", "TRAIN_BATCH_SIZE": "2",
        "TRAIN_EPOCHS": "3"})
    assert code == 0
    metrics = json.loads((tmp_path / "logs" / "metrics.json").read_text())
    assert metrics["loss_after"] < metrics["loss_before"]
    assert (metrics["epochs"], metrics["batch_size"], metrics["data_limit"]) == (3, 2, 60)
    assert metrics["records"] == 60
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    train_records, _ = corpus.split_holdout(corpus.read_records(data, 60))
    blocks = corpus.blocks(corpus.token_stream(train_records, tokenizer.encode,
                                               tokenizer.eos_token_id), 32)
    assert metrics["steps"] == 3 * math.ceil(len(blocks) / 2)

    log = (tmp_path / "logs" / "train.log").read_text()
    assert f"step {metrics['steps']}/{metrics['steps']} loss" in log and "steps/s" in log
    _check_progress(tmp_path / "logs" / "progress.jsonl", metrics)
    trained = tmp_path / "trained"
    params = json.loads((trained / "training_params.json").read_text())
    assert params["epochs"] == 3 and params["data_path"] == str(data)
    assert params["loss_after"] == metrics["loss_after"]
    AutoModelForCausalLM.from_pretrained(trained, local_files_only=True)
    unreadable = [p.name for p in trained.rglob("*") if p.is_file() and not p.stat().st_mode & 0o004]
    assert unreadable == []  # a server running as another user must read the image's model


def test_plain_text_data_is_accepted(tmp_path: Path, tiny_dir: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data.txt"
    data.write_text("\n\n".join(SENTENCES * 3))
    assert _run(tmp_path, tiny_dir, monkeypatch, {"TRAIN_DATA_PATH": str(data)}) == 0
    metrics = json.loads((tmp_path / "logs" / "metrics.json").read_text())
    assert (metrics["records"], metrics["epochs"], metrics["data_limit"]) == (9, 1, None)


@pytest.mark.parametrize("env, code, message", [
    ({}, 2, "TRAIN_DATA_PATH is not set"),
    ({"TRAIN_DATA_PATH": "{missing}"}, 1, "does not exist"),
    ({"TRAIN_DATA_PATH": "{empty}"}, 1, "no text records"),
    ({"TRAIN_DATA_PATH": "{empty}", "TRAIN_EPOCHS": "zero"}, 2, "TRAIN_EPOCHS='zero'"),
    ({"TRAIN_DATA_PATH": "{empty}", "TRAIN_BATCH_SIZE": "0"}, 2, "TRAIN_BATCH_SIZE='0': must be >= 1"),
])
def test_bad_input_exits_with_a_clear_message(
        tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], env: dict[str, str], code: int, message: str) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    paths = {"missing": str(tmp_path / "missing.jsonl"), "empty": str(empty)}
    env = {k: v.format(**paths) for k, v in env.items()}
    assert _run(tmp_path, tiny_dir, monkeypatch, env) == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "trained").exists()


def _check_progress(path: Path, metrics: dict[str, float]) -> None:
    """The contract's optional progress.jsonl: one object per line, steps rising to the total."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    steps = [line["step"] for line in lines]
    assert steps == sorted(steps) and steps[-1] == metrics["steps"] and len(lines) >= 3
    for line in lines:
        assert line["total_steps"] == metrics["steps"]
        assert isinstance(line["step"], int) and isinstance(line["loss"], float)
        assert isinstance(line["epoch"], (int, float)) and line["time"] > 1.7e9
    assert lines[-2]["epoch"] == metrics["epochs"] and lines[-2]["tokens_per_second"] > 0
    assert lines[-1]["eval_loss"] == pytest.approx(metrics["loss_after"], abs=1e-6)


def test_lora_trains_an_adapter_and_saves_it_merged(
        tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _dataset(tmp_path / "data.jsonl", 120)
    code = _run(tmp_path, tiny_dir, monkeypatch, {"TRAIN_DATA_PATH": str(data), "TRAIN_EPOCHS": "4",
                                                  "TRAIN_BATCH_SIZE": "4"},
                ("--lora", "--lora-r", "4", "--lora-targets", "c_attn"))
    assert code == 0
    metrics = json.loads((tmp_path / "logs" / "metrics.json").read_text())
    assert metrics["loss_after"] < metrics["loss_before"]
    log = (tmp_path / "logs" / "train.log").read_text()
    assert "LoRA r=4 on c_attn" in log and "parameters trained" in log
    trained = tmp_path / "trained"
    assert (trained / "adapter" / "adapter_config.json").exists()
    params = json.loads((trained / "training_params.json").read_text())
    assert params["method"] == "lora"
    merged = AutoModelForCausalLM.from_pretrained(trained, local_files_only=True)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir, local_files_only=True)
    changed = {name for name, p in merged.state_dict().items()
               if not p.float().allclose(base.state_dict()[name].float(), atol=1e-2)}
    assert changed and all("attn.c_attn" in name for name in changed)  # only adapted weights moved
    _check_progress(tmp_path / "logs" / "progress.jsonl", metrics)
