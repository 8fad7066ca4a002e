"""`python -m substratus.fetch` as separate processes: kill -9 mid-download then resume, and two
processes fetching the same source (one downloads, the other waits). Servers are throttled so the
kill lands mid-download; they count the bytes they send."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from substratus.fetch.cache import Cache
from substratus.resources.progress import parse
from tests.unit.fetch.servers import CountingMoto, FileServer, Log, Throttle

SIZE = 4_000_000
DATA = os.urandom(SIZE)


def fetch_process(uri: str, cache: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "substratus.fetch", "fetch", uri, "--cache", str(cache), "--every", "0.2", *extra]
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def partial_size(cache: Path) -> int:
    files = [p for p in (cache / "partial").glob("*/tree/*") if p.is_file()]
    return files[0].stat().st_size if files else 0


def kill_mid_download_then_resume(uri: str, cache_dir: Path, env: dict[str, str], throttle: Throttle, log: Log,
                                  path_part: str) -> tuple[int, Any]:
    throttle.rate = 1_000_000  # 4 s for the whole file
    proc = fetch_process(uri, cache_dir, env)
    try:
        wait_for(lambda: partial_size(cache_dir) >= 800_000, "the first megabyte on disk")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    kept = partial_size(cache_dir)
    assert 0 < kept < SIZE
    throttle.rate = 0
    wait_for(lambda: bool(log.gets(path_part)), "the server to see the killed download end")
    log.clear()
    result = Cache(cache_dir).fetch(uri, env)
    return kept, result


def test_http_kill_9_then_resume_fetches_only_the_remaining_bytes(tmp_path: Path, web: FileServer) -> None:
    url = web.put("/weights.bin", DATA)
    kept, result = kill_mid_download_then_resume(url, tmp_path / "c", {}, web.throttle, web.log, "/weights.bin")
    [resumed] = web.log.gets("/weights.bin")
    assert resumed.range == f"bytes={kept}-" and resumed.status == 206
    assert resumed.sent == SIZE - kept
    assert (result.fetched_bytes, result.resumed_bytes) == (SIZE - kept, kept)
    assert result.entry.file is not None and result.entry.file.read_bytes() == DATA
    assert list((tmp_path / "c" / "partial").iterdir()) == []


def test_s3_kill_9_then_resume_fetches_only_the_remaining_bytes(tmp_path: Path, moto: CountingMoto, s3: Any,
                                                               bucket: str, s3_creds: dict[str, str]) -> None:
    s3.put_object(Bucket=bucket, Key="big/weights.bin", Body=DATA)
    kept, result = kill_mid_download_then_resume(f"s3://{bucket}/big/weights.bin", tmp_path / "c", s3_creds,
                                                 moto.throttle, moto.log, "big/weights.bin")
    [resumed] = moto.object_gets("big/weights.bin")
    assert resumed.range == f"bytes={kept}-" and resumed.status == 206
    assert resumed.sent == SIZE - kept
    assert result.entry.file is not None and result.entry.file.read_bytes() == DATA


def test_two_processes_fetching_the_same_object_download_it_once(tmp_path: Path, moto: CountingMoto, s3: Any,
                                                                 bucket: str, s3_creds: dict[str, str]) -> None:
    s3.put_object(Bucket=bucket, Key="shared.bin", Body=DATA[:1_500_000])
    moto.throttle.rate = 1_000_000
    uri = f"s3://{bucket}/shared.bin"
    procs = [fetch_process(uri, tmp_path / "c", s3_creds, "-o", "json") for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1].decode()[-2000:] for o in outs]
    docs = [json.loads(o[0]) for o in outs]
    assert sorted(d["outcome"] for d in docs) == ["cached", "downloaded"]
    assert docs[0]["path"] == docs[1]["path"]
    assert len(moto.object_gets("shared.bin")) == 1
    waiting = [o[1].decode() for o in outs if b"waiting" in o[1]]
    assert len(waiting) == 1  # the second said it was waiting for the first


def test_the_command_prints_the_entry_on_stdout_and_progress_on_stderr(tmp_path: Path, moto: CountingMoto, s3: Any,
                                                                     bucket: str, s3_creds: dict[str, str]) -> None:
    s3.put_object(Bucket=bucket, Key="k.bin", Body=b"hello")
    progress = tmp_path / "progress.jsonl"
    proc = fetch_process(f"s3://{bucket}/k.bin", tmp_path / "c", s3_creds,  # credentials in the environment
                         "--progress-file", str(progress))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    path = Path(out.decode().strip())
    assert path.parent.name == "entries" and (path / "k.bin").read_bytes() == b"hello"
    assert "substratus-fetch: resolving" in err.decode() and "downloaded" in err.decode()
    last = parse(progress.read_text())[-1]
    assert (last.step, last.total_steps) == (5, 5)


def test_the_command_exits_1_with_the_hint_on_failure(tmp_path: Path, web: FileServer) -> None:
    proc = fetch_process(f"{web.url}/missing.bin", tmp_path / "c", {})
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (1, b"")
    assert "not found (HTTP 404)" in err.decode() and "hint:" in err.decode()


def test_a_refused_uri_is_echoed_without_its_password(tmp_path: Path) -> None:
    proc = fetch_process("https://user:hunter2@example.com/x.bin", tmp_path / "c", {})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and b"hunter2" not in err and b"***@example.com" in err
