"""Free-form training parameters (issue 20): /model/params.json or PARAM_*, validated, recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from substratus_ml import params
from substratus_ml.params import ParamError, RawParams, read_raw, resolve
from trainrun import Dirs, text_dataset, train


@pytest.mark.parametrize("name, env", [
    ("learningRate", "PARAM_LEARNING_RATE"), ("loraRank", "PARAM_LORA_RANK"),
    ("maxSeqLength", "PARAM_MAX_SEQ_LENGTH"), ("checkpointSeconds", "PARAM_CHECKPOINT_SECONDS"),
    ("seed", "PARAM_SEED"), ("dataLimit", "PARAM_DATA_LIMIT"), ("maxURLLength", "PARAM_MAX_URL_LENGTH"),
])
def test_env_names_are_upper_snake_case(name: str, env: str) -> None:
    assert params.env_name(name) == env


def test_the_file_wins_over_the_variables_and_keeps_json_types(tmp_path: Path) -> None:
    file = tmp_path / "params.json"
    file.write_text(json.dumps({"learningRate": 0.002, "loraRank": 4, "epochs": 2, "fancyNew": True}))
    raw = read_raw({"PARAM_LEARNING_RATE": "0.5"}, file)
    assert raw.values == {"learningRate": 0.002, "loraRank": 4, "epochs": 2}
    assert raw.ignored == ("fancyNew",) and raw.source == str(file)


def test_without_the_file_the_variables_are_read(tmp_path: Path) -> None:
    raw = read_raw({"PARAM_LEARNING_RATE": "2e-4", "PARAM_LORA_TARGETS": "q_proj,v_proj",
                    "PARAM_SOMETHING_ELSE": "x", "HOME": "/root"}, tmp_path / "absent.json")
    assert raw.values == {"learningRate": "2e-4", "loraTargets": "q_proj,v_proj"}
    assert raw.ignored == ("PARAM_SOMETHING_ELSE",)
    hyper = resolve(raw, {})
    assert hyper.learning_rate == 2e-4 and hyper.lora_targets == ("q_proj", "v_proj")
    assert hyper.sources["learningRate"] == "PARAM_LEARNING_RATE"


def test_params_beat_train_sh_flags_which_beat_defaults() -> None:
    raw = RawParams({"learningRate": 0.01}, "/model/params.json")
    hyper = resolve(raw, {"learningRate": 0.002, "loraRank": 16, "seed": None})
    assert (hyper.learning_rate, hyper.lora_rank, hyper.seed) == (0.01, 16, 42)
    assert hyper.sources["learningRate"] == "/model/params.json"
    assert hyper.sources["loraRank"] == "train.sh --lora-r" and hyper.sources["seed"] == "default"


@pytest.mark.parametrize("values, message", [
    ({"learningRate": -1}, "learningRate=-1 (from f.json): must be a number from 1e-12 to 1"),
    ({"learningRate": "fast"}, "learningRate='fast'"),
    ({"loraRank": 0}, "loraRank=0 (from f.json): must be a whole number from 1 to 1024"),
    ({"loraRank": 2.5}, "loraRank=2.5"),
    ({"loraRank": True}, "loraRank=True"),
    ({"warmupSteps": -3}, "warmupSteps=-3 (from f.json): must be a whole number from 0 to"),
    ({"maxSeqLength": 1}, "maxSeqLength=1 (from f.json): must be a whole number from 2 to"),
    ({"seed": -1}, "seed=-1"),
    ({"loraTargets": "q_proj, v proj"}, "loraTargets='q_proj, v proj' (from f.json): must be a string"),
    ({"loraTargets": 3}, "loraTargets=3"),
    ({"checkpointSeconds": "nan"}, "checkpointSeconds='nan'"),
    ({"checkpointSteps": -1}, "checkpointSteps=-1"),
])
def test_bad_values_name_the_parameter_and_the_range(values: dict[str, object], message: str) -> None:
    with pytest.raises(ParamError) as caught:
        resolve(RawParams(values, "f.json"), {})  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_whole_numbers_may_arrive_as_floats_or_strings() -> None:
    hyper = resolve(RawParams({"loraRank": 8.0, "seed": "7", "checkpointSeconds": 30}, "f.json"), {})
    assert (hyper.lora_rank, hyper.seed, hyper.checkpoint_seconds) == (8, 7, 30.0)


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "must hold a JSON object"),
    ("{not json", "not a readable JSON file"),
])
def test_a_broken_params_file_exits_2(tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    dirs = Dirs(tmp_path)
    dirs.params_file.write_text(content)
    data = text_dataset(tmp_path / "data.jsonl", 10)
    assert train(dirs, tiny_dir, monkeypatch, {"TRAIN_DATA_PATH": str(data)}) == 2
    assert message in capsys.readouterr().err and not dirs.trained.exists()


@pytest.mark.parametrize("env, message", [
    ({"PARAM_LEARNING_RATE": "0"}, "learningRate='0' (from PARAM_LEARNING_RATE): must be a number"),
    ({"PARAM_LORA_ALPHA": "-2"}, "loraAlpha='-2' (from PARAM_LORA_ALPHA)"),
    ({"TRAIN_OUTPUT": "both"}, "TRAIN_OUTPUT='both': must be merged"),
    ({"PARAM_MAX_SEQ_LENGTH": "4096"}, "maxSeqLength=4096 (from PARAM_MAX_SEQ_LENGTH): must be from 2 to 128"),
])
def test_bad_params_exit_2_before_training(tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], env: dict[str, str],
                                           message: str) -> None:
    dirs = Dirs(tmp_path)
    data = text_dataset(tmp_path / "data.jsonl", 10)
    assert train(dirs, tiny_dir, monkeypatch, {"TRAIN_DATA_PATH": str(data), **env}) == 2
    assert message in capsys.readouterr().err and not dirs.trained.exists()


def test_params_reach_the_training_and_the_record(tmp_path: Path, tiny_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    dirs = Dirs(tmp_path)
    dirs.params_file.write_text(json.dumps({
        "learningRate": 0.02, "warmupSteps": 3, "maxSeqLength": 16, "seed": 5, "epochs": 9,
        "batchSize": 3, "somebodyElses": "x", "otherThing": 1}))
    data = text_dataset(tmp_path / "data.jsonl", 40)
    code = train(dirs, tiny_dir, monkeypatch, {"TRAIN_DATA_PATH": str(data), "TRAIN_EPOCHS": "2"},
                 ("--lr", "0.5", "--block-size", "32"))
    assert code == 0
    record, progress = dirs.record(), dirs.progress()
    assert record["params"]["learningRate"] == 0.02 and record["params"]["maxSeqLength"] == 16
    assert record["param_sources"]["learningRate"] == str(dirs.params_file)
    assert record["param_sources"]["checkpointSteps"] == "default"
    assert (record["epochs"], record["batch_size"]) == (2, 3)  # TRAIN_EPOCHS beats the file's epochs
    assert record["ignored_params"] == ["otherThing", "somebodyElses"]
    log = dirs.log()
    assert log.count("params: ignoring otherThing, somebodyElses") == 1
    assert "16 tokens" in log
    peak = max(line["lr"] for line in progress if "lr" in line)
    assert 0.01 < peak <= 0.02  # the param's rate, not the flag's 0.5


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


def test_a_seed_makes_training_repeatable(tmp_path: Path, tiny_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = text_dataset(tmp_path / "data.jsonl", 40)
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        dirs = Dirs(tmp_path / name)
        env = {"TRAIN_DATA_PATH": str(data), "TRAIN_EPOCHS": "2", "PARAM_SEED": seed}
        assert train(dirs, tiny_dir, monkeypatch, env, ("--block-size", "16", "--lr", "0.01")) == 0
        runs[name] = (dirs.metrics()["loss_after"], _weights(dirs.trained))
    assert runs["a"][0] == runs["b"][0]
    assert all(torch.equal(runs["a"][1][k], runs["b"][1][k]) for k in runs["a"][1])
    assert runs["a"][0] != runs["c"][0]


def test_train_help_lists_every_param(capsys: pytest.CaptureFixture[str]) -> None:
    from substratus_ml.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(spec.flag in out and spec.env in out for spec in params.SPECS)


def test_every_param_is_documented() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    images = (Path(__file__).parents[3] / "docs" / "images.md").read_text()
    for spec in params.SPECS:
        row = f"| `{spec.name}` | `{spec.env}` | `{spec.flag}` |"
        assert row in readme, row
        assert f"| `{spec.name}` | `{spec.env}` |" in images, spec.name
