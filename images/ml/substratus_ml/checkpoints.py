"""Checkpoints that survive a killed training attempt, and the exact resume from them.

This project's extension of the container contract (issue 24): when the
directory ``/model/checkpoints`` exists (the control plane mounts a persistent,
writable volume there that outlives attempts), ``train`` saves its state every
``checkpointSteps`` steps or ``checkpointSeconds`` seconds, whichever comes
first, and once more when the last step is done; the next attempt of the same
training resumes from the newest one. Layout::

    /model/checkpoints/
      latest.json            {"step", "epoch", "path", "loss", "time", "fingerprint"}
      step-00000200/
        weights.safetensors  the trained parameters (every weight, or the LoRA adapter's)
        state.pt             AdamW and LR-scheduler state, RNG states, the epoch's shuffle order
        trainer_state.json   step, epoch, data position, seed, loss, fingerprint
      step-00000400/         the last two are kept

Writes are atomic: a checkpoint is written into ``.tmp-step-...``, each file
and the directory fsynced, then renamed to ``step-NNNNNNNN``; only then is
``latest.json`` replaced (temporary file, fsync, rename). A reader starts from
``latest.json`` only, so a half-written directory is never read, and leftovers
of a killed write are removed at start.

The fingerprint (:func:`fingerprint`) hashes everything that decides the
training: the parameters, the data files' bytes and the base model's files. A
checkpoint with another fingerprint (another spec, other data) is ignored and
logged, never resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CHECKPOINT_DIR = Path("/model/checkpoints")
LATEST = "latest.json"
KEEP = 2
FORMAT = 1

Clock = Callable[[], float]


@dataclass
class TrainState:
    """Everything a resumed run needs to continue exactly where the checkpoint was taken."""

    step: int  # optimizer steps done
    total_steps: int
    steps_per_epoch: int
    seed: int
    loss: float  # training loss of the last step
    order: torch.Tensor  # the shuffle order of the current epoch
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, Any]
    notes: dict[str, float] = field(default_factory=dict)  # e.g. the held-out loss before training

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch

    def position(self) -> dict[str, int]:
        """The data position: the epoch and the next batch within it."""
        epoch, batch = divmod(self.step, self.steps_per_epoch)
        return {"epoch_index": epoch, "batch_index": batch, "seed": self.seed}


def rng_state() -> dict[str, Any]:
    """The random generators a training step may draw from (dropout, for one)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fingerprint(params: Mapping[str, Any], data_path: Path, model_dir: Path) -> str:
    """sha256 over the training parameters, the data files' bytes and the base model's files.

    The data is hashed by content (one read, small beside training on it); the
    base model by file names, sizes and modification times (it is baked into
    the image and can be gigabytes).
    """
    digest = hashlib.sha256(json.dumps(dict(params), sort_keys=True, default=str).encode())
    for file in _files(data_path):
        digest.update(f"data {file.relative_to(data_path) if data_path.is_dir() else file.name}\n".encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    for file in _files(model_dir):
        stat = file.stat()
        digest.update(f"model {file.relative_to(model_dir)} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _files(path: Path) -> Iterable[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [path] if path.is_file() else []


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """One training's checkpoints in ``root``: save atomically, load the latest, keep the last two."""

    def __init__(self, root: Path, fingerprint: str, log: Callable[[str], None]) -> None:
        self.root, self.fingerprint, self._log = root, fingerprint, log
        self._kept: list[str] = []  # this training's checkpoints, oldest first

    def clean(self) -> None:
        """Remove what a killed write left behind (never read, so never needed)."""
        for leftover in self.root.glob(".tmp-*"):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()

    def load(self) -> TrainState | None:
        """The state of ``latest.json``'s checkpoint if it belongs to this training, else ``None``."""
        latest = self.root / LATEST
        if not latest.exists():
            return None
        try:
            pointer = json.loads(latest.read_text())
            if pointer.get("fingerprint") != self.fingerprint:
                self._log(f"checkpoint: ignoring {pointer.get('path')} in {self.root}: it was made for "
                          f"other parameters, data or base model (fingerprint {pointer.get('fingerprint')}, "
                          f"this training {self.fingerprint}); starting from step 0")
                return None
            state = self._read(self.root / str(pointer["path"]))
        except Exception as exc:  # safetensors, torch.load, JSON: an unreadable checkpoint is no checkpoint
            self._log(f"checkpoint: cannot read the latest checkpoint in {self.root} ({exc}); "
                      "starting from step 0")
            return None
        self._kept = [str(pointer["path"])]
        return state

    def _read(self, directory: Path) -> TrainState:
        meta = json.loads((directory / "trainer_state.json").read_text())
        if meta.get("fingerprint") != self.fingerprint or meta.get("format") != FORMAT:
            raise ValueError(f"{directory}/trainer_state.json does not match latest.json")
        blob = torch.load(directory / "state.pt", map_location="cpu", weights_only=True)
        return TrainState(
            step=int(meta["step"]), total_steps=int(meta["total_steps"]),
            steps_per_epoch=int(meta["steps_per_epoch"]), seed=int(meta["seed"]),
            loss=float(meta["loss"]) if meta["loss"] is not None else float("nan"),
            order=blob["order"], weights=load_file(directory / "weights.safetensors"),
            optimizer=blob["optimizer"], scheduler=blob["scheduler"], rng=blob["rng"],
            notes={k: float(v) for k, v in meta.get("notes", {}).items()})

    def save(self, state: TrainState) -> Path:
        """Write ``state`` as ``step-NNNNNNNN``, point ``latest.json`` at it, keep the last two."""
        name = _step_name(state.step)
        temporary = self.root / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        self._write_files(temporary, state)
        final = self.root / name
        if final.exists():  # a leftover of another training (ours are never rewritten)
            shutil.rmtree(final)
        os.rename(temporary, final)
        _fsync(self.root)
        self._point_at(name, state)
        self._kept = [n for n in self._kept if n != name] + [name]
        self._prune()
        return final

    def _write_files(self, directory: Path, state: TrainState) -> None:
        weights = {k: v.detach().to("cpu").contiguous() for k, v in state.weights.items()}
        save_file(weights, directory / "weights.safetensors")
        with (directory / "state.pt").open("wb") as handle:
            torch.save({"optimizer": state.optimizer, "scheduler": state.scheduler, "rng": state.rng,
                        "order": state.order}, handle)
        meta = {"format": FORMAT, "step": state.step, "total_steps": state.total_steps,
                "steps_per_epoch": state.steps_per_epoch, "epoch": round(state.epoch, 6),
                **state.position(), "loss": _finite(state.loss), "time": round(time.time(), 3),
                "fingerprint": self.fingerprint, "notes": state.notes}
        (directory / "trainer_state.json").write_text(json.dumps(meta, indent=2) + "\n")
        for file in directory.iterdir():
            _fsync(file)
        _fsync(directory)

    def _point_at(self, name: str, state: TrainState) -> None:
        pointer = {"step": state.step, "epoch": round(state.epoch, 6), "path": name,
                   "loss": _finite(state.loss), "time": round(time.time(), 3),
                   "fingerprint": self.fingerprint}
        temporary = self.root / f".tmp-{LATEST}-{os.getpid()}"
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(pointer) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.root / LATEST)
        _fsync(self.root)

    def _prune(self) -> None:
        """Delete every ``step-*`` but this training's last :data:`KEEP` (others' included)."""
        keep = set(self._kept[-KEEP:])
        self._kept = self._kept[-KEEP:]
        for directory in self.root.glob("step-*"):
            if directory.name not in keep:
                shutil.rmtree(directory, ignore_errors=True)


def _finite(value: float) -> float | None:
    return round(float(value), 6) if value == value and abs(value) != float("inf") else None


@dataclass(frozen=True)
class Policy:
    """When a checkpoint is due: every ``steps`` steps or ``seconds`` seconds, whichever first.

    ``budget`` (the default intervals): a due checkpoint is also deferred until
    the training time since the last one is long enough for that checkpoint's
    cost to stay within ``budget`` of the total (a big model's checkpoint takes
    longer to write). ``None``: the intervals were set explicitly and are kept.
    """

    steps: int = 200
    seconds: float = 60.0
    budget: float | None = 0.05

    @property
    def enabled(self) -> bool:
        return self.steps > 0 or self.seconds > 0

    def due(self, steps_since: int, seconds_since: float, last_cost: float) -> bool:
        by_steps = self.steps > 0 and steps_since >= self.steps
        by_time = self.seconds > 0 and seconds_since >= self.seconds
        if not (by_steps or by_time):
            return False
        return self.budget is None or last_cost <= self.budget * (seconds_since + last_cost)


class Checkpointing:
    """What the training loop calls after each step: saves when :class:`Policy` says so, and at the end."""

    def __init__(self, store: CheckpointStore, policy: Policy, log: Callable[[str], None],
                 clock: Clock = time.monotonic) -> None:
        self.store, self.policy, self._log, self._clock = store, policy, log, clock
        self.latest_step: int | None = None
        self.notes: dict[str, float] = {}  # saved with every checkpoint (the loss before training)
        self._since_step, self._since_time, self._last_cost = 0, clock(), 0.0
        self.seconds_spent = 0.0

    def resumed(self, step: int) -> None:
        self.latest_step, self._since_step, self._since_time = step, step, self._clock()

    def after_step(self, step: int, final: bool, state: Callable[[], TrainState]) -> int | None:
        """Save if due (or ``final``); returns the latest checkpoint's step, if any."""
        now = self._clock()
        due = self.policy.due(step - self._since_step, now - self._since_time, self._last_cost)
        if self.policy.enabled and step != self.latest_step and (final or due):
            snapshot = state()
            snapshot.notes.update(self.notes)
            try:
                path = self.store.save(snapshot)
            except OSError as exc:  # a full or read-only volume costs the checkpoint, not the training
                self._log(f"checkpoint: could not save step {step} in {self.store.root}: {exc}; "
                          "training goes on without it")
                self.store.clean()
                self._since_step, self._since_time = step, self._clock()
                return self.latest_step
            done = self._clock()
            self._last_cost = done - now
            self.seconds_spent += self._last_cost
            self.latest_step, self._since_step, self._since_time = step, step, done
            self._log(f"checkpoint: step {step} saved to {path} in {self._last_cost:.2f}s")
        return self.latest_step
