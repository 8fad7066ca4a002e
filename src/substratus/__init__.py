"""Substratus for Python: orchestrate ML containers through container contracts.

Layers (checked by import-linter, see `.importlinter`):
    cli, api            -> talk to people and to HTTP clients
    controlplane        -> store, plan/apply reconcilers, the daemon
    build, sources      -> turning a source into an image
    images              -> `sub images build`: the offline base images
    runtimes            -> podman/docker, fake (one narrow interface)
    resources           -> the Dataset/Model/ModelServer/Notebook schemas
    bundle              -> files shipped with the package (image contexts, examples)
    errors              -> the one exception tree
"""

__version__ = "0.1.0"
