"""`make demo`: the main job, as a user would run it.

Applies examples/demo (a Shakespeare dataset, a tiny GPT-2 pre-trained on
fortune cookies, the same model fine-tuned on the dataset, a server for each,
and a notebook), waits with progress on stderr, then prints the server URL,
the base and the fine-tuned model's generations for the same prompt side by
side, and the notebook URL. A second run is quick: nothing changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SUB = str(Path(sys.executable).with_name("sub"))
DEMO = REPO / "examples" / "demo"
PROMPTS = ["ROMEO:", "My lord, "]


def sub(*args: str) -> str:
    return subprocess.run([SUB, *args], check=True, capture_output=True, text=True).stdout


def status(kind: str, name: str) -> dict:
    return json.loads(sub("get", kind, name, "-o", "json"))["status"]


def generate(url: str, prompt: str) -> str:
    # Sampled (temperature 0.8): greedy decoding makes a model this small repeat itself.
    body = {"prompt": prompt, "max_new_tokens": 48, "temperature": 0.8, "top_p": 0.95}
    resp = httpx.post(f"{url}/generate", json=body, timeout=120)
    resp.raise_for_status()
    return str(resp.json()["generation"])


def main() -> int:
    timeout = os.environ.get("DEMO_TIMEOUT", "3600")
    print(f"==> sub apply -f {DEMO.relative_to(REPO)} --wait  (progress below; first run builds and trains, "
          "a few minutes)", file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.run([SUB, "apply", "-f", str(DEMO), "--wait", "--timeout", timeout])
    if proc.returncode != 0:
        print("demo failed: see the messages above; `sub describe KIND NAME` and `sub logs KIND NAME` say more",
              file=sys.stderr)
        return proc.returncode
    print(f"==> everything ready in {time.monotonic() - started:.0f}s", file=sys.stderr)
    tuned = status("server", "tiny-gpt-shakespeare")
    base = status("server", "tiny-gpt")
    notebook = status("notebook", "tiny-gpt-shakespeare")
    print(f"\nFine-tuned model server: {tuned['url']}   (API docs: {tuned['url']}/docs)")
    print(f"Base model server:       {base['url']}")
    for prompt in PROMPTS:
        print(f"\nPrompt: {prompt!r}")
        for label, url in (("base (fortunes)", base["url"]), ("fine-tuned (Shakespeare)", tuned["url"])):
            text = generate(url, prompt)
            print(f"  {label}:")
            print(textwrap.indent(text.strip(), "    | "))
    print(f"\nNotebook: {notebook['url']}")
    print("\nNext: sub get | sub describe model tiny-gpt-shakespeare | sub logs model tiny-gpt-shakespeare"
          " | sub delete -f examples/demo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
