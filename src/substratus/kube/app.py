"""Operator entry point on kopf: options, login, settings, the handlers (kube.handlers).

The handlers are registered on a registry of our own (nothing happens at
import time); options are read once here and passed down.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import kopf
import yaml

from substratus.artifacts.__main__ import MOUNT_ENV
from substratus.artifacts.store import ArtifactStore
from substratus.errors import SubstratusError
from substratus.kube.handlers import Handlers
from substratus.kube.manager import Manager
from substratus.kube.reconciler import Reconciler
from substratus.resources import crd
from substratus.resources.objectkey import ObjectKey
from substratus.resources.schema import KINDS
from substratus.runtimes.kubernetes.client import KubeApi, KubeError
from substratus.runtimes.kubernetes.runtime import KubernetesRuntime
from substratus.runtimes.kubernetes.settings import KubeSettings, parse_settings, settings_from_configmap

log = logging.getLogger("substratus.kube")


@dataclass
class Options:
    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    namespaces: list[str] = field(default_factory=list)
    liveness: Optional[str] = None
    settings_file: Optional[str] = None
    operator_namespace: str = "substratus"
    settings_configmap: str = "substratus-settings"
    verbose: bool = False


def parse(argv: Optional[list[str]] = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m substratus.kube",
                                description="Run the Substratus operator (kopf) against a cluster.")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster account, else $KUBECONFIG)")
    p.add_argument("--context", help="kubeconfig context")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", dest="namespaces", default=[],
                       help="watch only this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    p.add_argument("--liveness", help="serve a liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    p.add_argument("--settings-file", help="settings YAML instead of the ConfigMap")
    p.add_argument("--operator-namespace",
                   default=os.environ.get("SUBSTRATUS_OPERATOR_NAMESPACE", "substratus"),
                   help="where the settings ConfigMap lives (env SUBSTRATUS_OPERATOR_NAMESPACE)")
    p.add_argument("--settings-configmap", default=os.environ.get("SUBSTRATUS_SETTINGS_CONFIGMAP", "substratus-settings"))
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    return Options(kubeconfig=a.kubeconfig, context=a.context, namespaces=a.namespaces, liveness=a.liveness,
                   settings_file=a.settings_file, operator_namespace=a.operator_namespace,
                   settings_configmap=a.settings_configmap, verbose=a.verbose)


def load_settings(api: KubeApi, opts: Options) -> KubeSettings:
    """A settings file when given, else the ConfigMap `sub kube install` wrote."""
    if opts.settings_file:
        data = yaml.safe_load(Path(opts.settings_file).read_text()) or {}
        return parse_settings(data, source=opts.settings_file)
    cm = api.get("v1", "ConfigMap", opts.settings_configmap, opts.operator_namespace)
    if cm is None:
        raise SubstratusError(f"ConfigMap {opts.operator_namespace}/{opts.settings_configmap} not found",
                              hint="install first: sub kube install (or pass --settings-file)")
    return settings_from_configmap(cm.get("data") or {})


def artifact_store(settings: KubeSettings) -> Optional[ArtifactStore]:
    """The store the operator judges outputs in: object storage directly; a volume where it is mounted."""
    mount = os.environ.get(MOUNT_ENV)
    if settings.artifact_store.startswith("pvc://") and not mount:
        log.warning("the artifact store %s is a volume not mounted here (%s unset): runs cannot be judged",
                    settings.artifact_store, MOUNT_ENV)
        return None
    return ArtifactStore(settings.artifact_store, endpoint_url=settings.s3_endpoint_url or None,
                         mount=Path(mount) if mount else None)


def registry_for(api: KubeApi, settings: KubeSettings, scratch: Optional[Path] = None) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    conn = api.connection()

    @kopf.on.login(registry=registry, id="kubeconfig")
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=conn.server, token=conn.token, ca_path=conn.ca_path,
                                   certificate_path=conn.cert_path, private_key_path=conn.key_path,
                                   insecure=conn.insecure, default_namespace=conn.namespace)

    @kopf.on.startup(registry=registry, id="settings")
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.peering.standalone = True  # one replica (the Deployment is Recreate)
        settings.persistence.finalizer = "substratus.ai/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="substratus.ai")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="substratus.ai")
        settings.posting.level = logging.WARNING

    stopping = threading.Event()

    def sleep(seconds: float) -> None:
        """The runtime's waits (a build, a check pod) end when the operator stops, without a verdict."""
        if stopping.wait(seconds):
            raise KubeError("the operator is stopping", status=0)

    @kopf.on.cleanup(registry=registry, id="stop-waiting")
    def stop_waiting(**_: Any) -> None:
        stopping.set()

    def make_reconciler(wake: Callable[[ObjectKey], None]) -> Reconciler:
        store = artifact_store(settings)
        runtime = KubernetesRuntime(api, settings, store=store, poll_seconds=0.5, sleep=sleep)
        return Reconciler(api, runtime, store, scratch=scratch or Path(tempfile.gettempdir()) / "substratus-operator",
                          wake=wake)

    Handlers(lambda: Manager(make_reconciler)).register(registry)
    return registry


def main(argv: Optional[list[str]] = None) -> int:
    opts = parse(argv)
    logging.basicConfig(level=logging.DEBUG if opts.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        api = KubeApi.connect(opts.kubeconfig, opts.context)
        settings = load_settings(api, opts)
    except SubstratusError as err:
        log.error("%s", err)
        return 1
    log.info("connected to %s; artifact store %s, registry %s, builder %s, GPU resource %s",
             api.connection().server, settings.artifact_store, settings.registry or "(none)",
             settings.builder_image, settings.gpu_resource_name)
    log.info("watching %s in %s; reconciling them through the controller core's planners",
             ", ".join(crd.plural(k) for k in KINDS), ", ".join(opts.namespaces) if opts.namespaces else "all namespaces")
    asyncio.run(kopf.operator(registry=registry_for(api, settings), standalone=True,
                              clusterwide=not opts.namespaces, namespaces=opts.namespaces,
                              liveness_endpoint=opts.liveness))
    return 0
