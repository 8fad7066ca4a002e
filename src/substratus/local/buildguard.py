"""The last look before a source is built: its build files, and the triggers its bases carry.

`sources.dockerfile` refuses a source whose Dockerfile asks the builder for what it cannot
confine when the source is resolved (at `sub apply`). The executor looks again right before
the build, because two things can change in between: the snapshot is what gets built (a state
kept from an older version was never checked), and a base image's ONBUILD triggers run inside
this build although no line of the source names them (checked: podman 4.3 ran a base's
`ONBUILD RUN` in a child build). Triggers are checked for the bases present on the engine;
one the build pulls is not seen before it runs (docs/security.md says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from substratus.build.fromlines import from_refs
from substratus.errors import SourceError
from substratus.runtimes.base import Runtime
from substratus.sources import dockerfile


def refusal(runtime: Runtime, context: Path, field: str = "spec.source") -> Optional[str]:
    """Why this context must not be built, or None."""
    try:
        dockerfile.check_context(context, field, str(context))
    except SourceError as err:
        return err.message
    for name in dockerfile.BUILD_FILES:
        try:
            text = (context / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for ref in from_refs(text):
            info = runtime.image_info(ref)
            for trigger in info.onbuild if info else []:
                keyword, _, args = trigger.strip().partition(" ")
                problems = dockerfile.check_instruction(keyword.upper(), args.strip())
                if problems:
                    return (f"{field}: base image {ref} carries an ONBUILD trigger this build would run: "
                            f"{'; '.join(problems)}")
        break  # the engine builds the first of BUILD_FILES it finds
    return None
