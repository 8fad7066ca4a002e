"""`python -m substratus.fetch`: fill, list and prune a cache from a shell, an init container or a Job.

    fetch URI --cache DIR [--digest sha256:HEX] [--referrer KIND/NS/NAME] [--no-unpack]
          [--progress-file PATH] [-o path|json]
        resolve URI, download and verify what is missing, print the entry's path on stdout
        (or its description as JSON); progress lines go to stderr
    resolve URI [-o json]      what URI stands for now (files, sizes, identities); nothing is downloaded
    ls --cache DIR [-o table|json]
    prune --cache DIR [--max-bytes N] [--referenced KIND/NS/NAME ...]

Credentials come from the environment only, never from the command line (argv
is visible to every process on the machine): AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL,
HF_TOKEN, HF_ENDPOINT, HTTP_BEARER_TOKEN (a pod gets them from the secret with
envFrom). Exit status: 0 done, 1 failed (the message and a hint on stderr),
2 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from substratus.fetch.cache import Cache, FetchResult
from substratus.fetch.errors import FetchError
from substratus.fetch.progress import FetchProgress, human
from substratus.fetch.sources import CREDENTIAL_KEYS, parse, resolve
from substratus.fetch.store import Entry


def credentials_from_env(uri: str, environ: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The keys the URI's scheme uses, from the environment."""
    env = os.environ if environ is None else environ
    keys = CREDENTIAL_KEYS.get(parse(uri).scheme, ())
    return {k: env[k] for k in keys if env.get(k)}


def _progress_printer(every: float, progress_file: Optional[str]) -> Any:
    last = [float("-inf")]

    def report(p: FetchProgress) -> None:
        now = time.monotonic()
        if p.phase == "downloading" and now - last[0] < every:
            return
        last[0] = now
        print(f"substratus-fetch: {p.line()}", file=sys.stderr, flush=True)
        if progress_file and p.phase not in ("resolving", "waiting"):
            with open(progress_file, "a") as fh:
                fh.write(p.jsonl(time.time()) + "\n")

    return report


def entry_doc(entry: Entry) -> dict[str, Any]:
    return {"key": entry.key, "digest": entry.digest, "path": str(entry.path), "kind": entry.kind,
            "size": entry.size, "files": len(entry.files), "created": entry.created, "lastUsed": entry.last_used,
            "referrers": list(entry.referrers), "sources": list(entry.sources),
            "file": str(entry.file) if entry.file else None}


def cmd_fetch(args: argparse.Namespace) -> int:
    cache = Cache(Path(args.cache))
    result: FetchResult = cache.fetch(args.uri, credentials_from_env(args.uri), digest=args.digest,
                                      referrer=args.referrer,
                                      progress=_progress_printer(args.every, args.progress_file),
                                      unpack=not args.no_unpack)
    print(f"substratus-fetch: {result.outcome}: {human(result.entry.size)} in {len(result.entry.files)} file(s); "
          f"{human(result.fetched_bytes)} read from the source", file=sys.stderr)
    if args.output == "json":
        print(json.dumps({**entry_doc(result.entry), "outcome": result.outcome, "fetchedBytes": result.fetched_bytes,
                          "resumedBytes": result.resumed_bytes, "sourceDigest": result.source_digest}))
    else:
        print(result.entry.path)
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    r = resolve(args.uri, credentials_from_env(args.uri), unpack=not args.no_unpack)
    doc = {"uri": r.uri, "kind": r.kind, "revision": r.revision, "archive": r.archive, "stable": r.stable,
           "identity": r.identity, "totalSize": r.total_size,
           "files": [{"path": f.path, "size": f.size, "version": f.version, "expect": list(f.expect)}
                     for f in r.files]}
    if args.output == "json":
        print(json.dumps(doc, indent=2))
    else:
        for f in r.files:
            print(f"{f.path}\t{f.size if f.size is not None else '?'}\t{f.version}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    entries = Cache(Path(args.cache)).ls()
    if args.output == "json":
        print(json.dumps([entry_doc(e) for e in entries], indent=2))
        return 0
    print("KEY           SIZE        FILES  LAST USED            REFERRERS")
    for e in entries:
        used = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.last_used))
        print(f"{e.key[:12]}  {human(e.size):>10}  {len(e.files):>5}  {used}  {','.join(e.referrers) or '-'}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    referenced = set(args.referenced) if args.referenced is not None else None
    result = Cache(Path(args.cache)).prune(args.max_bytes, referenced)
    for e in result.removed:
        print(f"removed {e.key[:12]} {human(e.size)} {' '.join(e.sources)}")
    print(f"substratus-fetch: freed {human(result.freed_bytes + result.partial_freed_bytes)}; "
          f"{human(result.kept_bytes)} kept", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m substratus.fetch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="fetch URI into the cache; print the entry's path")
    fetch.add_argument("uri")
    fetch.add_argument("--cache", required=True, help="the cache directory")
    fetch.add_argument("--digest", help="sha256:HEX the content must have (docs/uris.md)")
    fetch.add_argument("--referrer", help="KIND/NAMESPACE/NAME of the object using the entry")
    fetch.add_argument("--no-unpack", action="store_true", help="keep an http(s) archive as one file")
    fetch.add_argument("--every", type=float, default=2.0, help="seconds between progress lines (default 2)")
    fetch.add_argument("--progress-file", help="also append progress.jsonl lines here (steps are bytes)")
    fetch.add_argument("-o", "--output", choices=("path", "json"), default="path")
    res = sub.add_parser("resolve", help="list what URI stands for now; download nothing")
    res.add_argument("uri")
    res.add_argument("--no-unpack", action="store_true")
    res.add_argument("-o", "--output", choices=("table", "json"), default="table")
    ls = sub.add_parser("ls", help="list the cache's entries")
    ls.add_argument("--cache", required=True)
    ls.add_argument("-o", "--output", choices=("table", "json"), default="table")
    prune = sub.add_parser("prune", help="remove unreferenced entries")
    prune.add_argument("--cache", required=True)
    prune.add_argument("--max-bytes", type=int, help="keep at most this many bytes (least recently used go first)")
    prune.add_argument("--referenced", action="append", help="a referrer that still exists (repeat); others are "
                       "forgotten first")
    return p


COMMANDS = {"fetch": cmd_fetch, "resolve": cmd_resolve, "ls": cmd_ls, "prune": cmd_prune}


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except FetchError as err:
        print(f"substratus-fetch: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("substratus-fetch: interrupted; the next fetch resumes where this one stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
