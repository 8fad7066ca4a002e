"""The control plane's HTTP JSON API (FastAPI) and the daemon that serves it."""

MIN_TOKEN_LENGTH = 32  # the API token's least length: the daemon replaces a shorter one, the app refuses it
MAX_BODY_BYTES = 8 * 1024 * 1024  # a request body's most bytes (413 beyond)
