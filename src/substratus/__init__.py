"""Substratus for Python: orchestrate ML containers through container contracts.

Layers (checked by import-linter, see `.importlinter`), top to bottom:
    cli                 -> talk to people: `sub`
    api, kube           -> the local backend's HTTP API and daemon; the Kubernetes backend (operator)
    local, verify       -> the local backend (store, controller, observer, executor, GC); `sub verify`
    reconcile           -> the core both backends share: pure planners, actions, state, outcomes, queue
    build, sources,     -> image names and the contract checks on images; git and dir sources;
    sync, baseimages       `sub notebook`'s file sync; `sub images build` (the offline base images)
    runtimes            -> one narrow engine interface: podman/docker, Kubernetes, fake; the readiness
                           rule applied by HTTP (locally and by the helper in Kubernetes pods)
    artifacts           -> the artifact store used on Kubernetes
    resources, bundle   -> the Dataset/Model/ModelServer/Notebook schemas; files shipped in the package
    contract            -> the container contract as data: ports, paths, env names, mounts, the readiness
                           rule, the clause catalogue (ids and fixes) that `sub verify` and ContractViolation share
    errors              -> the one exception tree
The two backends (local, kube) never import each other.
"""

__version__ = "0.1.0"
