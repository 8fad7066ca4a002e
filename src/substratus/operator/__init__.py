"""The Kubernetes operator: kopf watching Dataset, Model, ModelServer and Notebook.

Phase 1 (this code) is a skeleton: it logs in (in-cluster service account or
kubeconfig), reads its settings ConfigMap, watches the four custom resources
and logs what it observes, without changing them. Reconciling them through the
controller core's planners, with `runtimes.kubernetes.KubernetesRuntime`
carrying out their actions, is phase 2 of issue 9; until then the operator
writes no status, creates nothing, and says so when it starts.
"""
