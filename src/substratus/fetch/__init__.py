"""Models and datasets from a URI: resolve, download, verify and share them in one cache.

    uris (substratus.resources.uris)  which URIs a manifest may name (pure)
    sources    URI + a secret's keys -> the backend that reads it; `resolve()`
    s3, web, hub, local               the backends (boto3, httpx, huggingface_hub, files)
    listing    Resolved / RemoteFile: what a URI stands for now, and its identity
    download   resumable, verified downloads into partial/
    archive    safe unpacking of .tar, .tar.gz, .tgz, .zip
    store      the directory layout: entries, references, aliases, pruning
    cache      Cache.fetch / ls / prune: what callers use
    progress   bytes, rate and ETA through a callback
    locks      flock across threads and processes
    digests    sha256/md5/git blob digests, the canonical manifest
    errors     FetchError and its branch of the exception tree
    __main__   `python -m substratus.fetch fetch|ls|prune`: init containers, Jobs, people

Importing this package imports no client library: each backend imports its own
when a URI of its scheme is fetched.
"""
