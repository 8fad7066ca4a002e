"""The runtime contract suite (tests/runtime_contract.py) against the real engine (podman or docker):
the same behaviours the unit tier checks on the fake, so if the two ever disagree one of these
modules fails. Plus what only a real engine can show (issue 7, holes 3 and 8): hardening seen
from inside the container, limits applied by the kernel, and a secret that reaches the container
but no process's argv."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from substratus.errors import ImageMissing, PortInUse
from substratus.resources.limits import RunLimits
from substratus.runtimes.base import BuildSpec, RunSpec
from substratus.runtimes.engine import PIDS_LIMIT, EngineRuntime
from tests.runtime_contract import LABELS, RuntimeContract, unique

BUSYBOX_DOCKERFILE = ('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
                      "ENV PATH=/bin\nRUN mkdir -p /tmp /model && chmod 1777 /tmp\nWORKDIR /model\n")
# CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID: bits 0, 1, 3, 5, 6, 7
KEPT_MASK = 0b11101011


def processes_with(*words: str) -> list[list[str]]:
    """argv of every process on the machine whose command line holds all `words`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv if a]
        if all(any(w in a for a in text) for w in words):
            found.append(text)
    return found


@pytest.fixture(scope="module")
def busybox_context(tmp_path_factory: pytest.TempPathFactory, busybox: Path) -> Path:
    d = tmp_path_factory.mktemp("bb")
    shutil.copy2(busybox, d / "busybox")
    (d / "Dockerfile").write_text(BUSYBOX_DOCKERFILE)
    return d


class TestEngineRuntime(RuntimeContract):
    @pytest.fixture
    def image_dir(self, busybox_context: Path) -> Path:
        return busybox_context

    @pytest.fixture
    def open_follows(self, runtime: EngineRuntime) -> Callable[[str], int]:
        def count(name: str) -> int:
            deadline = time.monotonic() + 5  # the kill is sent at once; the exit takes a moment
            while processes_with(runtime.engine, "logs", name) and time.monotonic() < deadline:
                time.sleep(0.1)
            return len(processes_with(runtime.engine, "logs", name))

        return count


@pytest.fixture(scope="module")
def bb_image(runtime: EngineRuntime, busybox_context: Path) -> Iterator[str]:
    tag = f"localhost/substratus/trust-bb:{uuid.uuid4().hex[:8]}"
    runtime.build(BuildSpec(context=busybox_context, tag=tag, labels={"substratus.ai/managed": "true"}),
                  lambda _: None)
    yield tag
    runtime.remove_image(tag)


def run_and_read(runtime: EngineRuntime, spec: RunSpec) -> str:
    done = runtime.run_once(spec, timeout=60)
    assert done.exit_code == 0, done.output
    return done.output


def test_containers_run_without_new_privileges_and_with_few_capabilities(runtime: EngineRuntime,
                                                                         bb_image: str) -> None:
    out = run_and_read(runtime, RunSpec(name=unique("sub-trust"), image=bb_image, labels=LABELS,
                                        command=["sh", "-c", "grep -E 'NoNewPrivs|CapEff|CapBnd' /proc/self/status"]))
    fields = dict(line.split(":\t") for line in out.strip().splitlines())
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapEff"], 16) == KEPT_MASK and int(fields["CapBnd"], 16) == KEPT_MASK


def test_pids_and_resource_limits_are_applied_by_the_kernel(runtime: EngineRuntime, bb_image: str) -> None:
    script = ("cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory.max "
              "/sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; true")
    spec = RunSpec(name=unique("sub-trust"), image=bb_image, labels=LABELS, command=["sh", "-c", script],
                   limits=RunLimits(cpus=0.5, memory=64 * 2**20))
    values = run_and_read(runtime, spec).split()
    assert str(PIDS_LIMIT) in values and str(64 * 2**20) in values, values


def test_a_secret_reaches_the_container_but_no_argv(runtime: EngineRuntime, bb_image: str) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    name = unique("sub-trust")
    spec = RunSpec(name=name, image=bb_image, labels=LABELS, secret_env={"JUPYTER_TOKEN": secret},
                   command=["sh", "-c", 'echo "token=$JUPYTER_TOKEN"; exec sleep 60'])
    runtime.run(spec)
    try:
        deadline = time.monotonic() + 20
        while f"token={secret}" not in "\n".join(runtime.logs(name)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"token={secret}" in "\n".join(runtime.logs(name))
        assert processes_with(secret) == [], "the secret is on some process's command line"
    finally:
        runtime.remove(name)


def test_an_image_the_engine_lacks_raises_image_missing(runtime: EngineRuntime) -> None:
    """The engine tries a registry for it and fails (none is reachable here): classified by the runtime."""
    missing = f"localhost/substratus/does-not-exist:{uuid.uuid4().hex[:8]}"
    name = unique("sub-missing")
    try:
        with pytest.raises(ImageMissing) as run:
            runtime.run(RunSpec(name=name, image=missing, labels=LABELS, command=["true"]))
        assert run.value.temporary and missing in run.value.message
        with pytest.raises(ImageMissing):
            runtime.run_once(RunSpec(name=unique("sub-missing"), image=missing, labels=LABELS, command=["true"]),
                             timeout=120)
    finally:
        runtime.remove(name)


def test_a_taken_host_port_raises_port_in_use(runtime: EngineRuntime, bb_image: str) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = int(held.getsockname()[1])
        name = unique("sub-port")
        try:
            with pytest.raises(PortInUse) as taken:
                runtime.run(RunSpec(name=name, image=bb_image, labels=LABELS, ports={8000: port},
                                    command=["sleep", "60"]))
            assert taken.value.temporary and str(port) in taken.value.message
        finally:
            runtime.remove(name)  # podman keeps the created container


def test_background_work_runs_at_a_low_cpu_priority_and_does_the_same(runtime: EngineRuntime, bb_image: str) -> None:
    """A contract probe beside a build runs under `nice`: the container's processes inherit it."""
    def niceness(rt: EngineRuntime) -> int:
        out = run_and_read(rt, RunSpec(name=unique("sub-nice"), image=bb_image, labels=LABELS,
                                       command=["sh", "-c", "cat /proc/self/stat"]))
        return int(out.rsplit(")", 1)[1].split()[16])  # field 19: nice

    assert niceness(runtime.background()) == niceness(runtime) + 10
    name = unique("sub-nice")
    runtime.run(RunSpec(name=name, image=bb_image, labels=LABELS, command=["sh", "-c", "echo done"]))
    deadline = time.monotonic() + 20
    while "done" not in "\n".join(runtime.background().logs(name)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(runtime.background().logs(name)) == ["done"]
    assert runtime.background().remove(name) and runtime.container(name) is None
