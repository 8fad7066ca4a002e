"""Fixtures of the fetch tests: real servers on 127.0.0.1 (see servers.py), a cache per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus.fetch.cache import Cache
from tests.unit.fetch.servers import CountingMoto, FileServer, HubStandIn

KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def moto_server() -> Iterator[CountingMoto]:
    pytest.importorskip("moto", reason="the S3 tests need moto: pip install -e '.[test,test-kubernetes]'")
    server = CountingMoto().start()
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server: CountingMoto) -> Iterator[CountingMoto]:
    moto_server.log.clear()
    moto_server.throttle.rate = 0
    yield moto_server
    moto_server.throttle.rate = 0


@pytest.fixture
def s3_creds(moto: CountingMoto) -> dict[str, str]:
    """A secret's keys, as the control plane hands them over."""
    return {**KEYS, "AWS_ENDPOINT_URL": moto.url}


@pytest.fixture
def s3(s3_creds: dict[str, str]) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=s3_creds["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def web() -> Iterator[FileServer]:
    server = FileServer().start()
    yield server
    server.stop()


@pytest.fixture
def hub() -> Iterator[HubStandIn]:
    server = HubStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache")
