"""Artifacts of runs (loaded data, trained models, logs) and uploaded sources, kept
in an artifact store that pods and the operator can reach: S3-compatible or GCS
object storage through fsspec, or a ReadWriteMany volume (a local path where mounted).

    store    ArtifactStore: keys -> files and directories, tarballs
    layout   where each object's runs live, as keys (the Kubernetes counterpart of
             reconcile.layout)
    __main__ `python -m substratus.artifacts fetch|sync`, run inside generated pods
"""
