"""Download throughput of substratus.fetch against boto3's own download_file, same objects, same run.

    .venv/bin/python bench/fetch_bench.py [--sizes-mb 100,50,25] [--rounds 3]

Starts moto's S3 server (`python -m moto.server`, its own process, on 127.0.0.1), uploads objects
of random bytes, then alternates rounds: boto3 `download_file` of every object into a temporary
directory (s3transfer: parallel ranged GETs, no verification) and `Cache.fetch` of every object
into an empty cache (single-stream GET per file, several files at once, SHA-256 and MD5 checked,
entry made read-only and moved into place). Prints each round, the medians and the ratio
fetch/boto3 with the goal (>= 0.8x) and whether it was met.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

GOAL = 0.8
KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, **KEYS}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/moto-api/", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto server did not start")


def boto3_round(s3: Any, bucket: str, keys: list[str], dest: Path) -> float:
    start = time.perf_counter()
    for key in keys:
        s3.download_file(bucket, key, str(dest / key))
    return time.perf_counter() - start


def fetch_round(bucket: str, keys: list[str], dest: Path, creds: dict[str, str]) -> float:
    from substratus.fetch.cache import Cache

    cache = Cache(dest / "cache")
    start = time.perf_counter()
    for key in keys:
        cache.fetch(f"s3://{bucket}/{key}", creds)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", default="100,50,25")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import boto3

    sizes = [int(s) for s in args.sizes_mb.split(",")]
    proc, url = start_moto()
    try:
        creds = {**KEYS, "AWS_ENDPOINT_URL": url}
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench")
        s3.create_bucket(Bucket="bench")
        keys = []
        for i, mb in enumerate(sizes):
            key = f"obj{i}-{mb}mb.bin"
            s3.put_object(Bucket="bench", Key=key, Body=os.urandom(mb << 20))
            keys.append(key)
        total = sum(sizes) << 20
        print(f"{len(keys)} objects, {sum(sizes)} MiB in all, moto S3 server at {url}; {args.rounds} rounds",
              file=sys.stderr)
        times: dict[str, list[float]] = {"boto3": [], "fetch": []}
        for r in range(args.rounds):
            for name in ("boto3", "fetch"):
                dest = Path(tempfile.mkdtemp(prefix=f"fetch-bench-{name}-"))
                try:
                    t = boto3_round(s3, "bench", keys, dest) if name == "boto3" else \
                        fetch_round("bench", keys, dest, creds)
                finally:
                    shutil.rmtree(dest, ignore_errors=True)
                times[name].append(t)
                print(f"round {r + 1} {name:6s} {t:6.2f} s  {total / t / 2**20:7.1f} MiB/s", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    b3, fe = statistics.median(times["boto3"]), statistics.median(times["fetch"])
    ratio = b3 / fe
    print(f"boto3 download_file: {total / b3 / 2**20:.1f} MiB/s (median of {args.rounds})")
    print(f"substratus.fetch:    {total / fe / 2**20:.1f} MiB/s (median of {args.rounds}; verified, read-only entry)")
    print(f"ratio fetch/boto3:   {ratio:.2f}x (goal >= {GOAL}x): {'met' if ratio >= GOAL else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
