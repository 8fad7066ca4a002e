"""The artifact store and the pod helpers, against moto's S3 server (real HTTP) and a
volume path (the pvc:// mode), with one suite for both."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path, PurePosixPath

import pytest

from substratus.artifacts.layout import ArtifactLayout
from substratus.artifacts.store import ArtifactError, ArtifactStore, StoreURL, pack


@pytest.fixture(params=["s3", "pvc"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('bucket')}/team-a"
    (tmp_path / "volume").mkdir()
    return "pvc://substratus-artifacts/team-a"


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(store_url, mount=tmp_path / "volume" if store_url.startswith("pvc") else None)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_store_urls() -> None:
    assert StoreURL.parse("s3://b/p/q/") == StoreURL("s3", "b", "p/q")
    assert StoreURL.parse("gcs://b") == StoreURL("gs", "b", "")
    for bad in ("b/p", "ftp://b", "s3://", "pvc:/x"):
        with pytest.raises(ArtifactError, match="not an artifact store URL"):
            StoreURL.parse(bad)
    with pytest.raises(ArtifactError, match="only be read where it is mounted"):
        ArtifactStore("pvc://claim")


def test_keys_never_leave_the_store(store: ArtifactStore) -> None:
    for bad in ("../x", "a/../../b", "/etc/passwd", ""):
        with pytest.raises(ArtifactError, match="not a relative path"):
            store.path(bad)


def test_directory_round_trip_and_content_checks(store: ArtifactStore, tmp_path: Path) -> None:
    out = tmp_path / "trained"
    (out / "sub").mkdir(parents=True)
    (out / "bigrams.tsv").write_text("a\tb\t3\n")
    (out / "sub" / "params").write_bytes(b"\x00\x01")
    key = ArtifactLayout().run_dir("Model", "default", "tiny", "abcdef0123456789ff") / "trained"
    assert key == PurePosixPath("objects/model/default/tiny/abcdef0123456789/trained")
    assert not store.has_content(key)
    assert store.upload_dir(out, key) == 2
    assert store.has_content(key) and store.exists(key)
    assert store.list(key) == ["bigrams.tsv", "sub/params"]
    back = tmp_path / "back"
    assert store.download(key, back) == 2
    assert tree(back) == tree(out)
    # upload_dir replaces: a file gone locally is gone in the store
    (out / "sub" / "params").unlink()
    store.upload_dir(out, key)
    assert store.list(key) == ["bigrams.tsv"]
    assert store.remove(key) and not store.exists(key) and not store.remove(key)


def test_an_upload_never_follows_a_link_the_job_planted(store: ArtifactStore, tmp_path: Path) -> None:
    """Issue 25 item 3 on a cluster: trained/x -> /proc/self/environ would have uploaded the uploader's
    own environment (its store credentials) as part of the model."""
    secret = tmp_path / "uploader-secret"
    secret.write_text("AWS_SECRET_ACCESS_KEY=x\n")
    out = tmp_path / "trained"
    (out / "sub").mkdir(parents=True)
    (out / "model.bin").write_bytes(b"w")
    (out / "environ").symlink_to(secret)
    (out / "dir").symlink_to(tmp_path)
    os.mkfifo(out / "sub" / "pipe")
    assert store.upload_dir(out, "models/m/trained") == 1
    assert store.list("models/m/trained") == ["model.bin"]


def test_an_empty_file_is_not_content(store: ArtifactStore) -> None:
    store.write_bytes("objects/dataset/default/d/run/data/data.jsonl", b"")
    assert not store.has_content("objects/dataset/default/d/run/data/data.jsonl")
    store.write_bytes("objects/dataset/default/d/run/data/data.jsonl", b'{"text": "x"}\n')
    assert store.has_content("objects/dataset/default/d/run/data/data.jsonl")
    assert store.read_bytes("objects/dataset/default/d/run/data/data.jsonl") == b'{"text": "x"}\n'


def test_missing_key_is_a_clear_error(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="nothing at .*objects/none") as err:
        store.download("objects/none", tmp_path / "x")
    assert "has not finished" in err.value.hint


def test_dir_sources_travel_as_reproducible_tarballs(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "Dockerfile").write_text("FROM scratch\n")
    (src / "bin" / "load.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "bin" / "load.sh").chmod(0o755)
    assert pack(src) == pack(src)
    key = ArtifactLayout().source_archive("0" * 64)
    assert store.upload_tarball(src, key) is True
    assert store.upload_tarball(src, key) is False  # content-named: nothing sent twice
    dest = tmp_path / "ctx"
    assert store.extract_tarball(key, dest) == 2
    assert tree(dest) == tree(src)
    assert os.access(dest / "bin" / "load.sh", os.X_OK)


@pytest.mark.parametrize("member", ["../escape", "/abs/path", "link"])
def test_unsafe_tarballs_are_refused(store: ArtifactStore, tmp_path: Path, member: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    store.write_bytes("sources/dirs/evil.tar.gz", buf.getvalue())
    with pytest.raises(ArtifactError, match="refusing"):
        store.extract_tarball("sources/dirs/evil.tar.gz", tmp_path / "ctx")
    assert not (tmp_path / "escape").exists()


def helper(*args: str, env: dict[str, str] | None = None) -> list[str]:
    return [sys.executable, "-m", "substratus.artifacts", *args]


def test_fetch_helper_fills_inputs_and_writes_the_dockerfile(bucket: str, s3_env: dict[str, str],
                                                             tmp_path: Path) -> None:
    url = f"s3://{bucket}/p"
    store = ArtifactStore(url)
    store.write_bytes("objects/dataset/default/d/run/data/data.jsonl", b'{"text": "a"}\n')
    env = {**os.environ, **s3_env, "SUBSTRATUS_DOCKERFILE": "FROM base\nCOPY trained/ /model/saved/\n"}
    proc = subprocess.run(helper("fetch", "--store", url, "--map", f"{tmp_path}/data=objects/dataset/default/d/run/data",
                                 "--write", f"{tmp_path}/ctx/Dockerfile=SUBSTRATUS_DOCKERFILE"),
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "data.jsonl").read_text() == '{"text": "a"}\n'
    assert (tmp_path / "ctx" / "Dockerfile").read_text().startswith("FROM base")
    assert "fetched 1 file(s)" in proc.stderr


def test_fetch_helper_fails_clearly_on_a_missing_input(bucket: str, s3_env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run(helper("fetch", "--store", f"s3://{bucket}", "--map", f"{tmp_path}/d=objects/missing"),
                          env={**os.environ, **s3_env}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"nothing at s3://{bucket}/objects/missing" in proc.stderr


def test_sync_sidecar_uploads_when_stopped(bucket: str, s3_env: dict[str, str], tmp_path: Path) -> None:
    """The sidecar waits for SIGTERM (Kubernetes sends it after the main container exits), then uploads."""
    url = f"s3://{bucket}/p"
    out = tmp_path / "trained"
    out.mkdir()
    proc = subprocess.Popen(helper("sync", "--store", url, "--map", f"{out}=objects/model/default/m/run/trained"),
                            env={**os.environ, **s3_env}, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        assert "waiting for the main container" in proc.stderr.readline()
        (out / "bigrams.tsv").write_text("x\ty\t1\n")  # the main container writes while the sidecar waits
        store = ArtifactStore(url)
        time.sleep(0.5)
        assert not store.exists("objects/model/default/m/run/trained")  # nothing before the signal
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert store.read_bytes("objects/model/default/m/run/trained/bigrams.tsv") == b"x\ty\t1\n"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_layout_publishes_store_urls_and_reads_them_back() -> None:
    layout = ArtifactLayout(store="s3://bucket/team-a")
    key = layout.run_dir("Dataset", "default", "d", "0123456789abcdef0000") / "data" / "d.jsonl"
    url = layout.artifact_url(key)
    assert url == "s3://bucket/team-a/objects/dataset/default/d/0123456789abcdef/data/d.jsonl"
    assert layout.artifact_path(url) == key
    with pytest.raises(ValueError, match="not an artifact of s3://bucket/team-a"):
        layout.artifact_path("file:///tmp/x")
