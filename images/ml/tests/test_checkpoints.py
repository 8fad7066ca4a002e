"""Checkpoints and resume (issue 24): atomic, fingerprinted, and a resumed run ends where an
uninterrupted one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import substratus_ml
from substratus_ml.checkpoints import LATEST, Checkpointing, CheckpointStore, Policy, TrainState
from substratus_ml.progress import ProgressLog
from trainrun import Dirs, clean_env, text_dataset, train

# Short records in blocks of 16 tokens, batch 2: steps of a few ms (tens on a busy machine).
ARGS = ("--block-size", "16", "--lr", "0.01")


def _env(data: Path, **extra: str) -> dict[str, str]:
    return {"TRAIN_DATA_PATH": str(data), "TRAIN_EPOCHS": "2", "TRAIN_BATCH_SIZE": "2", "PARAM_SEED": "7",
            "PARAM_CHECKPOINT_STEPS": "4", **extra}


def _state(step: int, value: float = 1.0) -> TrainState:
    return TrainState(step=step, total_steps=100, steps_per_epoch=10, seed=1, loss=0.5,
                      order=torch.arange(20), weights={"w": torch.full((3,), value)},
                      optimizer={"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
                      scheduler={"last_epoch": step}, rng={"torch": torch.get_rng_state(), "python": (3, (1, 2), None)})


def _final(dirs: Dirs) -> tuple[float, float, dict[str, torch.Tensor]]:
    """The last training loss, the held-out loss after, and the saved weights of a finished run."""
    last = [line for line in dirs.progress() if "eval_loss" in line][-1]
    weights_file = dirs.trained / "model.safetensors"
    if not weights_file.exists():
        weights_file = dirs.trained / "adapter" / "adapter_model.safetensors"
    return last["loss"], dirs.metrics()["loss_after"], load_file(weights_file)


def _assert_same_end(resumed: Dirs, reference: Dirs) -> None:
    loss, held, weights = _final(resumed)
    ref_loss, ref_held, ref_weights = _final(reference)
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    assert held == pytest.approx(ref_held, rel=1e-5, abs=1e-6)
    assert weights.keys() == ref_weights.keys()
    assert all(torch.allclose(weights[k].float(), ref_weights[k].float(), atol=1e-5) for k in weights)


# --- the policy and the store ---------------------------------------------------------------

def test_policy_whichever_interval_comes_first() -> None:
    policy = Policy(steps=10, seconds=60.0, budget=None)
    assert not policy.due(steps_since=9, seconds_since=59.0, last_cost=0.0)
    assert policy.due(10, 1.0, 0.0) and policy.due(1, 60.0, 0.0)
    assert not Policy(steps=0, seconds=0.0).enabled
    assert not Policy(steps=0, seconds=30.0).due(10_000, 29.0, 0.0)


def test_default_intervals_are_stretched_to_keep_checkpoints_within_5_percent() -> None:
    policy = Policy(steps=10, seconds=60.0, budget=0.05)
    assert not policy.due(10, 18.0, last_cost=1.0)  # 1 s of checkpoint per 18 s of training: 5.3%
    assert policy.due(10, 19.0, last_cost=1.0)
    assert Policy(steps=10, seconds=60.0, budget=None).due(10, 1.0, last_cost=1.0)  # explicit: as asked


def test_a_checkpoint_is_a_complete_directory_named_by_latest_json(tmp_path: Path) -> None:
    lines: list[str] = []
    store = CheckpointStore(tmp_path, "abc", lines.append)
    assert store.load() is None
    for step in (5, 10, 15):
        store.save(_state(step, value=step))
    assert sorted(p.name for p in tmp_path.iterdir()) == [LATEST, "step-00000010", "step-00000015"]
    latest = json.loads((tmp_path / LATEST).read_text())
    assert latest.keys() == {"step", "epoch", "path", "loss", "time", "fingerprint"}
    assert (latest["step"], latest["path"], latest["epoch"], latest["fingerprint"]) == (15, "step-00000015", 1.5, "abc")
    meta = json.loads((tmp_path / "step-00000015" / "trainer_state.json").read_text())
    assert (meta["epoch_index"], meta["batch_index"], meta["seed"]) == (1, 5, 1)
    state = CheckpointStore(tmp_path, "abc", lines.append).load()
    assert state is not None and state.step == 15 and torch.equal(state.weights["w"], torch.full((3,), 15.0))
    assert torch.equal(state.order, torch.arange(20)) and state.rng["python"] == (3, (1, 2), None)


def test_a_half_written_checkpoint_is_never_read_and_is_cleaned(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, "abc", lambda _: None)
    store.save(_state(4))
    torn = tmp_path / ".tmp-step-00000008-999"
    torn.mkdir()
    (torn / "weights.safetensors").write_bytes(b"\0" * 10)  # killed mid-write
    (tmp_path / f".tmp-{LATEST}-999").write_text('{"step": 8, "pa')
    state = CheckpointStore(tmp_path, "abc", lambda _: None).load()
    assert state is not None and state.step == 4
    store.clean()
    assert sorted(p.name for p in tmp_path.iterdir()) == [LATEST, "step-00000004"]


@pytest.mark.parametrize("damage, message", [
    ("fingerprint", "it was made for other parameters, data or base model"),
    ("latest", "cannot read the latest checkpoint"),
    ("weights", "cannot read the latest checkpoint"),
])
def test_a_foreign_or_broken_checkpoint_is_logged_and_ignored(tmp_path: Path, damage: str, message: str) -> None:
    CheckpointStore(tmp_path, "abc", lambda _: None).save(_state(4))
    if damage == "latest":
        (tmp_path / LATEST).write_text("{")
    if damage == "weights":
        (tmp_path / "step-00000004" / "weights.safetensors").write_bytes(b"junk")
    lines: list[str] = []
    store = CheckpointStore(tmp_path, "abc" if damage != "fingerprint" else "xyz", lines.append)
    assert store.load() is None
    assert len(lines) == 1 and message in lines[0]
    store.save(_state(2))  # a new training replaces what it could not use
    assert sorted(p.name for p in tmp_path.iterdir()) == [LATEST, "step-00000002"]


def test_checkpointing_saves_on_time_and_at_the_end(tmp_path: Path) -> None:
    now = [0.0]
    lines: list[str] = []
    hook = Checkpointing(CheckpointStore(tmp_path, "abc", lines.append), Policy(steps=0, seconds=30.0),
                         lines.append, clock=lambda: now[0])
    saved = []
    for step in range(1, 8):
        now[0] += 10.0
        saved.append(hook.after_step(step, step == 7, lambda: _state(step)))
    assert saved == [None, None, 3, 3, 3, 6, 7]
    assert sum("checkpoint: step" in line for line in lines) == 3


# --- whole runs ---------------------------------------------------------------------------

def _wait_for_checkpoint(dirs: Dirs, process: subprocess.Popen[bytes], step: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen = int(json.loads((dirs.checkpoints / LATEST).read_text())["step"])
        except (OSError, ValueError, KeyError):
            seen = 0
        if seen >= step:
            return seen
        assert process.poll() is None, f"training ended before step {step}: {process.returncode}"
        time.sleep(0.002)
    raise AssertionError(f"no checkpoint of step {step} within {timeout} s")


def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(
        tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = text_dataset(tmp_path / "data.jsonl", 150)  # 2 epochs of 80 steps
    env = _env(data, PARAM_CHECKPOINT_STEPS="10")
    reference = Dirs(tmp_path / "reference")  # no checkpoint directory: no checkpoints
    assert train(reference, tiny_dir, monkeypatch, env, ARGS) == 0
    total = reference.metrics()["steps"]

    killed = Dirs(tmp_path / "killed")
    killed.checkpoints.mkdir(parents=True)
    clean_env(monkeypatch, env)
    package = str(Path(substratus_ml.__file__).parents[1])
    process = subprocess.Popen([sys.executable, "-m", "substratus_ml.cli", *killed.argv(tiny_dir), *ARGS],
                               env={**os.environ, "PYTHONPATH": package}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        _wait_for_checkpoint(killed, process, total // 4, timeout=120)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL and not killed.trained.exists()

    assert train(killed, tiny_dir, monkeypatch, env, ARGS) == 0
    resumed_from = killed.metrics()["resumed_from_step"]
    assert total // 4 <= resumed_from < total
    assert f"checkpoint: resuming from step {resumed_from} of {total}" in killed.log()
    _assert_same_end(killed, reference)
    names = sorted(p.name for p in killed.checkpoints.iterdir())
    assert names[0] == LATEST and len(names) == 3 and names[2] == f"step-{total:08d}"  # the last two kept
    lines = killed.progress()
    assert lines[-1]["checkpoint"] == total and any(line.get("checkpoint") == resumed_from for line in lines)


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Ctrl-C in the middle of training: the progress line of ``step`` raises KeyboardInterrupt."""
    original = ProgressLog.write

    def write(self: ProgressLog, at: int, *args: Any, **kwargs: Any) -> None:
        if at >= step:
            raise KeyboardInterrupt
        original(self, at, *args, **kwargs)
    monkeypatch.setattr(ProgressLog, "write", write)


