"""`sub verify` on the project's own examples: they must keep the contract they document.

Needs the ML base image (`scripts/build-base-images.sh` builds
localhost/substratus/ml-base:0.1); skipped, with the reason, without it (a
failure when `CI` is set).
"""

from __future__ import annotations

import pytest

from substratus.runtimes.base import Runtime
from tests.integration.fixtures_verify import REPO, run_verify
from tests.requirements import require

pytestmark = [pytest.mark.integration, pytest.mark.examples]

BASE_IMAGE = "localhost/substratus/ml-base:0.1"
EXAMPLES = {
    "datasets/shakespeare": ["dataset"],
    # Small training: the built-in sample, a few records, one epoch.
    "models/tiny-gpt": ["model", "--data-limit", "8", "--epochs", "1", "--batch-size", "4",
                        "--serve-timeout", "300", "--notebook-timeout", "180", "--fuzz-timeout", "120"],
}


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_keeps_the_contract(runtime: Runtime, example: str) -> None:
    directory = REPO / "examples" / example
    assert (directory / "Dockerfile").is_file(), f"examples/{example} has no Dockerfile"
    require(runtime.image_info(BASE_IMAGE) is not None, f"{BASE_IMAGE} is missing: run scripts/build-base-images.sh")
    kind, *extra = EXAMPLES[example]
    run = run_verify([kind, str(directory), "-o", "json", *extra], timeout=1800)
    assert run.returncode == 0, run.explain()
    assert run.statuses("FAIL") == []
