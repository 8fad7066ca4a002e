"""What `sub kube install` applies: the operator and everything it needs.

    Namespace           the operator's own (Pod Security `restricted`)
    CRDs                Dataset, Model, ModelServer, Notebook (resources.crd)
    ServiceAccount      the operator's identity
    ClusterRole(+Binding)  exactly the verbs the operator uses, nothing more
    Role(+Binding)      reading its settings ConfigMap in its own namespace
    ConfigMap           settings.yaml (runtimes.kubernetes.settings)
    Deployment          one operator replica (kopf --standalone: no peering)

Pure: a list of dicts, printed by `--dry-run` and validated by the tests
against several Kubernetes versions in strict mode.
"""

from __future__ import annotations

from typing import Any

from substratus.resources import crd as crds
from substratus.runtimes.kubernetes import podspec
from substratus.runtimes.kubernetes.settings import SETTINGS_KEY, KubeSettings

OPERATOR = "substratus-operator"
SETTINGS_CONFIGMAP = "substratus-settings"
HEALTH_PORT = 8081  # the operator's own liveness endpoint; not the contract's server port
PART_OF = {"app.kubernetes.io/part-of": "substratus"}
OPERATOR_LABELS = {**PART_OF, "app.kubernetes.io/name": OPERATOR, "app.kubernetes.io/component": "operator"}


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def operator_rules() -> list[dict[str, Any]]:
    """Least privilege: each rule names the part of the operator that needs it."""
    plurals = [crds.plural(k) for k in ("Dataset", "Model", "ModelServer", "Notebook")]
    return [
        # kopf watches the custom resources, keeps its progress in annotations, writes status.
        _rule([crds.GROUP], plurals, ["get", "list", "watch", "patch", "update"]),
        _rule([crds.GROUP], [f"{p}/status" for p in plurals], ["get", "patch", "update"]),
        _rule([crds.GROUP], [f"{p}/finalizers" for p in plurals], ["update"]),
        # kopf checks that the CRDs exist and follows namespaces when watching cluster-wide.
        _rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"]),
        _rule([""], ["namespaces"], ["get", "list", "watch"]),
        # The workloads: builds, loads and trainings as Jobs; servers; notebooks; contract checks.
        _rule(["batch"], ["jobs"], ["get", "list", "watch", "create", "patch", "delete"]),
        _rule(["apps"], ["deployments"], ["get", "list", "watch", "create", "patch", "delete"]),
        _rule([""], ["pods", "services"], ["get", "list", "watch", "create", "patch", "delete"]),
        _rule([""], ["pods/log"], ["get"]),
        # Notebook tokens: written and removed, never listed or watched.
        _rule([""], ["secrets"], ["get", "create", "patch", "delete"]),
        # kopf posts events about the objects it handles.
        _rule([""], ["events"], ["create", "patch"]),
        _rule(["events.k8s.io"], ["events"], ["create", "patch"]),
        # Whether a GPU can be had at all (allocatable nvidia.com/gpu on some node).
        _rule([""], ["nodes"], ["get", "list"]),
    ]


def namespace(settings: KubeSettings) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": settings.namespace,
                         "labels": {**PART_OF, "pod-security.kubernetes.io/enforce": "restricted"}}}


def rbac(settings: KubeSettings) -> list[dict[str, Any]]:
    ns = settings.namespace
    subject = [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": ns}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": OPERATOR, "namespace": ns,
                                                                    "labels": OPERATOR_LABELS}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": OPERATOR, "labels": OPERATOR_LABELS}, "rules": operator_rules()},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": OPERATOR, "labels": OPERATOR_LABELS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OPERATOR},
         "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": OPERATOR, "namespace": ns, "labels": OPERATOR_LABELS},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [SETTINGS_CONFIGMAP],
                    "verbs": ["get", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": OPERATOR, "namespace": ns, "labels": OPERATOR_LABELS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR},
         "subjects": subject},
    ]


def settings_configmap(settings: KubeSettings) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": SETTINGS_CONFIGMAP, "namespace": settings.namespace, "labels": PART_OF},
            "data": {SETTINGS_KEY: settings.to_yaml()}}


def operator_deployment(settings: KubeSettings) -> dict[str, Any]:
    container = {
        "name": "operator", "image": settings.operator_image, "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "substratus.kube"],
        "args": ["--all-namespaces", "--liveness", f"http://0.0.0.0:{HEALTH_PORT}/healthz"],
        "env": [{"name": "SUBSTRATUS_OPERATOR_NAMESPACE",
                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "SUBSTRATUS_SETTINGS_CONFIGMAP", "value": SETTINGS_CONFIGMAP},
                *podspec.artifact_env(settings)],
        "ports": [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 10,
                          "failureThreshold": 6},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": podspec.own_container_security(),
        "volumeMounts": [{"name": podspec.TMP_VOLUME, "mountPath": "/tmp"}],
    }
    if settings.artifact_secret:
        container["envFrom"] = [{"secretRef": {"name": settings.artifact_secret}}]
    pod = {"serviceAccountName": OPERATOR, "containers": [container],
           "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
           "volumes": [{"name": podspec.TMP_VOLUME, "emptyDir": {}}],
           **podspec.placement(settings, gpu=False)}
    if settings.registry_secret:
        pod["imagePullSecrets"] = [{"name": settings.registry_secret}]
    selector = {"app.kubernetes.io/name": OPERATOR}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": OPERATOR, "namespace": settings.namespace, "labels": OPERATOR_LABELS},
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"},  # one operator at a time
                     "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": OPERATOR_LABELS}, "spec": pod}}}


def bundle(settings: KubeSettings) -> list[dict[str, Any]]:
    """Everything, in the order it must be applied."""
    return [namespace(settings), *crds.crds(), *rbac(settings), settings_configmap(settings),
            operator_deployment(settings)]
