"""One behavioural suite for every Runtime: the fake (unit tier, tests/unit/test_runtime_fake.py)
and podman/docker (integration tier, tests/integration/test_runtime_engine.py).

Each test module that imports `RuntimeContract` provides a `runtime` fixture,
an `image_dir` fixture (a build context whose Dockerfile sets WORKDIR /model
and whose image can run `sh -c` and `sleep`) and `open_follows`, the number of
log follows the runtime still holds open for a container (engine: `logs`
processes; fake: its counter).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from substratus.errors import BuildError, EngineError, NameInUse
from substratus.runtimes.base import BuildSpec, Runtime, RunSpec

LABELS = {"substratus.ai/managed": "true", "substratus.ai/role": "contract-test"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class RuntimeContract:
    @pytest.fixture
    def image(self, runtime: Runtime, image_dir: Path) -> str:
        tag = f"localhost/substratus/contract-test:{uuid.uuid4().hex[:8]}"
        lines: list[str] = []
        runtime.build(BuildSpec(context=image_dir, tag=tag, labels={"substratus.ai/managed": "true"}), lines.append)
        assert lines, "build should stream log lines"
        yield tag
        runtime.remove_image(tag)

    def test_built_image_reports_its_workdir_and_labels(self, runtime: Runtime, image: str) -> None:
        info = runtime.image_info(image)
        assert info is not None
        assert info.workdir == "/model"
        assert info.labels.get("substratus.ai/managed") == "true"

    def test_labels_with_quotes_backslashes_dollars_and_unicode_survive_a_build(self, runtime: Runtime,
                                                                                tmp_path: Path) -> None:
        (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY f /f\n")
        (tmp_path / "f").write_text("x\n")
        labels = {"substratus.ai/managed": "true", "ai.substratus.training.params": '{"lr": "1e-3", "p": "$HOME"}',
                  "org.opencontainers.image.source": "file:///a b/c\\d", "note": "ünï cödé"}
        tag = f"localhost/substratus/contract-labels:{uuid.uuid4().hex[:8]}"
        runtime.build(BuildSpec(context=tmp_path, tag=tag, labels=labels), lambda _: None)
        try:
            info = runtime.image_info(tag)
            assert info is not None
            assert {k: info.labels.get(k) for k in labels} == labels
        finally:
            runtime.remove_image(tag)

    def test_missing_image_is_none(self, runtime: Runtime) -> None:
        assert runtime.image_info("localhost/substratus/does-not-exist:nope") is None

    def test_failed_build_raises_build_error_with_log_tail(self, runtime: Runtime, tmp_path: Path) -> None:
        (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY missing-file /x\n")
        with pytest.raises(BuildError) as e:
            runtime.build(BuildSpec(context=tmp_path, tag="localhost/substratus/contract-fail:x"), lambda _: None)
        assert e.value.log_tail

    def test_run_find_by_label_and_remove(self, runtime: Runtime, image: str) -> None:
        name = unique("sub-contract")
        labels = {**LABELS, "substratus.ai/name": name}
        state = runtime.run(RunSpec(name=name, image=image, command=["sleep", "60"], labels=labels))
        try:
            assert state.running and state.name == name
            found = runtime.containers({"substratus.ai/name": name})
            assert [c.name for c in found] == [name]
            assert found[0].labels["substratus.ai/role"] == "contract-test"
            assert runtime.containers({"substratus.ai/name": name + "-other"}) == []
        finally:
            assert runtime.remove(name) is True
        assert runtime.container(name) is None
        assert runtime.remove(name) is False

    def test_a_second_container_of_one_name_raises_name_in_use(self, runtime: Runtime, image: str) -> None:
        """Classified where the engine's words are read: callers act on the type (look again, retry)."""
        name = unique("sub-contract")
        runtime.run(RunSpec(name=name, image=image, command=["sleep", "60"], labels=LABELS))
        try:
            with pytest.raises(NameInUse) as e:
                runtime.run(RunSpec(name=name, image=image, command=["sleep", "60"], labels=LABELS))
            assert e.value.temporary
        finally:
            runtime.remove(name)

    def test_stop_leaves_an_exited_container(self, runtime: Runtime, image: str) -> None:
        name = unique("sub-contract")
        runtime.run(RunSpec(name=name, image=image, command=["sleep", "60"], labels=LABELS))
        try:
            assert runtime.stop(name, timeout=1)
            state = runtime.container(name)
            assert state is not None and not state.running and state.exit_code is not None
        finally:
            runtime.remove(name)

    # -- stream_logs: the async verb the API's `logs -f` uses ----------------------------------
    PRINTS = ["sh", "-c", "echo hello-contract; exec sleep 60"]

    def started(self, runtime: Runtime, image: str) -> str:
        name = unique("sub-contract")
        runtime.run(RunSpec(name=name, image=image, command=self.PRINTS, labels=LABELS))
        deadline = time.monotonic() + 20
        while "hello-contract" not in "\n".join(runtime.logs(name)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return name

    def test_stream_logs_without_follow_returns_the_output(self, runtime: Runtime, image: str) -> None:
        name = self.started(runtime, image)
        try:
            async def read() -> list[str]:
                return [line async for line in runtime.stream_logs(name, tail=10)]

            assert "hello-contract" in asyncio.run(asyncio.wait_for(read(), 30))
        finally:
            runtime.remove(name)

    def test_a_follow_waits_for_lines_and_closing_it_ends_it(self, runtime: Runtime, image: str,
                                                            open_follows: Callable[[str], int]) -> None:
        name = self.started(runtime, image)
        try:
            async def follow() -> tuple[str, bool, int]:
                lines = runtime.stream_logs(name, follow=True)
                first = await asyncio.wait_for(lines.__anext__(), 30)
                try:
                    await asyncio.wait_for(lines.__anext__(), 1.5)
                    still_waiting = False
                except asyncio.TimeoutError:  # cancelling the read closes the iterator, as a disconnect does
                    still_waiting = True
                await lines.aclose()
                return first, still_waiting, open_follows(name)

            first, still_waiting, left_open = asyncio.run(follow())
            assert first == "hello-contract" and still_waiting
            assert left_open == 0, "closing a follow must end it at once"
        finally:
            runtime.remove(name)

    def test_a_follow_ends_when_its_container_goes(self, runtime: Runtime, image: str) -> None:
        name = self.started(runtime, image)

        async def follow() -> list[str]:
            async def drain() -> list[str]:
                return [line async for line in runtime.stream_logs(name, follow=True)]

            task = asyncio.ensure_future(drain())
            await asyncio.sleep(0.5)
            await asyncio.to_thread(runtime.remove, name)
            return await asyncio.wait_for(task, 30)

        assert "hello-contract" in asyncio.run(follow())
    def test_images_lists_what_was_built(self, runtime: Runtime, image: str) -> None:
        info = runtime.image_info(image)
        assert info is not None and runtime.images().get(image) == info.id

    def test_events_follow_a_container_from_start_to_removal(self, runtime: Runtime, image: str) -> None:
        name = unique("sub-contract-ev")
        stream = runtime.events({"substratus.ai/name": name})
        seen: list[tuple[str, str]] = []
        reader = threading.Thread(target=lambda: seen.extend((e.action, e.name) for e in stream
                                                            if e.type == "container"), daemon=True)
        reader.start()
        time.sleep(1.0)  # an engine's event stream starts from when it subscribed
        labels = {**LABELS, "substratus.ai/name": name}
        runtime.run(RunSpec(name=name, image=image, command=["sleep", "60"], labels=labels))
        runtime.stop(name, timeout=1)
        runtime.remove(name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not {"start", "died", "remove"} <= {a for a, n in seen if n == name}:
            time.sleep(0.1)
        stream.close()
        reader.join(10)
        assert {"start", "died", "remove"} <= {a for a, n in seen if n == name}, seen
        assert all(n == name for _, n in seen), "the label filter lets only this container's events through"


    def test_died_events_carry_the_exit_code_zero_included(self, runtime: Runtime, image: str) -> None:
        """The control plane judges a finished job from its died event without inspecting it."""
        names = {unique("sub-contract-ok"): 0, unique("sub-contract-bad"): 3}
        tag = unique("exit")
        stream = runtime.events({"substratus.ai/role": tag})
        codes: dict[str, object] = {}
        reader = threading.Thread(target=lambda: codes.update((e.name, e.exit_code) for e in stream
                                                              if e.type == "container" and e.action == "died"),
                                  daemon=True)
        reader.start()
        time.sleep(1.0)
        try:
            for name, code in names.items():
                runtime.run(RunSpec(name=name, image=image, command=["sh", "-c", f"exit {code}"],
                                    labels={**LABELS, "substratus.ai/role": tag}))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and set(codes) < set(names):
                time.sleep(0.1)
        finally:
            for name in names:
                runtime.remove(name)
            stream.close()
            reader.join(10)
        assert codes == names

    def test_build_returns_the_id_of_the_image_it_made(self, runtime: Runtime, image_dir: Path) -> None:
        tag = f"localhost/substratus/contract-iid:{uuid.uuid4().hex[:8]}"
        built = runtime.build(BuildSpec(context=image_dir, tag=tag, layer_cache=False), lambda _: None)
        try:
            info = runtime.image_info(tag)
            assert info is not None and built == info.id and len(built) == 64
        finally:
            runtime.remove_image(tag)

    def test_events_and_lists_keep_to_every_label_asked_for(self, runtime: Runtime, image: str) -> None:
        """Two containers share one label but not the other: asking for both sees one (engines OR
        label filters on events; a control plane must never act on another's containers)."""
        ours, theirs = unique("sub-contract-ours"), unique("sub-contract-theirs")
        stream = runtime.events({"substratus.ai/managed": "true", "substratus.ai/name": ours})
        seen: list[str] = []
        reader = threading.Thread(target=lambda: seen.extend(e.name for e in stream if e.type == "container"),
                                  daemon=True)
        reader.start()
        time.sleep(1.0)
        for name in (theirs, ours):
            runtime.run(RunSpec(name=name, image=image, command=["sleep", "60"],
                                labels={**LABELS, "substratus.ai/name": name}))
        try:
            listed = runtime.containers({"substratus.ai/managed": "true", "substratus.ai/name": ours})
            assert [c.name for c in listed] == [ours]
        finally:
            runtime.remove(theirs)
            runtime.remove(ours)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ours not in seen:
            time.sleep(0.1)
        stream.close()
        reader.join(10)
        assert ours in seen and theirs not in seen, seen

    def test_exec_runs_in_the_workdir_feeds_stdin_and_returns_exit_code_and_output(self, runtime: Runtime,
                                                                                    image: str) -> None:
        name = unique("sub-contract")
        runtime.run(RunSpec(name=name, image=image, command=["sleep", "60"], labels=LABELS))
        try:
            wrote = runtime.exec(name, ["sh", "-c", "mkdir -p sub && cat > sub/note.txt && echo done; exit 3"],
                                 stdin=b"hello\n", workdir="/model")
            assert wrote.exit_code == 3 and wrote.stdout == b"done\n"
            read = runtime.exec(name, ["cat", "sub/note.txt"], workdir="/model")
            assert (read.exit_code, read.stdout) == (0, b"hello\n"), "the file stays in the container"
            missing = runtime.exec(name, ["cat", "no-such-file"], workdir="/model")
            assert missing.exit_code != 0 and "no-such-file" in missing.stderr
        finally:
            runtime.remove(name)

    def test_exec_in_a_stopped_container_raises_engine_error(self, runtime: Runtime, image: str) -> None:
        name = unique("sub-contract")
        runtime.run(RunSpec(name=name, image=image, command=["sleep", "60"], labels=LABELS))
        try:
            runtime.stop(name, timeout=1)
            with pytest.raises(EngineError):
                runtime.exec(name, ["true"])
        finally:
            runtime.remove(name)
