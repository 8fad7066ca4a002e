"""The one exception tree of the project.

Every error a person can see derives from `SubstratusError` and carries a
`hint` (the next thing to do). The HTTP API maps these to status codes in one
table (`substratus.api.errors`), and the CLI turns them back into the same
message.

    SubstratusError
    ├── ValidationError          bad manifest: names the field path (HTTP 422)
    ├── NotFoundError            object does not exist (HTTP 404)
    ├── ConflictError            object exists in an incompatible state (HTTP 409)
    ├── SourceError              git clone / checkout / path / Dockerfile problems (HTTP 422)
    ├── EngineError              the container engine failed or is missing (HTTP 503)
    │   └── CommandError         one engine command failed: argv, exit code, stderr tail
    ├── BuildError               an image build failed (log tail attached)
    └── ControlPlaneError        the control plane is unreachable / answered badly
"""

from __future__ import annotations

from collections.abc import Sequence


class SubstratusError(Exception):
    """Base of every error this project raises on purpose."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ValidationError(SubstratusError):
    """A manifest or request is invalid. `problems` holds (field path, message) pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]], *, source: str = "", hint: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        lines = [f"{prefix}{path}: {msg}" if path else f"{prefix}{msg}" for path, msg in self.problems]
        super().__init__("\n".join(lines) or "invalid input", hint=hint)


class NotFoundError(SubstratusError):
    """The named object does not exist."""


class ConflictError(SubstratusError):
    """The request conflicts with the current state."""


class SourceError(SubstratusError):
    """A source (git or local dir) could not be fetched or is not a buildable contract source."""

    def __init__(self, message: str, *, field: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.field = field


class EngineError(SubstratusError):
    """The container engine is missing or misbehaving."""


class CommandError(EngineError):
    """One external command failed."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, *, hint: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = tail(stderr, 20)
        super().__init__(
            f"command failed (exit {returncode}): {' '.join(self.argv[:6])}{' ...' if len(self.argv) > 6 else ''}\n"
            f"{self.stderr_tail}",
            hint=hint,
        )


class BuildError(SubstratusError):
    """An image build failed; `log_tail` holds the end of the build log."""

    def __init__(self, message: str, *, log_tail: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.log_tail = log_tail


class ControlPlaneError(SubstratusError):
    """The control plane could not be reached or answered with an error."""


def tail(text: str, lines: int) -> str:
    """The last `lines` lines of `text` (for error messages and conditions)."""
    parts = text.rstrip("\n").splitlines()
    return "\n".join(parts[-lines:])
