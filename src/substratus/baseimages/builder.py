"""Carries out `sub images build` through the engine in use (podman or docker).

Observe (images, labels, root, torch wheel), plan one image, build it, then the
next: ml-base's hash includes the python-base it is FROM, so a rebuilt
python-base rebuilds ml-base. Every step reports what it did (`pulled`,
`built`, `unchanged`) and how long it took; build logs go to `log` (stderr).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

from substratus import bundle
from substratus.baseimages import context, rootfs
from substratus.baseimages.decide import (
    BASE_LABEL,
    HASH_LABEL,
    Keep,
    MlBaseStep,
    Observed,
    PythonBaseStep,
    Settings,
    Step,
    legacy_builder_refusal,
    plan_ml_base,
    plan_python_base,
    torch_note,
)
from substratus.errors import BuildError, EngineError, SubstratusError
from substratus.runtimes.base import BuildSpec, ImageInfo, LogSink

_BUILDKIT_MISSING = ("requires BuildKit", "--mount option requires", "unknown flag: mount")


class ImageEngine(Protocol):
    """The engine verbs a base-image build uses (EngineRuntime has them; tests fake them)."""

    engine: str

    def build(self, spec: BuildSpec, log: LogSink) -> Optional[str]: ...
    def image_info(self, ref: str) -> Optional[ImageInfo]: ...
    def pull(self, ref: str, timeout: float) -> bool: ...
    def tag(self, source: str, target: str) -> None: ...
    def import_rootfs(self, rootfs: Path, ref: str, changes: list[str]) -> None: ...
    def server_components(self) -> list[str]: ...


@dataclass(frozen=True)
class Outcome:
    image: str
    result: str  # pulled | built | unchanged
    detail: str
    seconds: float


def ml_hash(ml_dir: Path, python_base_id: str) -> str:
    """The label ml-base carries: its build files and the python-base image it is built FROM."""
    both = f"{bundle.content_hash(ml_dir)}:{python_base_id}".encode()
    return hashlib.sha256(both).hexdigest()[:16]


def explain_build_failure(err: BuildError, image: str, engine: str) -> SubstratusError:
    """Name the cause when the engine cannot do what the Dockerfile asks; else the error as it is."""
    if any(marker in err.log_tail for marker in _BUILDKIT_MISSING):
        return BuildError(
            f"{engine} cannot build {image}: its Dockerfile bind-mounts the torch wheel with `RUN --mount`, "
            "which Docker's legacy builder lacks", log_tail=err.log_tail,
            hint="build with BuildKit (leave DOCKER_BUILDKIT unset, or set it to 1; Docker 23+ does by default), "
                 "or with podman (SUBSTRATUS_ENGINE=podman)")
    return BuildError(f"{image}: {err.message}\n{err.log_tail}", log_tail=err.log_tail,
                      hint="the build log is above; fix the cause and rerun `sub images build`")


class Builder:
    def __init__(self, runtime: ImageEngine, settings: Settings, *, log: LogSink, is_root: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.settings = settings
        self.log = log
        self.is_root = is_root
        self.clock = clock

    def run(self) -> list[Outcome]:
        outcomes = []
        if self.settings.only in (None, "python-base"):
            outcomes.append(self._timed(plan_python_base(self.settings, self.observe())))
        if self.settings.only in (None, "ml-base"):
            base = self.runtime.image_info(self.settings.python_base)
            if base is None:
                raise EngineError(f"{self.settings.python_base} does not exist; ml-base is built FROM it",
                                  hint="run `sub images build` (without --only ml-base)")
            want = ml_hash(bundle.path("images/ml"), base.id)
            outcomes.append(self._timed(plan_ml_base(self.settings, self.observe(), want)))
        return outcomes

    def observe(self) -> Observed:
        ml = self.runtime.image_info(self.settings.ml_base)
        wheel = context.find_torch_wheel(self.settings.wheel_dirs, self.settings.torch_version)
        return Observed(python_base_present=self.runtime.image_info(self.settings.python_base) is not None,
                        rootfs_present=self.runtime.image_info(self.settings.rootfs) is not None,
                        ml_base_hash=(ml.labels.get(HASH_LABEL) if ml else None),
                        is_root=self.is_root, torch_wheel=wheel)

    def _timed(self, step: Step) -> Outcome:
        started = self.clock()
        result, image, detail = self._do(step)
        return Outcome(image=image, result=result, detail=detail, seconds=self.clock() - started)

    def _do(self, step: Step) -> tuple[str, str, str]:
        if isinstance(step, Keep):
            self.log(f"[{step.image}] unchanged: {step.why}")
            return "unchanged", step.image, step.why
        if isinstance(step, PythonBaseStep):
            return self._python_base(step)
        return self._ml_base(step)

    def _python_base(self, step: PythonBaseStep) -> tuple[str, str, str]:
        s = self.settings
        if step.try_pull:
            self.log(f"[python-base] trying to pull {s.public_python} (up to {s.pull_timeout:.0f}s)")
            if self.runtime.pull(s.public_python, timeout=s.pull_timeout):
                self.runtime.tag(s.public_python, s.python_base)
                return "pulled", s.python_base, f"{s.public_python}, tagged"
            self.log(f"[python-base] cannot pull {s.public_python}; making it from Debian packages")
        if step.debootstrap:
            self._make_rootfs()
        with tempfile.TemporaryDirectory(prefix="substratus-python-base-") as work:
            ctx = context.python_base_context(Path(work), s.ca_bundle)
            self._build(BuildSpec(context=ctx, tag=s.python_base, labels={BASE_LABEL: "debootstrap"},
                                  build_args={"ROOTFS_IMAGE": s.rootfs}))
        ca = f", CA bundle {s.ca_bundle}" if s.ca_bundle else ""
        return "built", s.python_base, f"from Debian bookworm (debootstrap){ca}"

    def _make_rootfs(self) -> None:
        s = self.settings
        rootfs.check_can_debootstrap(self.is_root, s.python_base, self.runtime.engine)
        with tempfile.TemporaryDirectory(prefix="substratus-rootfs-", dir="/var/tmp") as work:
            target = Path(work) / "rootfs"
            self.log(f"[python-base] debootstrap bookworm from {s.mirror} (about a minute)")
            rootfs.debootstrap(target, s.mirror, self.log)
            self.log(f"[python-base] importing the root filesystem as {s.rootfs}")
            self.runtime.import_rootfs(target, s.rootfs, ['CMD ["/bin/bash"]'])

    def _ml_base(self, step: MlBaseStep) -> tuple[str, str, str]:
        s = self.settings
        refusal = legacy_builder_refusal(self.runtime.engine, s.docker_buildkit,
                                         self.runtime.server_components() if s.docker_buildkit else [])
        if refusal:
            raise EngineError(refusal, hint="unset DOCKER_BUILDKIT (Docker 23+ builds with BuildKit by default) "
                                            "or set it to 1, or use podman (SUBSTRATUS_ENGINE=podman)")
        self.log(f"[ml-base] {torch_note(s, step.torch_wheel)}")
        with tempfile.TemporaryDirectory(prefix="substratus-ml-base-") as work:
            ctx = context.ml_base_context(Path(work), s.ca_bundle, step.torch_wheel)
            self._build(BuildSpec(context=ctx, tag=s.ml_base, labels={HASH_LABEL: step.source_hash},
                                  build_args={"PYTHON_IMAGE": s.python_base, "TORCH_VERSION": s.torch_version,
                                              "TORCH_INDEX_URL": s.torch_index_url,
                                              "TORCH_WHEEL": step.torch_wheel.name if step.torch_wheel else ""}))
        torch = f"torch from {step.torch_wheel.name}" if step.torch_wheel else f"torch from {s.torch_index_url}"
        return "built", s.ml_base, f"{torch}, build files {step.source_hash}"

    def _build(self, spec: BuildSpec) -> None:
        self.log(f"[{spec.tag}] {self.runtime.engine} build")
        try:
            self.runtime.build(spec, self.log)
        except BuildError as err:
            raise explain_build_failure(err, spec.tag, self.runtime.engine) from err

