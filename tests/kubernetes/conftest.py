"""Fixtures of the Kubernetes tiers: S3 in moto's server mode, the API emulator.

Every test here is marked `kubernetes` (run by `make test-kubernetes`); the
ones that need podman are marked `kubeplay` as well and skip, saying why,
where no engine answers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

MOTO_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/kubernetes" in str(item.fspath):
            item.add_marker(pytest.mark.kubernetes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto in server mode, a separate process speaking the S3 HTTP API on a free port."""
    port = free_port()
    env = {**os.environ, **MOTO_KEYS}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/moto-api/", timeout=1)
            break
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto server did not answer within 60s")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials and endpoint as a pod would have them in its env."""
    env = {**MOTO_KEYS, "SUBSTRATUS_S3_ENDPOINT_URL": moto_endpoint}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def bucket(moto_endpoint: str, s3_env: dict[str, str]) -> str:
    """A fresh bucket per test (S3 CreateBucket over HTTP)."""
    import boto3

    name = f"substratus-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
