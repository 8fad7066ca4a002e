#!/bin/sh
# Dataset contract: JupyterLab on port 8888, rooted at /dataset. The orchestrator
# sets JUPYTER_TOKEN, which Jupyter reads. JupyterLab itself is started by the
# shared substratus-ml package (images/ml), once for every example image.
exec substratus-ml notebook --root /dataset
