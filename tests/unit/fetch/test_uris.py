"""resources.uris: the URI forms a manifest may name, and what each refusal says."""

from __future__ import annotations

import pytest

from substratus.resources.uris import FileURI, HttpURI, HubURI, S3URI, check_uri, parse_uri


@pytest.mark.parametrize("uri, parsed", [
    ("s3://my-bucket/models/tiny/model.bin", S3URI("my-bucket", "models/tiny/model.bin", False)),
    ("s3://my-bucket/models/tiny/", S3URI("my-bucket", "models/tiny", True)),
    ("s3://my-bucket", S3URI("my-bucket", "", True)),
    ("file:///srv/models/tiny", FileURI("/srv/models/tiny")),
    ("file://localhost/srv/a%20b.txt", FileURI("/srv/a b.txt")),
    ("https://example.com/files/data.jsonl", HttpURI("https://example.com/files/data.jsonl", "data.jsonl", None)),
    ("https://example.com/r/tiny.tar.gz?sig=1", HttpURI("https://example.com/r/tiny.tar.gz?sig=1", "tiny.tar.gz",
                                                        ".tar.gz")),
    ("http://127.0.0.1:8080/a.ZIP", HttpURI("http://127.0.0.1:8080/a.ZIP", "a.ZIP", ".zip", "http")),
    ("https://example.com/", HttpURI("https://example.com/", "download", None)),
    ("hf://openai-community/gpt2", HubURI("openai-community/gpt2", "model", None, "")),
    ("hf://org/repo@v1.0/onnx/model.onnx", HubURI("org/repo", "model", "v1.0", "onnx/model.onnx")),
    ("hf://org/repo@refs%2Fpr%2F1", HubURI("org/repo", "model", "refs/pr/1", "")),
    ("hf://datasets/org/corpus@main/train", HubURI("org/corpus", "dataset", "main", "train")),
])
def test_accepted_forms(uri: str, parsed: object) -> None:
    assert parse_uri(uri) == parsed
    assert check_uri(uri) == uri


@pytest.mark.parametrize("uri, message", [
    ("", "must not be empty"),
    ("models/tiny", "has no scheme"),
    ("gs://bucket/key", "scheme 'gs://' is not accepted"),
    ("ftp://host/file", "is not accepted: give one of s3://"),
    ("https://user:pw@example.com/x", "must not carry a user name and password"),
    ("https://token@example.com/x", "must not carry a user name"),
    ("s3://AKIA:secret@bucket/key", "user name and password"),
    ("s3://Bad_Bucket/key", "not a valid S3 bucket name"),
    ("s3://b/key", "not a valid S3 bucket name"),
    ("s3://bucket/a/../b", "must not contain '.' or '..'"),
    ("file://host/srv/x", "absolute path on this machine"),
    ("file:///srv/../etc/passwd", "'..'"),
    ("https://exa mple.com/x", "not a valid host name"),
    ("https://example.com/x#frag", "fragment"),
    ("hf://gpt2", "does not name a repository"),
    ("hf://org/re--po", "not a valid hub name"),
    ("hf://org/repo@", "is not a branch, tag or commit"),
    ("hf://org/repo@-rm", "is not a branch, tag or commit"),
    ("hf://org/repo/../x", "'..'"),
    ("https://example.com/x\n", "control characters"),
    (" s3://bucket/key", "whitespace"),
])
def test_refusals_say_what_is_wrong(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse_uri(uri)
    assert message in str(info.value)


def test_credentials_refusal_names_the_secret() -> None:
    with pytest.raises(ValueError) as info:
        parse_uri("https://user:pw@example.com/x")
    assert "sub secret create" in str(info.value) and "pw" not in str(info.value)


def test_an_unknown_scheme_lists_every_accepted_form() -> None:
    with pytest.raises(ValueError) as info:
        parse_uri("gs://b/k")
    for form in ("s3://", "file:///", "https://", "hf://ORG/REPO", "hf://datasets/"):
        assert form in str(info.value)


def test_str_round_trips() -> None:
    for uri in ("s3://bucket/a/b", "s3://bucket/a/", "file:///srv/x", "hf://org/repo@refs%2Fpr%2F1/sub",
                "hf://datasets/org/c"):
        assert str(parse_uri(uri)) == uri
