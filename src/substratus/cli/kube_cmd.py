"""`sub kube install [--dry-run]` and `sub operator`: Substratus on a Kubernetes cluster.

Registered in the `sub` group by `cli.main`. `install --dry-run` prints the
objects as YAML on stdout (pipe it to `kubectl apply -f -` or keep it in git);
without it they are applied to the cluster of the current kubeconfig context,
one `kind/name created|updated|unchanged` line each on stdout. Settings come
from flags > a settings file (`--settings`) > defaults, and end up in the
ConfigMap the operator reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click
import yaml

from substratus.errors import ValidationError
from substratus.runtimes.kubernetes import install as bundle
from substratus.runtimes.kubernetes.settings import parse_settings

# flag name -> settings key (camelCase, as in the ConfigMap)
SETTING_FLAGS = {
    "namespace": "namespace", "registry": "registry", "registry_secret": "registrySecret",
    "registry_insecure": "registryInsecure", "artifact_store": "artifactStore", "s3_endpoint_url": "s3EndpointUrl",
    "artifact_secret": "artifactSecret", "builder_image": "builderImage", "operator_image": "operatorImage",
    "gpu_resource_name": "gpuResourceName",
}


def _settings_data(settings_file: Optional[Path], flags: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if settings_file is not None:
        try:
            loaded = yaml.safe_load(settings_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValidationError([("--settings", f"cannot read {settings_file}: {err}")]) from None
        if not isinstance(loaded, dict):
            raise ValidationError([("--settings", f"{settings_file} must hold a mapping of settings")])
        data.update(loaded)
    data.update({SETTING_FLAGS[k]: v for k, v in flags.items() if v is not None})
    return data


@click.group("kube", context_settings={"help_option_names": ["-h", "--help"]})
def kube() -> None:
    """Run Substratus on a Kubernetes cluster (docs/kubernetes.md)."""


@kube.command("install")
@click.option("--dry-run", is_flag=True, help="Print the objects as YAML instead of applying them.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), help="kubeconfig file (default $KUBECONFIG).")
@click.option("--context", help="kubeconfig context (default: the current one).")
@click.option("--settings", "settings_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML file of settings (keys as in docs/kubernetes.md); flags override it.")
@click.option("--namespace", help="The operator's namespace (default substratus).")
@click.option("--registry", help="Where built images are pushed, e.g. registry.example.com/substratus.")
@click.option("--registry-secret", help="dockerconfigjson Secret for pushing and pulling.")
@click.option("--registry-insecure/--registry-secure", default=None, help="The registry speaks plain HTTP.")
@click.option("--artifact-store", help="s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or pvc://CLAIM/PREFIX.")
@click.option("--s3-endpoint-url", help="S3-compatible endpoint (MinIO, Ceph...).")
@click.option("--artifact-secret", help="Secret whose keys become the artifact helpers' env (credentials).")
@click.option("--builder-image", help="BuildKit (rootless) image for builds.")
@click.option("--operator-image", help="The operator image (also runs the artifact helpers).")
@click.option("--gpu-resource-name", help="Extended resource GPUs are requested as (default nvidia.com/gpu).")
def install_cmd(dry_run: bool, kubeconfig: Optional[str], context: Optional[str], settings_file: Optional[Path],
                **flags: Any) -> None:
    """Install the CRDs, RBAC, settings and the operator."""
    settings = parse_settings(_settings_data(settings_file, flags), source="sub kube install")
    objects = bundle.bundle(settings)
    if dry_run:
        click.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)
        return
    from substratus.runtimes.kubernetes.client import KubeApi  # the client library only when applying

    api = KubeApi.connect(kubeconfig, context)
    click.echo(f"applying {len(objects)} objects to {api.connection().server}", err=True)
    for obj in objects:
        what = api.apply(obj)
        click.echo(f"{obj['kind'].lower()}/{obj['metadata']['name']} {what}")


@click.command("operator", context_settings={"help_option_names": [], "ignore_unknown_options": True,
                                             "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def operator_cmd(args: tuple[str, ...]) -> None:
    """Run the operator (the same as `python -m substratus.kube`; --help lists its options)."""
    try:
        from substratus.kube.app import main
    except ImportError as err:
        raise click.ClickException(f"the operator needs the kubernetes extra ({err}): "
                                   "pip install 'substratus-py[kubernetes]'") from None
    raise SystemExit(main(list(args)))
