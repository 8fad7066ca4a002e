#!/bin/sh
# Model contract: JupyterLab on port 8888, rooted at /model (src/generate.ipynb
# loads /model/saved). The orchestrator sets JUPYTER_TOKEN; Jupyter reads it.
# JupyterLab itself is started by the shared substratus-ml package (images/ml).
exec substratus-ml notebook --root /model
