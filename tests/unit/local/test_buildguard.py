"""Issue 25 item 1: the executor's last look before a source build (local.buildguard)."""

from __future__ import annotations

from pathlib import Path

from substratus.local.buildguard import refusal
from substratus.runtimes.base import ImageInfo
from substratus.runtimes.fake import FakeRuntime


def base(runtime: FakeRuntime, ref: str, triggers: list[str]) -> None:
    runtime.image_store[ref] = ImageInfo(ref=ref, id="1" * 64, workdir="/", env={}, labels={}, entrypoint=[], cmd=[],
                                         onbuild=triggers)


def test_a_base_images_onbuild_trigger_is_checked_before_it_runs(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    base(runtime, "localhost/evil:1", ["RUN --mount=type=bind,from=link,source=/link,target=/x,rw true"])
    (tmp_path / "Dockerfile").write_text("FROM localhost/evil:1\nRUN true\n")
    why = refusal(runtime, tmp_path)
    assert why is not None and "localhost/evil:1" in why and "ONBUILD" in why and "from=" in why


def test_harmless_triggers_and_plain_sources_are_built(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    base(runtime, "localhost/ok:1", ["RUN echo hello"])
    (tmp_path / "Dockerfile").write_text("FROM localhost/ok:1\nFROM localhost/absent:2\nRUN true\n")
    assert refusal(runtime, tmp_path) is None


def test_a_snapshot_that_was_never_checked_is_refused_at_build(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM a\nRUN --mount=type=cache,target=/c true\n")
    why = refusal(FakeRuntime(), tmp_path)
    assert why is not None and "type=cache" in why
