"""`make demo` (and `make demo-gemma`): the main job, as a user would run it.

Applies examples/demo (a Shakespeare dataset, a tiny GPT-2 pre-trained on
fortune cookies, the same model fine-tuned on the dataset, a server for each,
and a notebook), waits with progress on stderr, then prints the server URL,
the base and the fine-tuned model's generations for the same prompt side by
side, and the notebook URL. A second run is quick: nothing changed.
``--example gemma`` does the same with examples/gemma: Gemma 3 270M and its
LoRA fine-tune on the same dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SUB = str(Path(sys.executable).with_name("sub"))


@dataclass(frozen=True)
class Example:
    directory: Path
    base_server: str
    tuned_server: str
    tuned_model: str
    notebook: str | None
    labels: tuple[str, str]
    prompts: tuple[str, ...]
    # Greedy with a repetition penalty: the same text every run, without the loops
    # that greedy decoding falls into on small models.
    body: dict[str, float]


EXAMPLES = {
    "tiny": Example(REPO / "examples" / "demo", "tiny-gpt", "tiny-gpt-shakespeare", "tiny-gpt-shakespeare",
                    "tiny-gpt-shakespeare", ("base (fortunes)", "fine-tuned (Shakespeare)"),
                    ("ROMEO:", "To be, or not to be"),
                    {"max_new_tokens": 48, "temperature": 0, "repetition_penalty": 1.3}),
    "gemma": Example(REPO / "examples" / "gemma", "gemma-270m", "gemma-270m-shakespeare",
                     "gemma-270m-shakespeare", None,
                     ("base (Gemma 3 270M)", "fine-tuned (LoRA on Shakespeare)"),
                     ("ROMEO.\n", "My good lord, "),
                     {"max_new_tokens": 40, "temperature": 0, "repetition_penalty": 1.2}),
}


def sub(*args: str) -> str:
    return subprocess.run([SUB, *args], check=True, capture_output=True, text=True).stdout


def status(kind: str, name: str) -> dict:
    return json.loads(sub("get", kind, name, "-o", "json"))["status"]


def generate(url: str, prompt: str, body: dict[str, float]) -> str:
    resp = httpx.post(f"{url}/generate", json={"prompt": prompt, **body}, timeout=600)
    resp.raise_for_status()
    return str(resp.json()["generation"])


def show(example: Example) -> None:
    tuned = status("server", example.tuned_server)
    base = status("server", example.base_server)
    print(f"\nFine-tuned model server: {tuned['url']}   (API docs: {tuned['url']}/docs)")
    print(f"Base model server:       {base['url']}")
    for prompt in example.prompts:
        print(f"\nPrompt: {prompt!r}")
        for label, url in zip(example.labels, (base["url"], tuned["url"])):
            print(f"  {label}:")
            text = generate(url, prompt, example.body).strip()
            print(textwrap.indent(text, "    | ", predicate=lambda line: True))  # blank lines too
    if example.notebook:
        print(f"\nNotebook: {status('notebook', example.notebook)['url']}")
    print(f"Dashboard: {sub('dashboard').strip()}\n"
          "           (a one-time login link, valid for 2 minutes; `sub dashboard` prints a new one)")
    directory = example.directory.relative_to(REPO)
    print(f"\nNext: sub get | sub describe model {example.tuned_model} | sub logs model "
          f"{example.tuned_model} | sub delete -f {directory}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", choices=sorted(EXAMPLES), default="tiny")
    example = EXAMPLES[parser.parse_args().example]
    timeout = os.environ.get("DEMO_TIMEOUT", "3600")
    directory = example.directory.relative_to(REPO)
    print(f"==> sub apply -f {directory} --wait  (progress below; the first run builds and trains, "
          "which takes minutes)", file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.run([SUB, "apply", "-f", str(example.directory), "--wait", "--timeout", timeout])
    if proc.returncode != 0:
        print("demo failed: see the messages above; `sub describe KIND NAME` and `sub logs KIND NAME` say more",
              file=sys.stderr)
        return proc.returncode
    print(f"==> everything ready in {time.monotonic() - started:.0f}s", file=sys.stderr)
    show(example)
    return 0


if __name__ == "__main__":
    sys.exit(main())