def test_an_adapter_run_resumes_exactly_too(tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = text_dataset(tmp_path / "data.jsonl", 120)
    env = _env(data, TRAIN_OUTPUT="adapter", PARAM_LEARNING_RATE="0.02", PARAM_CHECKPOINT_STEPS="3")
    reference = Dirs(tmp_path / "reference")
    assert train(reference, tiny_dir, monkeypatch, env, ("--block-size", "16")) == 0
    interrupted = Dirs(tmp_path / "interrupted")
    interrupted.checkpoints.mkdir(parents=True)
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 20)
        assert train(interrupted, tiny_dir, patch, env, ("--block-size", "16")) == 130
    assert train(interrupted, tiny_dir, monkeypatch, env, ("--block-size", "16")) == 0
    assert interrupted.metrics()["resumed_from_step"] == 18
    _assert_same_end(interrupted, reference)


def test_other_data_or_params_start_over(tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = text_dataset(tmp_path / "data.jsonl", 60)
    dirs = Dirs(tmp_path)
    dirs.checkpoints.mkdir()
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 10)
        assert train(dirs, tiny_dir, patch, _env(data), ARGS) == 130
    assert train(dirs, tiny_dir, monkeypatch, _env(data, PARAM_LEARNING_RATE="0.003"), ARGS) == 0
    assert dirs.metrics()["resumed_from_step"] is None
    assert "made for other parameters, data or base model" in dirs.log()
    with data.open("a") as handle:
        handle.write(json.dumps({"text": "one more line"}) + "\n")
    assert train(dirs, tiny_dir, monkeypatch, _env(data, PARAM_LEARNING_RATE="0.003"), ARGS) == 0
    assert dirs.metrics()["resumed_from_step"] is None
    # Same params and data again: the finished run's last checkpoint is resumed, nothing retrained.
    assert train(dirs, tiny_dir, monkeypatch, _env(data, PARAM_LEARNING_RATE="0.003"), ARGS) == 0
    assert dirs.metrics()["resumed_from_step"] == dirs.metrics()["steps"]


def test_checkpoint_interval_params_do_not_change_the_fingerprint(
        tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = text_dataset(tmp_path / "data.jsonl", 60)
    dirs = Dirs(tmp_path)
    dirs.checkpoints.mkdir()
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 10)
        assert train(dirs, tiny_dir, patch, _env(data), ARGS) == 130
    assert train(dirs, tiny_dir, monkeypatch, _env(data, PARAM_CHECKPOINT_STEPS="0",
                                                    PARAM_CHECKPOINT_SECONDS="5"), ARGS) == 0
    assert dirs.metrics()["resumed_from_step"] == 8
