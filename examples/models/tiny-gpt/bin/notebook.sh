#!/bin/sh
# Model contract: JupyterLab on port 8888, rooted at /model (src/generate.ipynb
# loads /model/saved). The orchestrator sets JUPYTER_TOKEN; Jupyter reads it.
set -eu
mkdir -p /model/logs
[ -n "${JUPYTER_TOKEN:-}" ] || echo "notebook.sh: JUPYTER_TOKEN is not set; using a random token (see the log URL)" >&2
exec jupyter lab \
  --ServerApp.ip=0.0.0.0 \
  --ServerApp.port=8888 \
  --ServerApp.root_dir=/model \
  --ServerApp.open_browser=False \
  --ServerApp.allow_root=True \
  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate
