"""A rebuilt base image is a change: FROM references are part of an image's content."""

from __future__ import annotations

from pathlib import Path

from substratus.build.fromlines import fingerprint, from_refs
from substratus.runtimes.base import BuildSpec
from substratus.runtimes.fake import FakeRuntime


def test_from_refs_fills_arg_defaults_and_skips_stages_and_scratch() -> None:
    text = ("ARG BASE_IMAGE=localhost/substratus/ml-base:0.1\nFROM ${BASE_IMAGE} AS build\nRUN x\n"
            "FROM build\nFROM scratch\nFROM --platform=linux/amd64 $OTHER\nARG OTHER=busybox\n"
            "FROM docker.io/library/python:3.11-slim\n")
    assert from_refs(text) == ["localhost/substratus/ml-base:0.1", "docker.io/library/python:3.11-slim"]


def test_fingerprint_changes_when_the_base_image_is_rebuilt(tmp_path: Path) -> None:
    rt = FakeRuntime()
    (tmp_path / "Dockerfile").write_text("ARG BASE=localhost/base:1\nFROM ${BASE}\nWORKDIR /model\n")
    before = fingerprint(rt, tmp_path)
    assert before == "localhost/base:1@absent"
    base_ctx = tmp_path / "base"
    base_ctx.mkdir()
    (base_ctx / "Dockerfile").write_text("FROM scratch\n")
    rt.build(BuildSpec(context=base_ctx, tag="localhost/base:1"), lambda _: None)
    first = fingerprint(rt, tmp_path)
    rt.build(BuildSpec(context=base_ctx, tag="localhost/base:1"), lambda _: None)
    assert first != before and fingerprint(rt, tmp_path) != first
