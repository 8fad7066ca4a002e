"""``substratus-ml serve``: load the model once and run the HTTP server (``serve.sh``)."""

from __future__ import annotations

import os

import torch
import uvicorn

from substratus_ml.app import create_app
from substratus_ml.loading import load_model
from substratus_ml.settings import ServeSettings
from substratus_ml.training import cpu_threads


def serve(settings: ServeSettings, host: str, port: int) -> None:
    """Serve until interrupted; exits with status 1 if the model cannot be loaded."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(cpu_threads(reserve=1))  # one CPU for the event loop
    server: uvicorn.Server | None = None
    failed = False

    def on_load_failure(error: str) -> None:
        nonlocal failed
        failed = True
        if server is not None:
            server.should_exit = True

    app = create_app(settings, lambda: load_model(settings.model_dir), on_load_failure)
    # Our own access log (with latency and tokens) replaces uvicorn's.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False,
                                           log_level="info"))
    server.run()
    if failed:
        raise SystemExit(1)
