"""s3:// sources through the AWS SDK (boto3): any server speaking the S3 API.

Credentials use the SDK's own names, from the secret the object names:
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (optional),
AWS_DEFAULT_REGION (default us-east-1) and AWS_ENDPOINT_URL (MinIO, Ceph,
moto...). Without an access key the SDK's default chain applies (IRSA, an
instance profile).

Resolving asks for metadata only (HeadObject, or ListObjectsV2 under a
prefix): ETag, size, last-modified and, when the object was uploaded with one,
its full-object SHA-256 checksum. A single-part ETag is the MD5 of the bytes and
is checked too, except under SSE-KMS/SSE-C where it is not (the GET response
says which). Reads are ranged GETs with If-Match on the ETag: a resumed file is
never finished with bytes of a newer object.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any, Optional

from substratus.fetch.download import CHUNK, Interrupted
from substratus.fetch.errors import SECRET_HINT, AuthError, FetchError, SourceChangedError, SourceNotFoundError
from substratus.fetch.listing import RemoteFile, Resolved, Stream, safe_path
from substratus.resources.uris import S3URI

MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')
AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken",
              "AuthorizationHeaderMalformed", "403", "401", "InvalidClientTokenId", "AllAccessDisabled"}
MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
MAX_OBJECTS = 100_000


def client(credentials: Mapping[str, str]) -> Any:
    """A boto3 S3 client from the secret's keys (without an access key, the SDK's default chain).

    Clients are kept per set of credentials: making one costs about 0.35 s of CPU (measured here), and
    the control plane resolves a source on every pass. boto3 clients are thread-safe.
    """
    return _client(tuple(sorted((k, v) for k, v in credentials.items() if k in KEYS)))


@functools.lru_cache(maxsize=16)
def _client(items: tuple[tuple[str, str], ...]) -> Any:
    import boto3
    from botocore.config import Config

    credentials = dict(items)
    session = boto3.session.Session(
        aws_access_key_id=credentials.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=credentials.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=credentials.get("AWS_SESSION_TOKEN") or None,
        region_name=credentials.get("AWS_DEFAULT_REGION") or "us-east-1")
    config = Config(retries={"max_attempts": 4, "mode": "standard"}, max_pool_connections=16,
                    connect_timeout=20, read_timeout=60)
    return session.client("s3", endpoint_url=credentials.get("AWS_ENDPOINT_URL") or None, config=config)


class S3Source:
    def __init__(self, uri: S3URI, credentials: Mapping[str, str], *, raw: str = "", s3: Any = None) -> None:
        self.uri = uri
        self.raw = raw or str(uri)
        self.endpoint = credentials.get("AWS_ENDPOINT_URL") or "aws"
        self.s3 = s3 if s3 is not None else client(credentials)

    def resolve(self) -> Resolved:
        origin = f"s3 {self.endpoint} {self.uri.bucket}"
        if not self.uri.prefix_only:
            single = self._head(self.uri.key)
            if single is not None:
                return Resolved(self.raw, origin, "file", (single,))
        files = self._list(self.uri.key + "/" if self.uri.key else "")
        if not files:
            where = f"s3://{self.uri.bucket}/{self.uri.key}"
            raise SourceNotFoundError(f"{self.raw}: no object {where} and no objects under {where.rstrip('/')}/",
                                      uri=self.raw, hint="check the bucket and key (`aws s3 ls` lists them)")
        return Resolved(self.raw, origin, "tree", tuple(files))

    def _head(self, key: str) -> Optional[RemoteFile]:
        try:
            head = self.s3.head_object(Bucket=self.uri.bucket, Key=key, ChecksumMode="ENABLED")
        except Exception as err:  # noqa: BLE001 - botocore's errors are classified once, here
            if _code(err) in MISSING_CODES and _code(err) != "NoSuchBucket":
                return None
            raise self._error(err, "read metadata of") from err
        name = key.rsplit("/", 1)[-1]
        return _remote(name, key, int(head["ContentLength"]), head["ETag"], head.get("ChecksumSHA256"),
                       head.get("ChecksumType"))

    def _list(self, prefix: str) -> list[RemoteFile]:
        files: list[RemoteFile] = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.uri.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith("/") and int(obj["Size"]) == 0:
                        continue  # a "folder" marker made by consoles
                    files.append(_remote(self._relative(obj["Key"], prefix), obj["Key"], int(obj["Size"]),
                                         obj["ETag"], None, None))
                    if len(files) > MAX_OBJECTS:
                        raise FetchError(f"{self.raw}: more than {MAX_OBJECTS} objects under the prefix",
                                         uri=self.raw, hint="name a narrower prefix")
        except FetchError:
            raise
        except Exception as err:  # noqa: BLE001
            raise self._error(err, "list") from err
        return files

    def _relative(self, key: str, prefix: str) -> str:
        try:
            return safe_path(key[len(prefix):])
        except ValueError as err:
            raise FetchError(f"{self.raw}: object key {key!r} cannot be a file in the cache: {err}", uri=self.raw,
                             hint="keys under the prefix must be relative paths without '.', '..' or '//'") from err

    def open(self, file: RemoteFile, start: int) -> Stream:
        args: dict[str, Any] = {"Bucket": self.uri.bucket, "Key": file.location, "IfMatch": file.validator}
        if start:
            args["Range"] = f"bytes={start}-"
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        try:
            response = self.s3.get_object(**args)
        except (ClientError, NoCredentialsError, PartialCredentialsError) as err:
            raise self._error(err, "read") from err
        except Exception as err:  # noqa: BLE001 - connection errors (botocore, urllib3): the next attempt resumes
            raise Interrupted(f"{type(err).__name__}: {err}") from err
        body = response["Body"]
        sse = response.get("ServerSideEncryption") or ""
        skip = frozenset({"md5"}) if sse.startswith("aws:kms") or response.get("SSECustomerAlgorithm") else frozenset()
        return Stream(start=start, chunks=_chunks(body), skip_checks=skip, close=body.close)

    def _error(self, err: Exception, verb: str) -> FetchError:
        code = _code(err)
        where = f"s3://{self.uri.bucket}/{self.uri.key}"
        if code in AUTH_CODES or type(err).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return AuthError(f"{self.raw}: authentication failed: S3 at {self.endpoint} refused to let us {verb} "
                             f"{where} ({code or type(err).__name__})", uri=self.raw,
                             hint=f"{SECRET_HINT}: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL "
                                  "for a server other than AWS); check that the key may read the bucket")
        if code in MISSING_CODES:
            return SourceNotFoundError(f"{self.raw}: {where} does not exist ({code})", uri=self.raw,
                                       hint="check the bucket and key")
        if code in ("PreconditionFailed", "412"):
            return SourceChangedError(f"{self.raw}: the object changed while it was being fetched", uri=self.raw,
                                      hint="fetch again: the new object is resolved and downloaded")
        return FetchError(f"{self.raw}: could not {verb} {where} at {self.endpoint}: {type(err).__name__}: {err}",
                          uri=self.raw, hint="check AWS_ENDPOINT_URL and that the server answers")


def _remote(path: str, key: str, size: int, etag: str, checksum: Optional[str], kind: Optional[str]) -> RemoteFile:
    expect = []
    m = MD5_ETAG.match(etag)
    if m:
        expect.append(f"md5:{m.group(1)}")
    if checksum and "-" not in checksum and kind in (None, "FULL_OBJECT"):
        expect.append("sha256:" + base64.b64decode(checksum).hex())
    return RemoteFile(path=path, size=size, version=f"etag:{etag}", location=key, expect=tuple(expect),
                      validator=etag)


def _code(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _chunks(body: Any) -> Iterator[bytes]:
    from botocore.exceptions import BotoCoreError
    from urllib3.exceptions import HTTPError

    try:
        yield from body.iter_chunks(chunk_size=CHUNK)
    except (BotoCoreError, HTTPError, OSError) as err:  # a dropped or stalled connection: the next attempt resumes
        raise Interrupted(f"{type(err).__name__}: {err}") from err
