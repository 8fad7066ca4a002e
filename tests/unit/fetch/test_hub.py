"""hf:// sources through huggingface_hub's client against the hub stand-in (servers.HubStandIn)."""

from __future__ import annotations

import hashlib
import os

import pytest

from substratus.fetch.cache import Cache
from substratus.fetch.errors import AuthError, DigestMismatchError, SourceNotFoundError
from substratus.fetch.sources import resolve
from tests.unit.fetch.servers import HubStandIn, Repo, git_blob_id

WEIGHTS = os.urandom(400_000)
FILES = {"config.json": b'{"model_type": "gpt2"}', "model.safetensors": WEIGHTS, "tokenizer/vocab.json": b"{}",
         "README.md": b"# tiny"}
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def tiny(**kw: object) -> Repo:
    return Repo(files=dict(FILES), lfs={"model.safetensors"}, **kw)  # type: ignore[arg-type]


def test_resolve_pins_the_commit_and_lists_lfs_sha256_and_git_blob_ids(hub: HubStandIn) -> None:
    hub.add("org/tiny", tiny())
    r = resolve("hf://org/tiny", {"HF_ENDPOINT": hub.url})
    assert r.revision == "0123456789abcdef0123456789abcdef01234567" and r.kind == "tree"
    by_path = {f.path: f for f in r.files}
    assert by_path["model.safetensors"].expect == ("sha256:" + hashlib.sha256(WEIGHTS).hexdigest(),)
    assert by_path["config.json"].expect == ("gitsha1:" + git_blob_id(FILES["config.json"]),)
    assert "/resolve/0123456789abcdef0123456789abcdef01234567/" in by_path["config.json"].location
    assert [x.path for x in hub.log.settled()] == ["/api/models/org/tiny"]


def test_a_repo_is_fetched_verified_and_then_known_without_downloading(cache: Cache, hub: HubStandIn) -> None:
    hub.add("org/tiny", tiny())
    creds = {"HF_ENDPOINT": hub.url}
    first = cache.fetch("hf://org/tiny", creds)
    assert first.outcome == "downloaded"
    assert {f.path for f in first.entry.files} == set(FILES)
    assert (first.entry.path / "model.safetensors").read_bytes() == WEIGHTS
    assert any(r.path.startswith("/cdn/") for r in hub.log.settled())  # LFS went through the redirect
    hub.log.clear()
    assert cache.fetch("hf://org/tiny", creds).outcome == "cached"
    assert [r.path for r in hub.log.settled()] == ["/api/models/org/tiny"]


def test_a_revision_and_a_sub_path(cache: Cache, hub: HubStandIn) -> None:
    repo = hub.add("org/tiny", tiny(branches={"v1": OTHER_COMMIT}))
    r = resolve("hf://org/tiny@v1/tokenizer", {"HF_ENDPOINT": hub.url})
    assert r.revision == OTHER_COMMIT and [f.path for f in r.files] == ["vocab.json"]
    single = cache.fetch("hf://org/tiny/model.safetensors", {"HF_ENDPOINT": hub.url}).entry
    assert single.kind == "file" and single.file is not None and single.file.read_bytes() == WEIGHTS
    assert repo.commit != OTHER_COMMIT


def test_a_dataset_repo(cache: Cache, hub: HubStandIn) -> None:
    hub.add("org/corpus", Repo(files={"train.jsonl": b'{"text": "hi"}\n'}), kind="datasets")
    entry = cache.fetch("hf://datasets/org/corpus/train.jsonl", {"HF_ENDPOINT": hub.url}).entry
    assert entry.file is not None and entry.file.read_bytes() == b'{"text": "hi"}\n'


def test_a_gated_repo_without_a_token_names_the_secret_command(cache: Cache, hub: HubStandIn) -> None:
    hub.add("org/gated", tiny(gated_token="hf_good"))
    with pytest.raises(AuthError) as info:
        cache.fetch("hf://org/gated", {"HF_ENDPOINT": hub.url})
    text = str(info.value)
    assert "gated" in text and "no token given" in text
    assert "sub secret create" in text and "HF_TOKEN" in text
    with pytest.raises(AuthError, match="token refused"):
        cache.fetch("hf://org/gated", {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_bad"})
    entry = cache.fetch("hf://org/gated", {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_good"}).entry
    assert (entry.path / "model.safetensors").read_bytes() == WEIGHTS
    assert "hf_good" not in str(entry)


def test_an_unknown_repo_without_a_token_may_be_private(cache: Cache, hub: HubStandIn) -> None:
    with pytest.raises(AuthError, match="does not exist or is private"):
        cache.fetch("hf://org/nope", {"HF_ENDPOINT": hub.url})
    with pytest.raises(SourceNotFoundError, match="not found"):
        cache.fetch("hf://org/nope", {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_x"})


def test_an_unknown_revision_or_sub_path_is_not_found(cache: Cache, hub: HubStandIn) -> None:
    hub.add("org/tiny", tiny())
    with pytest.raises(SourceNotFoundError, match="revision 'nope'"):
        cache.fetch("hf://org/tiny@nope", {"HF_ENDPOINT": hub.url})
    with pytest.raises(SourceNotFoundError, match="no files under 'missing'"):
        cache.fetch("hf://org/tiny/missing", {"HF_ENDPOINT": hub.url})


@pytest.mark.parametrize("bad", ["model.safetensors", "config.json"])
def test_a_corrupted_file_from_the_hub_is_a_mismatch_naming_both_digests(cache: Cache, hub: HubStandIn,
                                                                         bad: str) -> None:
    hub.add("org/tiny", tiny(corrupt={bad}))
    with pytest.raises(DigestMismatchError) as info:
        cache.fetch("hf://org/tiny", {"HF_ENDPOINT": hub.url})
    err = info.value
    assert err.path == bad and err.expected != err.actual
    assert err.expected in str(err) and err.actual in str(err)
    assert cache.ls() == []
