"""s3:// sources against moto's S3 server over real HTTP: identity, sharing, changes, errors."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from substratus.fetch.cache import Cache
from substratus.fetch.errors import AuthError, DigestMismatchError, SourceNotFoundError
from substratus.fetch.sources import resolve
from tests.unit.fetch.servers import CountingMoto

DATA = os.urandom(300_000)


def test_a_second_fetch_of_the_same_object_reads_nothing_from_the_bucket(
        cache: Cache, s3: Any, bucket: str, s3_creds: dict[str, str], moto: CountingMoto) -> None:
    s3.put_object(Bucket=bucket, Key="models/tiny/model.bin", Body=DATA)
    first = cache.fetch(f"s3://{bucket}/models/tiny/model.bin", s3_creds)
    second = cache.fetch(f"s3://{bucket}/models/tiny/model.bin", s3_creds)
    assert (first.outcome, second.outcome) == ("downloaded", "cached")
    assert second.entry.key == first.entry.key
    assert len(moto.object_gets("models/tiny/model.bin")) == 1
    assert first.entry.file is not None and first.entry.file.read_bytes() == DATA
    assert first.source_digest == "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_resolve_lists_etag_size_and_the_md5_it_will_check(s3: Any, bucket: str, s3_creds: dict[str, str],
                                                             moto: CountingMoto) -> None:
    s3.put_object(Bucket=bucket, Key="a.bin", Body=DATA)
    r = resolve(f"s3://{bucket}/a.bin", s3_creds)
    (f,) = r.files
    assert (r.kind, f.path, f.size) == ("file", "a.bin", len(DATA))
    assert f.version == f'etag:"{hashlib.md5(DATA).hexdigest()}"'
    assert f"md5:{hashlib.md5(DATA).hexdigest()}" in f.expect
    assert moto.object_gets("a.bin") == []  # metadata only


def test_the_same_bytes_under_two_keys_share_one_entry(cache: Cache, s3: Any, bucket: str,
                                                       s3_creds: dict[str, str]) -> None:
    s3.put_object(Bucket=bucket, Key="one/weights.bin", Body=DATA)
    s3.put_object(Bucket=bucket, Key="two/weights.bin", Body=DATA)
    a = cache.fetch(f"s3://{bucket}/one/weights.bin", s3_creds, referrer="Model/default/a")
    b = cache.fetch(f"s3://{bucket}/two/weights.bin", s3_creds, referrer="Model/default/b")
    assert (a.outcome, b.outcome) == ("downloaded", "shared")
    assert a.entry.key == b.entry.key
    [entry] = cache.ls()
    assert entry.referrers == ("Model/default/a", "Model/default/b")
    assert set(entry.sources) == {f"s3://{bucket}/one/weights.bin", f"s3://{bucket}/two/weights.bin"}


def test_an_object_changed_under_the_same_key_gives_a_new_entry(cache: Cache, s3: Any, bucket: str,
                                                                s3_creds: dict[str, str]) -> None:
    uri = f"s3://{bucket}/data.jsonl"
    s3.put_object(Bucket=bucket, Key="data.jsonl", Body=b'{"a": 1}\n')
    old = cache.fetch(uri, s3_creds)
    s3.put_object(Bucket=bucket, Key="data.jsonl", Body=b'{"a": 2}\n')
    new = cache.fetch(uri, s3_creds)
    assert new.outcome == "downloaded" and new.entry.key != old.entry.key
    assert old.entry.file is not None and old.entry.file.read_bytes() == b'{"a": 1}\n'
    assert new.entry.file is not None and new.entry.file.read_bytes() == b'{"a": 2}\n'


def test_a_prefix_becomes_a_tree_and_its_files_are_read_only(cache: Cache, s3: Any, bucket: str,
                                                             s3_creds: dict[str, str]) -> None:
    for key, body in {"m/config.json": b"{}", "m/sub/weights.bin": DATA, "m/": b""}.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    result = cache.fetch(f"s3://{bucket}/m", s3_creds)  # no trailing '/': not an object, so a prefix
    entry = result.entry
    assert entry.kind == "tree"
    assert sorted(f.path for f in entry.files) == ["config.json", "sub/weights.bin"]
    assert (entry.path / "sub" / "weights.bin").read_bytes() == DATA
    assert oct((entry.path / "config.json").stat().st_mode & 0o777) == "0o444"
    assert oct((entry.path / "sub").stat().st_mode & 0o777) == "0o555"
    assert oct(entry.path.stat().st_mode & 0o777) == "0o555"


def test_a_wrong_user_digest_names_both_digests(cache: Cache, s3: Any, bucket: str, s3_creds: dict[str, str]) -> None:
    s3.put_object(Bucket=bucket, Key="x.bin", Body=DATA)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatchError) as info:
        cache.fetch(f"s3://{bucket}/x.bin", s3_creds, digest=wrong)
    actual = "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert wrong in str(info.value) and actual in str(info.value)
    assert info.value.hint
    assert cache.ls() == []  # never stored
    right = cache.fetch(f"s3://{bucket}/x.bin", s3_creds, digest=actual)
    assert right.entry.file is not None and right.entry.file.read_bytes() == DATA


def test_a_corrupted_byte_on_disk_is_a_digest_mismatch_naming_expected_and_actual(
        cache: Cache, s3: Any, bucket: str, s3_creds: dict[str, str], moto: CountingMoto) -> None:
    """A partial file whose kept prefix was damaged: the resumed download fails its ETag (MD5) check."""
    s3.put_object(Bucket=bucket, Key="w.bin", Body=DATA)
    r = resolve(f"s3://{bucket}/w.bin", s3_creds)
    partial = cache.root / "partial" / r.identity / "tree" / "w.bin"
    partial.parent.mkdir(parents=True)
    damaged = bytearray(DATA[:100_000])
    damaged[5] ^= 0xFF
    partial.write_bytes(bytes(damaged))
    with pytest.raises(DigestMismatchError) as info:
        cache.fetch(f"s3://{bucket}/w.bin", s3_creds)
    err = info.value
    assert err.expected == f"md5:{hashlib.md5(DATA).hexdigest()}"
    assert err.actual == f"md5:{hashlib.md5(bytes(damaged) + DATA[100_000:]).hexdigest()}"
    assert err.expected in str(err) and err.actual in str(err) and "fetch again" in err.hint
    assert moto.object_gets("w.bin")[0].range == "bytes=100000-"
    assert not partial.exists()  # the damaged file is gone: the next fetch starts clean
    assert cache.fetch(f"s3://{bucket}/w.bin", s3_creds).outcome == "downloaded"


def test_bad_credentials_name_authentication_and_the_secret_command(
        tmp_path: Path, s3: Any, bucket: str, s3_creds: dict[str, str], moto: CountingMoto) -> None:
    import httpx

    s3.put_object(Bucket=bucket, Key="x.bin", Body=b"x")
    httpx.post(f"{moto.url}/moto-api/reset-auth", content=b"0").raise_for_status()  # moto checks keys from now on
    try:
        with pytest.raises(AuthError) as info:
            Cache(tmp_path / "c").fetch(f"s3://{bucket}/x.bin", {**s3_creds, "AWS_ACCESS_KEY_ID": "AKIAWRONG"})
    finally:
        httpx.post(f"{moto.url}/moto-api/reset-auth", content=b"inf").raise_for_status()
    text = str(info.value)
    assert "authentication" in text and "sub secret create" in text
    assert "AWS_ACCESS_KEY_ID" in text
    assert "testing" not in text  # the secret key is never printed


def test_a_missing_object_and_prefix_is_not_found(cache: Cache, bucket: str, s3_creds: dict[str, str]) -> None:
    with pytest.raises(SourceNotFoundError, match="no object"):
        cache.fetch(f"s3://{bucket}/nothing/here", s3_creds)


def test_threads_fetching_the_same_object_download_it_once(cache: Cache, s3: Any, bucket: str,
                                                          s3_creds: dict[str, str], moto: CountingMoto) -> None:
    s3.put_object(Bucket=bucket, Key="big.bin", Body=DATA * 10)
    moto.throttle.rate = 6_000_000  # about half a second: the others arrive while it downloads
    results: list[str] = []

    def run() -> None:
        results.append(cache.fetch(f"s3://{bucket}/big.bin", s3_creds).outcome)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["cached", "cached", "cached", "downloaded"]
    assert len(moto.object_gets("big.bin")) == 1


def test_a_full_object_sha256_checksum_is_checked_and_known_up_front(
        cache: Cache, s3: Any, bucket: str, s3_creds: dict[str, str], moto: CountingMoto) -> None:
    s3.put_object(Bucket=bucket, Key="a/w.bin", Body=DATA, ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=bucket, Key="b/w.bin", Body=DATA, ChecksumAlgorithm="SHA256")
    r = resolve(f"s3://{bucket}/a/w.bin", s3_creds)
    assert "sha256:" + hashlib.sha256(DATA).hexdigest() in r.files[0].expect
    cache.fetch(f"s3://{bucket}/a/w.bin", s3_creds)
    other = cache.fetch(f"s3://{bucket}/b/w.bin", s3_creds)
    assert other.outcome == "cached"  # same name and bytes, known before reading them
    assert moto.object_gets("b/w.bin") == []
