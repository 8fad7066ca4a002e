"""The control plane's HTTP JSON API (FastAPI) and the daemon that serves it."""
