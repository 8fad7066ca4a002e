"""The Kubernetes operator: Dataset, Model, ModelServer and Notebook resources reconciled on a cluster.

Each object gets level-based passes through the reconcile core (`reconcile.core.plan_for`), the
function the local control plane calls; `runtimes.kubernetes.KubernetesRuntime` carries their
actions out as Jobs, Deployments, Pods, Services and BuildKit builds.

    app          entry point: options, login, settings, the kopf registry
    handlers     kopf: watch events handed to the manager, the finalizer
    manager      the work queue, its worker threads and the dependency index (no daemon per object)
    reconciler   one pass: read, observe, plan, write status and state, act
    observe      the planners' Snapshot from the cluster, the registry and the artifact store
    executor     the planners' actions on the cluster, reporting the local outcomes
    records      the typed state in the `substratus.ai/state` annotation; tokens in Secrets
    sources      git and uploaded-dir sources resolved on the cluster
"""
