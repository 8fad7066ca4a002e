"""Fakes for the `sub verify` unit tests: an image that keeps the contract, a server, a clock.

(A test module only by name, so that it sits with the other verify tests; the
one test at the end checks the fakes themselves.)

`ContractRuntime` is the FakeRuntime whose one-off containers answer like a
contract-keeping image (scripts found, /model/saved listed, train.sh and
load.sh writing their files into the bind mounts); each behaviour can be
switched off by a test. `FakeServer` answers HTTP by route.
"""

from __future__ import annotations

import json
from pathlib import Path

from substratus.runtimes.base import RunSpec
from tests.unit.fakes.verify import ContractRuntime, FakeClock, FakeServer


def test_the_fakes_answer_like_a_contract_keeping_image(tmp_path: Path) -> None:
    rt = ContractRuntime()
    probe = rt.answer(RunSpec(name="", image="x", entrypoint=["sh", "-c"], command=["command -v serve.sh"]))
    assert "found serve.sh /usr/local/bin/serve.sh" in probe.output
    answer = FakeServer().request("POST", "http://127.0.0.1:1/generate", body=b'{"prompt": "hi"}')
    assert json.loads(answer.body)["generation"].startswith("hi")
    clock = FakeClock()
    clock.sleep(2.5)
    assert clock.now() == 2.5
