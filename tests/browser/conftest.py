"""Browser tier: Debian's chromium, driven by Playwright, against a real control plane.

The control plane runs the busybox contract fixtures (no Python in the
images): a dataset, a base model whose train.sh writes the progress extension
(tests/fixtures/contract/progress/model-progress), a model trained from it, a
server and a notebook. Skipped, saying why, when no container engine or no
chromium is there (`make test-browser` installs chromium first).

Screenshots go to $SUBSTRATUS_BROWSER_OUT (default build/browser/); with
SUBSTRATUS_DOCS_SCREENSHOTS=1 they are also copied to docs/img/dashboard/,
which docs/dashboard.md shows.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from substratus.errors import EngineError
from substratus.runtimes.engine import detect_engine
from tests.integration.conftest import FIXTURES, REPO, Sub, cleanup

CHROMIUM = Path(os.environ.get("SUBSTRATUS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
DOCS_IMAGES = REPO / "docs" / "img" / "dashboard"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


def prepare(name: str, dest: Path) -> Path:
    spec = importlib.util.spec_from_file_location("contract_prepare", FIXTURES / "prepare.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.prepare_fixture(name, dest))


# Names no other test uses: image repositories are named by kind, namespace and name only, so on a shared
# engine another control plane's garbage collection can untag images of a same-named object (reported).
MANIFEST = """
apiVersion: substratus.ai/v1
kind: Dataset
metadata: {{name: verses}}
spec: {{filename: verses.jsonl, source: {{dir: {dataset}}}}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: wordpairs}}
spec: {{source: {{dir: {model}}}}}
---
apiVersion: substratus.ai/v1
kind: Model
metadata: {{name: wordpairs-verses}}
spec:
  source: {{modelName: wordpairs}}
  training: {{datasetName: verses, params: {{epochs: 2, batchSize: 4, dataLimit: 80}}}}
---
apiVersion: substratus.ai/v1
kind: Server
metadata: {{name: wordpairs-verses}}
spec: {{modelName: wordpairs-verses}}
---
apiVersion: substratus.ai/v1
kind: Notebook
metadata: {{name: wordpairs-verses}}
spec: {{modelName: wordpairs-verses}}
"""


@dataclass
class Stack:
    sub: Sub
    manifest: Path
    out: Path
    requests: list[str] = field(default_factory=list)

    def shot(self, page: Any, name: str, **kwargs: Any) -> Path:
        """A screenshot under the output folder (and into docs/ when asked to)."""
        path = self.out / f"{name}.png"
        page.screenshot(path=str(path), **kwargs)
        if os.environ.get("SUBSTRATUS_DOCS_SCREENSHOTS") == "1":
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, DOCS_IMAGES / path.name)
        return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        engine = detect_engine(os.environ.get("SUBSTRATUS_ENGINE") or None)
    except EngineError as err:
        pytest.skip(f"no container engine: {err.message} (run `make setup`)")
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM} (run `make test-browser`, which installs Debian's chromium)")
    if not Path("/bin/busybox").exists():
        pytest.skip("static busybox is missing (apt-get install busybox-static, done by `make setup`)")
    root = tmp_path_factory.mktemp("browser")
    dataset = prepare("dataset-shell", root / "dataset")
    model = prepare("progress/model-progress", root / "model")
    manifest = root / "stack.yaml"
    manifest.write_text(MANIFEST.format(dataset=dataset, model=model))
    out = Path(os.environ.get("SUBSTRATUS_BROWSER_OUT") or REPO / "build" / "browser")
    out.mkdir(parents=True, exist_ok=True)
    s = Sub(root / "home")
    s.ok("up", timeout=60)
    yield Stack(sub=s, manifest=manifest, out=out)
    cleanup(s, engine)


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def context(browser: Any, stack: Stack) -> Iterator[Any]:
    """One browser profile for the whole story; every request it makes is recorded."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 960}, device_scale_factor=1)
    ctx.on("request", lambda req: stack.requests.append(req.url))
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


def login_link(sub: Sub) -> str:
    proc = sub("dashboard", timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"`sub dashboard` must print only the link on stdout: {proc.stdout!r}"
    return lines[0]

