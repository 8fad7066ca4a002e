"""The Kubernetes operator: kopf reconciling Dataset, Model, ModelServer and Notebook resources.

Each object gets level-based passes through the controller core's planners
(`reconcile.jobs`, `reconcile.workloads`), the same functions the local control
plane calls; `runtimes.kubernetes.KubernetesRuntime` carries their actions out
as Jobs, Deployments, Pods, Services and BuildKit builds.

    app          entry point: options, login, settings, the kopf registry
    handlers     kopf: a daemon per object, wake-ups from watch events, the finalizer
    reconciler   one pass: read, observe, plan, write status and state, act
    observe      the planners' Snapshot from the cluster, the registry and the artifact store
    executor     the planners' actions on the cluster, reporting the local outcomes
    records      the typed state in the `substratus.ai/state` annotation; tokens in Secrets
    sources      git and uploaded-dir sources resolved on the cluster
"""
