"""The one exception tree of the project.

Every error a person can see derives from `SubstratusError` and carries a
`hint` (the next thing to do). The HTTP API maps these to status codes in one
table (`substratus.api.errors`), and the CLI turns them back into the same
message.

Each error also knows whether it is `temporary`: whether doing the same thing
again later may succeed (kopf's TemporaryError, retried with backoff) or not
(kopf's PermanentError, recorded until the spec changes). The executors of both
backends follow it (`reconcile.outcomes.temporary`). Errors from a runtime are
classified once, where the engine's or the API server's words are read (the
engine runtime, the Kubernetes client, the fake), never by matching text above.

    SubstratusError                       temporary?
    ├── ValidationError                   no   bad manifest: names the field path (HTTP 422)
    ├── NotFoundError                     no   object does not exist (HTTP 404)
    ├── ConflictError                     no   object exists in an incompatible state (HTTP 409)
    ├── Unauthorized                      no   credentials missing or refused: the API's token, the
    │                                          cluster's RBAC (HTTP 401)
    ├── SourceError                       no   git clone / checkout / path / Dockerfile problems (HTTP 422)
    ├── EngineError                       yes  the container engine or cluster failed or is missing (HTTP 503)
    │   ├── CommandError                  yes  one engine command failed: argv, exit code, stderr tail
    │   ├── NameInUse                     yes  a container of that name exists (look again, then retry)
    │   ├── PortInUse                     yes  the host port to publish on is taken (choose another)
    │   ├── ImageMissing                  yes  the image to run is not in the engine's store (build it again)
    │   └── AlreadyExists                 yes  the cluster still has an object of that name (it is going away)
    ├── BuildError                        no   an image build failed (log tail attached)
    └── ControlPlaneError                 no   the control plane is unreachable / answered badly
"""

from __future__ import annotations

from collections.abc import Sequence


class SubstratusError(Exception):
    """Base of every error this project raises on purpose."""

    temporary = False  # doing the same again later may succeed (see the module docstring)

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


class Unauthorized(SubstratusError):
    """Credentials were missing or refused: a request to the API without its token, or the cluster
    refusing the operator's (or your) request for lack of permission."""


class SourceError(SubstratusError):
    """A source (git or local dir) could not be fetched or is not a buildable contract source."""

    def __init__(self, message: str, *, field: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.field = field


class EngineError(SubstratusError):
    """The container engine (or the cluster) is missing or misbehaving: trying again later may work."""

    temporary = True


class CommandError(EngineError):
    """One external command failed. Temporary unless whoever read the engine's words knows better
    (`runtimes.engine.classify`: the engine refused the container's configuration)."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, *, hint: str = "",
                 temporary: bool = True) -> None:
        self.temporary = temporary
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = tail(stderr, 20)
        super().__init__(
            f"command failed (exit {returncode}): {' '.join(self.argv[:6])}{' ...' if len(self.argv) > 6 else ''}\n"
            f"{self.stderr_tail}",
            hint=hint,
        )


class NameInUse(EngineError):
    """A container of that name exists already (one the caller did not know of, or one going away)."""


class PortInUse(EngineError):
    """The host port a container was to be published on is taken."""


class ImageMissing(EngineError):
    """The image to run is not in the engine's store (and could not be pulled)."""


class AlreadyExists(EngineError):
    """The cluster has an object of that name already (often one still being deleted)."""


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
