"""The Kubernetes runtime: the `Runtime` verbs as Kubernetes objects.

    settings   what a cluster operator configures (the install ConfigMap)
    names      object names and label values Kubernetes accepts
    podspec    the parts every generated pod shares: security, artifacts, GPUs
    workloads  load/train Jobs, server Deployment + Service, notebook Pod + Service + Secret
    builds     image builds as BuildKit Jobs (git, uploaded dir, trained model)
    install    what `sub kube install` applies: namespace, CRDs, RBAC, ConfigMap, operator
    client     dict-in, dict-out REST over the official client (the only kubernetes import)
    registry   image configs read from an OCI registry (image_info)
    runtime    KubernetesRuntime, the Runtime protocol over the API

Everything but `client`, `registry` and `runtime` is pure: plain dicts out,
checked by the validation tier against several Kubernetes versions.
"""
