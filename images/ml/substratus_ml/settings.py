"""Server settings, read once at the entry point (flags > environment > defaults)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable or flag has an unusable value; the message names it."""


def _int_env(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: must be a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: must be >= {minimum}")
    return value


@dataclass(frozen=True)
class ServeSettings:
    model_dir: Path = Path("/model/saved")
    model_name: str = "substratus-model"
    max_batch: int = 16
    max_new_tokens: int = 512
    batch_window_ms: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, model_dir: Path | None = None,
                 model_name: str | None = None, max_batch: int | None = None,
                 max_new_tokens: int | None = None) -> "ServeSettings":
        directory = model_dir or Path(env.get("SUBSTRATUS_MODEL_DIR") or cls.model_dir)
        name = model_name or env.get("SUBSTRATUS_MODEL_NAME") or cls.model_name
        batch = max_batch if max_batch is not None else _int_env(
            env, "SUBSTRATUS_MAX_BATCH", cls.max_batch)
        bound = max_new_tokens if max_new_tokens is not None else _int_env(
            env, "SUBSTRATUS_MAX_NEW_TOKENS", cls.max_new_tokens)
        window = _int_env(env, "SUBSTRATUS_BATCH_WINDOW_MS", int(cls.batch_window_ms), minimum=0)
        if batch < 1 or bound < 1:
            raise SettingsError("--max-batch and --max-new-tokens must be >= 1")
        return cls(directory, name, batch, bound, float(window))
