"""Engine errors are classified once, where the engine's words are read (`runtimes.engine.classify`),
into the types the executors act on; nothing above the runtime matches engine text.

The messages are the engines' own: podman 4.3 and docker 28's CLI in front of podman's Docker API
were run on this project's machines (2026-12-07; `tests/engines/test_docker.py` drives that pair),
Docker Engine's wording is quoted from moby's messages as users report them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from substratus.errors import BuildError, CommandError, EngineError, ImageMissing, NameInUse, PortInUse
from substratus.reconcile.outcomes import temporary
from substratus.runtimes.base import BuildSpec, RunSpec
from substratus.runtimes.engine import EngineRuntime, classify

PODMAN_RUN = ["podman", "run", "-d", "--name", "sub-x-server", "--", "localhost/substratus/m:1", "serve.sh"]
DOCKER_RUN = ["docker", "run", "-d", "--name", "sub-x-server", "--", "localhost/substratus/m:1", "serve.sh"]

NAME_IN_USE = {
    "podman": 'Error: creating container storage: the container name "sub-x-server" is already in use by '
              "2c80c8b8c2c3f65ab7d62a33c1a31de88e8f1e9043aa67bf4c5e0606ff32c2c3. You have to remove that container "
              "to be able to reuse that name: that name is already in use",
    "docker-on-podman": 'docker: Error response from daemon: container create: creating container storage: the '
                        'container name "sub-x-server" is already in use by 043a578cf7d7. You have to remove that '
                        "container to be able to reuse that name: that name is already in use\n\n"
                        "Run 'docker run --help' for more information",
    "docker": 'docker: Error response from daemon: Conflict. The container name "/sub-x-server" is already in use '
              'by container "92b3b26333cc105bfee4d6f6b4eddc0a433e774360c1bcbfe797093c6fa531e9". You have to remove '
              "(or rename) that container to be able to reuse that name.\nSee 'docker run --help'.",
}
PORT_IN_USE = {
    "podman": "Error: cannot listen on the TCP port: listen tcp4 127.0.0.1:29411: bind: address already in use",
    "podman-rootless": "Error: rootlessport listen tcp 127.0.0.1:29411: bind: address already in use",
    "docker-on-podman": "docker: Error response from daemon: cannot listen on the TCP port: listen tcp4 "
                        "127.0.0.1:29421: bind: address already in use\n\nRun 'docker run --help' for more information",
    "docker": "docker: Error response from daemon: driver failed programming external connectivity on endpoint "
              "sub-x-server (08bb0bd9684c): Bind for 127.0.0.1:29411 failed: port is already allocated.",
    "docker-userland-proxy": "docker: Error response from daemon: driver failed programming external connectivity "
                             "on endpoint sub-x-server (46ab9155dd1c): Error starting userland proxy: listen tcp4 "
                             "127.0.0.1:29411: bind: address already in use.",
}
IMAGE_MISSING = {
    "podman": "Trying to pull localhost/substratus/m:1...\nError: initializing source docker://localhost/substratus/"
              'm:1: pinging container registry localhost: Get "https://localhost/v2/": dial tcp 127.0.0.1:443: '
              "connect: connection refused",
    "podman-inspect": "Error: inspecting object: localhost/substratus/m:1: image not known",
    "docker-on-podman": "Unable to find image 'localhost/substratus/m:1' locally\ndocker: initializing source "
                        "docker://localhost/substratus/m:1: pinging container registry localhost: Get "
                        '"https://localhost/v2/": dial tcp 127.0.0.1:443: connect: connection refused',
    "docker-on-podman-inspect": "Error response from daemon: failed to find image localhost/substratus/m:1: "
                                "localhost/substratus/m:1: No such image",
    "docker": "Unable to find image 'substratus/m:1' locally\ndocker: Error response from daemon: pull access "
              "denied for substratus/m, repository does not exist or may require 'docker login': denied: requested "
              "access to the resource is denied.",
    "docker-manifest": "docker: Error response from daemon: manifest for substratus/m:1 not found: manifest unknown: "
                       "manifest unknown.",
}
REFUSED = {  # the engine refuses the container as asked: permanent
    "podman-cdi": "Error: unresolvable CDI devices nvidia.com/gpu=all",
    "docker-gpu": 'docker: Error response from daemon: could not select device driver "" with capabilities: [[gpu]].',
    "podman-command": 'Error: runc: runc create failed: unable to start container process: exec: "serve.sh": '
                      "executable file not found in $PATH: OCI runtime attempted to invoke a command that was "
                      "not found",
}
ENGINE_DOWN = {  # the engine cannot be reached: temporary
    "docker": "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
    "podman-remote": "Cannot connect to Podman. Please verify your connection to the Linux system using "
                     "`podman system connection list`, or try `podman machine init` and `podman machine start` to "
                     "manage a new Linux VM\nError: unable to connect to Podman socket: dial unix /run/podman/"
                     "podman.sock: connect: no such file or directory",
}


def argv_for(engine: str) -> list[str]:
    return DOCKER_RUN if engine.startswith("docker") else PODMAN_RUN


@pytest.mark.parametrize("engine", sorted(NAME_IN_USE))
def test_a_name_in_use_is_NameInUse_with_the_command_as_its_cause(engine: str) -> None:
    err = classify(argv_for(engine), 125, NAME_IN_USE[engine])
    assert isinstance(err, NameInUse) and temporary(err)
    assert "sub-x-server" in err.message and "already in use" in err.message and "--help" not in err.message
    assert isinstance(err.__cause__, CommandError) and err.__cause__.returncode == 125
    assert err.__cause__.argv == argv_for(engine)


@pytest.mark.parametrize("engine", sorted(PORT_IN_USE))
def test_a_taken_host_port_is_PortInUse(engine: str) -> None:
    err = classify(argv_for(engine), 126, PORT_IN_USE[engine])
    assert isinstance(err, PortInUse) and not isinstance(err, NameInUse) and temporary(err)
    assert "29411" in err.message or "29421" in err.message  # the engine's own line, not docker's usage hint


@pytest.mark.parametrize("engine", sorted(IMAGE_MISSING))
def test_an_image_the_engine_does_not_have_is_ImageMissing(engine: str) -> None:
    err = classify(argv_for(engine), 125, IMAGE_MISSING[engine])
    assert isinstance(err, ImageMissing) and temporary(err)
    assert "localhost/substratus/m:1" in err.message and "--help" not in err.message


@pytest.mark.parametrize("engine", sorted(REFUSED))
def test_a_refused_container_is_a_permanent_CommandError(engine: str) -> None:
    err = classify(argv_for(engine), 125, REFUSED[engine])
    assert type(err) is CommandError and not temporary(err)
    assert err.argv == argv_for(engine) and REFUSED[engine].splitlines()[-1][:40] in err.stderr_tail


@pytest.mark.parametrize("engine", sorted(ENGINE_DOWN))
def test_an_engine_that_cannot_be_reached_is_temporary(engine: str) -> None:
    err = classify(argv_for(engine), 125, ENGINE_DOWN[engine])
    assert type(err) is CommandError and temporary(err)


def test_an_unknown_failure_of_an_engine_call_is_temporary() -> None:
    err = classify(["podman", "ps", "-a"], 125, "Error: database is locked")
    assert type(err) is CommandError and temporary(err)


def test_a_nice_prefix_does_not_hide_which_engine_it_was() -> None:
    err = classify(["nice", "-n", "10", *PODMAN_RUN], 125, NAME_IN_USE["podman"])
    assert isinstance(err, NameInUse) and "podman ps -a" in err.hint


# ---- through the runtime's own calls ------------------------------------------------------------

class Proc:
    def __init__(self, code: int, out: str = "", err: str = "") -> None:
        self.returncode, self.stdout, self.stderr = code, out, err


def test_run_raises_the_classified_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Proc(126, err=PORT_IN_USE["podman"]))
    with pytest.raises(PortInUse):
        EngineRuntime("podman").run(RunSpec(name="n", image="i", ports={8000: 20000}))


def test_run_once_raises_when_the_engine_itself_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Proc(125, out=IMAGE_MISSING["podman"]))
    with pytest.raises(ImageMissing):
        EngineRuntime("podman").run_once(RunSpec(name="n", image="localhost/substratus/m:1"), timeout=5)


def test_run_once_reports_the_commands_own_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Proc(127, out="sh: serve.sh: not found"))
    done = EngineRuntime("podman").run_once(RunSpec(name="n", image="i"), timeout=5)
    assert (done.exit_code, done.timed_out) == (127, False)


def test_run_once_says_when_it_timed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*args: Any, **kw: Any) -> Any:
        raise subprocess.TimeoutExpired(args[0], kw.get("timeout", 1), output="partial")

    monkeypatch.setattr(subprocess, "run", slow)
    rt = EngineRuntime("podman")
    monkeypatch.setattr(rt, "remove", lambda name: True)
    done = rt.run_once(RunSpec(name="n", image="i"), timeout=1)
    assert done.timed_out and done.exit_code == 124


def _script(tmp_path: Path, text: str) -> str:
    path = tmp_path / "engine"
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' '{text}'\nexit 1\n")
    path.chmod(0o755)
    return str(path)


def test_a_build_that_fails_is_a_BuildError_but_an_unreachable_engine_is_not(tmp_path: Path) -> None:
    spec = BuildSpec(context=tmp_path, tag="t")
    with pytest.raises(BuildError) as failed:
        EngineRuntime(_script(tmp_path, "Error: building at STEP RUN false: exit status 1")).build(spec, print)
    assert not temporary(failed.value)
    with pytest.raises(EngineError) as down:
        EngineRuntime(_script(tmp_path, ENGINE_DOWN["docker"])).build(spec, print)
    assert not isinstance(down.value, BuildError) and temporary(down.value)


def test_a_missing_engine_binary_is_a_temporary_EngineError(tmp_path: Path) -> None:
    with pytest.raises(EngineError) as missing:
        EngineRuntime(str(tmp_path / "no-such-engine")).build(BuildSpec(context=tmp_path, tag="t"), print)
    assert "is not installed" in missing.value.message and temporary(missing.value)
