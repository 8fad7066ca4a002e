"""Reading the engines' event lines: the control plane takes a container's steps from them."""

from __future__ import annotations

import json

from substratus.runtimes.engine import parse_event

LABELS = {"substratus.ai/managed": "true", "substratus.ai/role": "train"}


def podman(status: str, **extra: object) -> str:
    return json.dumps({"ID": "a" * 64, "Image": "localhost/substratus/m:1", "Name": "job", "Status": status,
                       "Type": "container", "Attributes": {**LABELS, "image": "x"}, **extra})


def test_podman_died_events_carry_the_exit_code_and_a_missing_one_is_zero() -> None:
    failed = parse_event(podman("died", ContainerExitCode=3))
    assert failed is not None and (failed.action, failed.exit_code, failed.image) == ("died", 3, "localhost/substratus/m:1")
    ok = parse_event(podman("died"))  # podman leaves a zero out of its JSON
    assert ok is not None and ok.exit_code == 0
    started = parse_event(podman("start"))
    assert started is not None and started.exit_code is None and started.labels["substratus.ai/role"] == "train"


def test_docker_die_events_carry_the_exit_code_as_text() -> None:
    line = json.dumps({"Type": "container", "Action": "die", "Actor": {"ID": "b" * 64, "Attributes": {
        **LABELS, "name": "job", "image": "localhost/substratus/m:1", "exitCode": "137"}}})
    event = parse_event(line)
    assert event is not None and (event.action, event.name, event.exit_code) == ("died", "job", 137)
    assert event.image == "localhost/substratus/m:1" and "exitCode" not in event.labels


def test_image_events_and_garbage() -> None:
    event = parse_event(json.dumps({"Type": "image", "Status": "remove", "Name": "localhost/x:1", "ID": "c"}))
    assert event is not None and (event.type, event.action, event.exit_code, event.image) == ("image", "remove", None, "")
    assert parse_event("not json") is None and parse_event("[1]") is None
