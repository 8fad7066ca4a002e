"""Issue 25 item 1: what a source's Dockerfile may ask of the builder (sources.dockerfile)."""

from __future__ import annotations

from pathlib import Path

import pytest

from substratus.errors import SourceError
from substratus.sources import dockerfile
from substratus.sources.local import snapshot

ESCAPE = ("FROM scratch AS link\nRUN ln -s / /link\nFROM scratch\n"
          "RUN --mount=type=bind,from=link,source=/link,target=/x,rw cat /x/etc/shadow\n")

REFUSED = {
    "cve-2024-1753": (ESCAPE, "from="),
    "from-image": ("FROM a\nRUN --mount=from=busybox,target=/x true\n", "from="),
    "continued": ("FROM a\nRUN --mount=type=tmpfs,target=/t \\\n  --mount=type=bind,from=link,target=/x \\\n  true\n",
                  "from="),
    "lower-case": ("FROM a\nrun --mount=type=bind,from=link,target=/x true\n", "from="),
    "quoted-csv": ('FROM a\nRUN --mount="type=bind","from=link",target=/x true\n', "from="),
    "onbuild": ("FROM a\nONBUILD RUN --mount=type=bind,from=link,target=/x true\n", "ONBUILD"),
    "cache": ("FROM a\nRUN --mount=type=cache,target=/root/.cache pip install x\n", "type=cache"),
    "source-up": ("FROM a\nRUN --mount=type=bind,source=../..,target=/x true\n", "leaves the build context"),
    "bind-rw": ("FROM a\nRUN --mount=type=bind,source=.,target=/x,rw true\n", "read-only"),
    "propagation": ("FROM a\nRUN --mount=type=bind,source=.,target=/x,bind-propagation=rshared true\n",
                    "bind-propagation"),
    "ssh": ("FROM a\nRUN --mount=type=ssh true\n", "type=ssh"),
    "variable": ("FROM a\nARG M=type=bind,from=link,target=/x\nRUN --mount=$M true\n", "variables"),
    "network-host": ("FROM a\nRUN --network=host true\n", "--network"),
    "security": ("FROM a\nRUN --security=insecure true\n", "only --mount and --network"),
    "workdir-proc": ("FROM a\nWORKDIR /proc/self/fd/7\n", "CVE-2024-21626"),
    "workdir-proc-dots": ("FROM a\nWORKDIR /x/../proc/self/fd/7\n", "CVE-2024-21626"),
    "syntax": ("# syntax=evil.example/frontend:1\nFROM a\n", "syntax"),
    "backtick-escape": ("# escape=`\nFROM a\nRUN --network=none `\n --mount=from=link,target=/x true\n", "from="),
}

ALLOWED = {
    "plain": "FROM a\nRUN echo hi\nWORKDIR /model\n",
    "context-bind": "FROM a\nRUN --mount=type=bind,source=build-extra,target=/b pip install /b\n",
    "secret": "FROM a\nRUN --mount=type=secret,id=hf,target=/run/secrets/hf true\n",
    "tmpfs": "FROM a\nRUN --mount=type=tmpfs,target=/tmp true\n",
    "network-none": "FROM a\nRUN --network=none true\n",
    "syntax-official": "# syntax=docker/dockerfile:1\nFROM a\n",
    "heredoc-text": "FROM a\nRUN <<EOF\necho 'RUN --mount=from=x'\nEOF\n",
    "copy-from-stage": "FROM a AS b\nFROM c\nCOPY --from=b /x /y\n",
    "comment": "FROM a\n# RUN --mount=from=link,target=/x\nRUN true\n",
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_what_the_builder_cannot_confine_is_refused(name: str) -> None:
    text, word = REFUSED[name]
    problems = dockerfile.check_text(text)
    assert problems and word in str(problems[0]), (name, problems)


@pytest.mark.parametrize("name", list(ALLOWED))
def test_ordinary_dockerfiles_pass(name: str) -> None:
    assert dockerfile.check_text(ALLOWED[name]) == []


def test_the_line_is_named() -> None:
    [problem] = dockerfile.check_text(ESCAPE)
    assert problem.line == 4 and "CVE-2024-1753" in str(problem)


def test_a_containerfile_is_checked_too_since_podman_prefers_it(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM a\n")
    (tmp_path / "Containerfile").write_text(ESCAPE)
    with pytest.raises(SourceError) as err:
        dockerfile.check_context(tmp_path, "spec.source.dir", "src")
    assert err.value.field == "spec.source.dir" and "Containerfile" in err.value.message


def test_a_dir_source_with_an_escape_is_refused_at_snapshot(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Dockerfile").write_text(ESCAPE)
    with pytest.raises(SourceError) as err:
        snapshot(str(src), tmp_path / "cache")
    assert err.value.field == "spec.source.dir" and "line 4" in err.value.message


def test_sub_verify_refuses_the_same_before_it_builds(tmp_path: Path) -> None:
    """`sub verify model DIR` builds DIR itself, without `sub apply`'s snapshot: same refusal."""
    from substratus.verify.checks_image import resolve_source
    from substratus.verify.clauses import Outcome
    from substratus.verify.options import Target

    (tmp_path / "Dockerfile").write_text(ESCAPE)
    outcome, source = resolve_source(Target(kind="Model", source=str(tmp_path)), lambda: tmp_path / "cache")
    assert isinstance(outcome, Outcome) and not outcome.ok and "CVE-2024-1753" in outcome.evidence
    assert source.context is None
