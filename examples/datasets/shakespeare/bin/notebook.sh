#!/bin/sh
# Dataset contract: JupyterLab on port 8888, rooted at /dataset.
# The orchestrator sets JUPYTER_TOKEN; Jupyter reads it (without it, Jupyter makes a
# random token and prints the URL with it in its log).
set -eu
mkdir -p /dataset/logs
[ -n "${JUPYTER_TOKEN:-}" ] || echo "notebook.sh: JUPYTER_TOKEN is not set; using a random token (see the log URL)" >&2
exec jupyter lab \
  --ServerApp.ip=0.0.0.0 \
  --ServerApp.port=8888 \
  --ServerApp.root_dir=/dataset \
  --ServerApp.open_browser=False \
  --ServerApp.allow_root=True \
  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate
