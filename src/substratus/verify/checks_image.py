"""Checks on the source and the built image: Dockerfile, build, WORKDIR, scripts, the saved model.

Each function runs one check through a Runtime and returns an `Outcome` (or
`Skipped`); `runner` decides whether it runs at all.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from substratus import contract
from substratus.build import conformance
from substratus.build import fromlines as baseimages
from substratus.build.naming import label
from substratus.errors import BuildError, SourceError
from substratus.runtimes.base import MANAGED, BuildSpec, RunSpec, Runtime
from substratus.sources import dockerfile, git, local
from substratus.verify.clauses import Outcome, Skipped
from substratus.verify.options import Options, Target, verify_image_tag

SCRIPT_CLAUSES = contract.SCRIPT_CLAUSES


@dataclass
class Source:
    context: Optional[Path] = None
    revision: str = ""


def resolve_source(target: Target, git_cache: Callable[[], Path]) -> tuple[Union[Outcome, Skipped], Source]:
    """Find the build context and check that it holds a Dockerfile."""
    if target.image:
        return Skipped(f"verifying an existing image ({target.image}); there is no source to look at"), Source()
    assert target.source is not None
    if target.is_git:
        try:
            got = git.fetch(git.normalise_url(target.source), target.branch, target.path, git_cache(),
                            field="source")
        except SourceError as err:
            return Outcome(False, err.message, fix=err.hint), Source()
        return Outcome(True, f"{got.description}: Dockerfile found"), Source(got.context, got.revision)
    root = Path(target.source).resolve()
    if not root.is_dir():
        return Outcome(False, f"{root} is not a directory", fix="give the directory that holds the Dockerfile"), \
            Source()
    if not (root / "Dockerfile").is_file():
        found = sorted(p.name for p in root.iterdir())[:12]
        return Outcome(False, f"no Dockerfile in {root} (it holds: {', '.join(found) or 'nothing'})"), Source()
    try:  # `sub verify` builds DIR itself: the same builder, the same refusals as `sub apply` (issue 25)
        dockerfile.check_context(root, "source", str(root))
    except SourceError as err:
        return Outcome(False, err.message, fix=err.hint), Source()
    return Outcome(True, f"{root / 'Dockerfile'}"), Source(root, local.digest(root))


def image_labels(kind: str) -> dict[str, str]:
    return {MANAGED: "true", label("role"): "verify", label("kind"): kind}


def build_image(runtime: Runtime, target: Target, source: Source, options: Options,
                progress: Callable[[str], None]) -> tuple[Outcome, str]:
    """Build the source into a content-addressed tag (reusing an identical earlier build)."""
    if target.image:
        info = runtime.image_info(target.image)
        if info is None:
            return Outcome(False, f"image {target.image} does not exist in the {runtime.engine} image store",
                           fix=f"build it first, or check the name with `{runtime.engine} images`"), ""
        return Outcome(True, f"using existing image {target.image} ({info.id[:19]})"), target.image
    assert source.context is not None
    # The base images' IDs count as content: a rebuilt FROM image means a new build.
    revision = f"{source.revision}+{baseimages.fingerprint(runtime, source.context)}"
    tag = verify_image_tag(target.kind, revision, target.path)
    if not options.rebuild and runtime.image_info(tag) is not None:
        return Outcome(True, f"{tag} was already built from this exact source (--rebuild builds again)"), tag
    recent: deque[str] = deque(maxlen=25)
    seen = [0]

    def sink(line: str) -> None:
        recent.append(line)
        seen[0] += 1
        if options.build_log:
            progress(f"  | {line}")

    progress(f"building {tag} from {source.context}")
    try:
        runtime.build(BuildSpec(context=source.context, tag=tag, labels=image_labels(target.kind)), sink)
    except BuildError as err:
        return Outcome(False, f"`{runtime.engine} build` of {source.context} failed: {err.message}",
                       log_tail=err.log_tail or "\n".join(recent)), ""
    return Outcome(True, f"built {tag} (`{runtime.engine} build`, {seen[0]} log lines)"), tag


def check_workdir(runtime: Runtime, image: str, kind: str) -> Outcome:
    got = conformance.check_workdir(runtime, image, kind)
    return Outcome(got.ok, got.evidence)


def check_scripts(runtime: Runtime, image: str, kind: str) -> dict[str, Outcome]:
    """One probe container for all scripts; the clause id of each script -> its outcome."""
    results = conformance.check_scripts(runtime, image, kind)
    out = {}
    for script, res in zip(contract.SCRIPTS[kind], results):
        out[SCRIPT_CLAUSES[script]] = Outcome(res.ok, f"ran `sh -c 'command -v {script}'` in the image: "
                                              f"{res.evidence}")
    return out


SAVED = contract.SAVED_DIR
SAVED_PROBE = f'ls -A {SAVED} 2>&1 | head -n 20; echo "entries=$(ls -A {SAVED} 2>/dev/null | wc -l)"'


def check_saved(runtime: Runtime, image: str, timeout: float = 120) -> Outcome:
    done = runtime.run_once(RunSpec(name="", image=image, entrypoint=["sh", "-c"], command=[SAVED_PROBE]),
                            timeout=timeout)
    lines = done.output.strip().splitlines()
    count = 0
    if lines and lines[-1].startswith("entries="):
        count = int(lines[-1].split("=", 1)[1].strip() or 0)
    listing = ", ".join(lines[:-1][:10])
    if done.exit_code != 0:
        return Outcome(False, f"could not list {SAVED} (`sh -c 'ls -A {SAVED}'` exit {done.exit_code})",
                       log_tail="\n".join(lines[-10:]))
    if count == 0:
        return Outcome(False, f"`ls -A {SAVED}` in the built image lists nothing")
    return Outcome(True, f"{SAVED} holds {count} entries: {listing}")
