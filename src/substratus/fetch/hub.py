"""hf:// sources: Hugging Face hub repositories (models, datasets) at a pinned commit.

Resolving goes through `huggingface_hub`'s own client (`HfApi.repo_info` with
`files_metadata=True`: `GET {endpoint}/api/{models|datasets}/{repo}/revision/{rev}?blobs=true`):
the revision becomes a commit sha, and each file comes with its size and either
its LFS SHA-256 or its git blob id; both are checked after the download. Files
are read from the hub's resolve endpoint at that commit (`hf_hub_url`:
`{endpoint}/[datasets/]{repo}/resolve/{commit}/{file}`, redirected to a CDN for
large files) by the same ranged reader as https:// URLs, so resuming,
verification and progress are one code path; the bytes at a commit never change,
so a resumed read needs no validator.

Credentials: HF_TOKEN (gated and private repos), HF_ENDPOINT (a mirror or a
self-hosted hub; default huggingface_hub's own, which honours the HF_ENDPOINT
of the process). No token means no token: the machine's own login is not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import httpx

from substratus.fetch.errors import SECRET_HINT, AuthError, FetchError, SourceNotFoundError
from substratus.fetch.listing import Kind, RemoteFile, Resolved, Stream, safe_path
from substratus.fetch.web import http_client, open_range
from substratus.resources.uris import HubURI

TOKEN_HINT = f"{SECRET_HINT}: HF_TOKEN (a read token; for a gated model, accept its terms on the hub first)"


class HubSource:
    def __init__(self, uri: HubURI, credentials: Mapping[str, str], *, raw: str = "",
                 client: Optional[httpx.Client] = None) -> None:
        from huggingface_hub import constants

        self.uri = uri
        self.raw = raw or str(uri)
        self.endpoint = (credentials.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        self.token: Optional[str] = credentials.get("HF_TOKEN") or None
        self.client = client or http_client()

    def resolve(self) -> Resolved:
        info = self._repo_info()
        commit = str(info.sha)
        siblings = info.siblings or []
        files = self._files(siblings, commit)
        single = bool(self.uri.subpath) and any(str(s.rfilename) == self.uri.subpath for s in siblings)
        kind: Kind = "file" if single else "tree"
        origin = f"hf {self.endpoint} {self.uri.repo_type} {self.uri.repo_id}"
        return Resolved(self.raw, origin, kind, tuple(files), revision=commit)

    def _repo_info(self) -> Any:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, RepositoryNotFoundError,
                                            RevisionNotFoundError)

        api = HfApi(endpoint=self.endpoint, token=self.token or False)
        try:
            return api.repo_info(self.uri.repo_id, repo_type=self.uri.repo_type, revision=self.uri.revision,
                                 files_metadata=True)
        except GatedRepoError as err:
            raise AuthError(f"{self.raw}: {self.uri.repo_id} is gated: the hub refused access "
                            f"({_status(err)}, {'token refused' if self.token else 'no token given'})",
                            uri=self.raw, hint=TOKEN_HINT) from err
        except RevisionNotFoundError as err:
            raise SourceNotFoundError(f"{self.raw}: revision {self.uri.revision!r} does not exist in "
                                      f"{self.uri.repo_id}", uri=self.raw,
                                      hint="give a branch, tag or commit of the repository") from err
        except RepositoryNotFoundError as err:
            raise self._missing_or_private(err) from err
        except HfHubHTTPError as err:
            if _status(err) in (401, 403):
                raise AuthError(f"{self.raw}: the hub refused access ({_status(err)})", uri=self.raw,
                                hint=TOKEN_HINT) from err
            raise FetchError(f"{self.raw}: the hub at {self.endpoint} answered {_status(err)}: {err}",
                             uri=self.raw, hint="try again later, or check HF_ENDPOINT") from err
        except Exception as err:  # noqa: BLE001 - the transport errors of whichever HTTP library the hub client uses
            raise FetchError(f"{self.raw}: could not reach the hub at {self.endpoint}: {type(err).__name__}: {err}",
                             uri=self.raw, hint="check HF_ENDPOINT and the network") from err

    def _missing_or_private(self, err: Exception) -> Exception:
        status = _status(err)
        if status in (401, 403) and not self.token:
            return AuthError(f"{self.raw}: authentication required: {self.uri.repo_id} does not exist or is private "
                             f"(the hub answered {status} to a request without a token)", uri=self.raw,
                             hint=f"check the name; if the repository is private: {TOKEN_HINT}")
        if status in (401, 403):
            return AuthError(f"{self.raw}: the hub refused the token for {self.uri.repo_id} ({status})",
                             uri=self.raw, hint=TOKEN_HINT)
        return SourceNotFoundError(f"{self.raw}: repository {self.uri.repo_id} not found on {self.endpoint}",
                                   uri=self.raw, hint="check the organisation and repository names")

    def _files(self, siblings: list[Any], commit: str) -> list[RemoteFile]:
        from huggingface_hub import hf_hub_url

        sub = self.uri.subpath
        out = []
        for sib in siblings:
            name = str(sib.rfilename)
            if sub and name != sub and not name.startswith(sub + "/"):
                continue
            rel = name.rsplit("/", 1)[-1] if name == sub else name[len(sub) + 1:] if sub else name
            try:
                rel = safe_path(rel)
            except ValueError as err:
                raise FetchError(f"{self.raw}: file {name!r} cannot be stored: {err}", uri=self.raw) from err
            if sib.lfs is not None:
                digest = f"sha256:{sib.lfs.sha256}"
            elif sib.blob_id:
                digest = f"gitsha1:{sib.blob_id}"
            else:
                raise FetchError(f"{self.raw}: the hub listed {name} without a size or hash", uri=self.raw,
                                 hint="the endpoint does not answer like the hub's API (files_metadata)")
            url = hf_hub_url(self.uri.repo_id, name, repo_type=self.uri.repo_type, revision=commit,
                             endpoint=self.endpoint)
            out.append(RemoteFile(path=rel, size=sib.size, version=digest, location=url, expect=(digest,)))
        if not out:
            where = f" under {sub!r}" if sub else ""
            raise SourceNotFoundError(f"{self.raw}: no files{where} in {self.uri.repo_id} at {commit[:12]}",
                                      uri=self.raw, hint="check the sub-path against the repository's files")
        return out

    def open(self, file: RemoteFile, start: int) -> Stream:
        from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]  # public, lazily exported

        headers = build_hf_headers(token=self.token or False)
        return open_range(self.client, file, start, raw=self.raw, has_token=bool(self.token), headers=headers,
                          immutable=True)


def _status(err: Exception) -> int:
    response = getattr(err, "response", None)
    return int(getattr(response, "status_code", 0) or 0)
