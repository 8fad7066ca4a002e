"""What the generators promise, object by object: hardening, owners, GPUs, artifacts,
probes, secrets, builds and names. Pure functions, plain dicts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from substratus import contract
from substratus.errors import ValidationError
from substratus.runtimes import readiness
from substratus.runtimes.base import RunSpec
from substratus.runtimes.kubernetes import builds, install, names, workloads
from substratus.runtimes.kubernetes.settings import KubeSettings, parse_settings, settings_from_configmap
from tests.kubernetes.catalogue import IMAGE, SETTINGS, build_jobs, everything, run_specs


def containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = obj.get("spec") or {}
    pod = spec.get("template", {}).get("spec") if "template" in spec else spec
    for c in [*(pod or {}).get("initContainers", []), *(pod or {}).get("containers", [])]:
        yield c


def pod_specs(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if "template" in spec:
        yield spec["template"]["spec"]
    elif obj["kind"] == "Pod":
        yield spec


def workload_objects(settings: KubeSettings) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for spec, owner in run_specs():
        w = workloads.from_run_spec(spec, owner=owner, image=settings.image_ref(spec.image))
        out[f"{w.role}{'-gpu' if w.gpu and w.role == 'server' else ''}"] = workloads.objects_for(w, settings)
    return out


def only(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [o for o in objs if o["kind"] == kind]
    return found


# -- hardening -----------------------------------------------------------------------------------

def test_nothing_privileged_no_host_access_anywhere() -> None:
    text = json.dumps([o for _, o in everything()])
    assert '"privileged": true' not in text
    for what, obj in everything():
        for pod in pod_specs(obj):
            assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), what
            assert all("hostPath" not in v for v in pod.get("volumes", [])), what


def test_every_container_drops_privileges_except_the_documented_builder() -> None:
    for what, obj in everything():
        for c in containers(obj):
            sec = c["securityContext"]
            if c["name"] == "buildkit":  # rootless BuildKit: see runtimes/kubernetes/builds.py
                assert sec["runAsNonRoot"] and sec["runAsUser"] == 1000, what
                assert "privileged" not in sec and "capabilities" not in sec, what
                continue
            assert sec["allowPrivilegeEscalation"] is False, (what, c["name"])
            assert sec["capabilities"] == {"drop": ["ALL"]}, (what, c["name"])
            assert sec["seccompProfile"] == {"type": "RuntimeDefault"}, (what, c["name"])


def test_our_own_containers_are_non_root_with_a_read_only_root() -> None:
    own = {"fetch-artifacts", "sync-artifacts", "prepare-context", "operator", "readiness"}
    seen = set()
    for what, obj in everything():
        for c in containers(obj):
            if c["name"] in own:
                seen.add(c["name"])
                assert c["securityContext"]["runAsNonRoot"] is True, what
                assert c["securityContext"]["readOnlyRootFilesystem"] is True, what
    assert seen == own


def test_contract_images_run_as_their_own_user_unless_settings_pick_one() -> None:
    default = only(workload_objects(SETTINGS["defaults"])["load"], "Job")
    main = default["spec"]["template"]["spec"]["containers"][0]
    assert "runAsUser" not in main["securityContext"]
    placed = only(workload_objects(SETTINGS["placed-nonroot"])["load"], "Job")
    pod = placed["spec"]["template"]["spec"]
    assert pod["containers"][0]["securityContext"]["runAsUser"] == 1000
    assert pod["containers"][0]["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == 1000


def test_workload_pods_get_no_api_token() -> None:
    for what, obj in everything():
        if "install" in what:
            continue
        for pod in pod_specs(obj):
            assert pod["automountServiceAccountToken"] is False, what


def test_secrets_never_appear_outside_a_secret() -> None:
    for what, obj in everything():
        if obj["kind"] != "Secret":
            assert "secret-token" not in json.dumps(obj), what


def test_every_workload_object_is_owned_by_its_resource() -> None:
    for name, objs in workload_objects(SETTINGS["s3"]).items():
        for obj in objs:
            refs = obj["metadata"]["ownerReferences"]
            assert len(refs) == 1 and refs[0]["controller"] and refs[0]["blockOwnerDeletion"], (name, obj["kind"])
    for b in build_jobs(SETTINGS["s3"]):
        assert builds.builder_job(b, SETTINGS["s3"])["metadata"]["ownerReferences"][0]["kind"] == "Model"


# -- the contract ---------------------------------------------------------------------------------

def test_train_job_carries_the_contract_env_and_never_retries() -> None:
    job = only(workload_objects(SETTINGS["defaults"])["train"], "Job")
    assert job["spec"]["backoffLimit"] == 0
    main = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env == {"TRAIN_DATA_PATH": "/data/tiny.jsonl", "TRAIN_DATA_LIMIT": "100", "TRAIN_BATCH_SIZE": "8",
                   "TRAIN_EPOCHS": "1"}
    assert main["args"] == ["train.sh"] and "command" not in main
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_entrypoint_and_command_map_to_command_and_args() -> None:
    w = workloads.from_run_spec(RunSpec(name="x", image="i", entrypoint=["sh", "-c"], command=["echo hi"]))
    assert (w.command, w.args) == (["sh"], ["-c", "echo hi"])
    w = workloads.from_run_spec(RunSpec(name="x", image="i", command=["serve.sh"]))
    assert (w.command, w.args) == (None, ["serve.sh"])


def test_server_is_a_deployment_ready_on_get_docs_with_a_service() -> None:
    objs = workload_objects(SETTINGS["defaults"])["server"]
    dep, svc = only(objs, "Deployment"), only(objs, "Service")
    container, helper = dep["spec"]["template"]["spec"]["containers"]
    # ready by the contract's rule (GET /docs, and /readyz where offered), applied in the pod by the helper
    assert container["readinessProbe"] == workloads.readiness_probe(contract.SERVER_READINESS)
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": workloads.HELPER_PORT}
    assert helper["name"] == "readiness" and helper["image"] == SETTINGS["defaults"].operator_image
    assert readiness.parse_args(helper["args"]) == (contract.SERVER_READINESS, workloads.HELPER_PORT)
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert dep["spec"]["progressDeadlineSeconds"] == 600
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in dep["spec"]["selector"]["matchLabels"].items())
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    gpu = only(workload_objects(SETTINGS["defaults"])["server-gpu"], "Deployment")
    assert gpu["spec"]["strategy"] == {"type": "Recreate"}


def test_a_new_image_changes_the_pod_template_so_the_deployment_rolls() -> None:
    spec, owner = run_specs()[2]
    w1 = workloads.from_run_spec(spec, owner=owner)
    w2 = workloads.from_run_spec(RunSpec(**{**spec.__dict__, "image": IMAGE + "0"}), owner=owner)
    d1, d2 = (only(workloads.objects_for(w, SETTINGS["defaults"]), "Deployment") for w in (w1, w2))
    assert d1["metadata"]["name"] == d2["metadata"]["name"]
    assert d1["spec"]["selector"] == d2["spec"]["selector"]  # immutable on a cluster: must not change
    assert d1["spec"]["template"] != d2["spec"]["template"]


def test_notebook_is_secret_pod_and_service() -> None:
    objs = workload_objects(SETTINGS["defaults"])["notebook"]
    assert [o["kind"] for o in objs] == ["Secret", "Pod", "Service"]
    pod = only(objs, "Pod")
    [main] = pod["spec"]["containers"]
    assert main["readinessProbe"] == workloads.readiness_probe(contract.NOTEBOOK_READINESS)
    assert main["readinessProbe"]["httpGet"] == {"path": "/", "port": 8888}
    assert pod["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "JUPYTER_TOKEN"


# -- GPUs and placement ------------------------------------------------------------------------------

def test_gpu_requests_and_placement() -> None:
    default = workload_objects(SETTINGS["defaults"])
    train = only(default["train"], "Job")["spec"]["template"]["spec"]
    assert train["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert train["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    load = only(default["load"], "Job")["spec"]["template"]["spec"]
    assert "resources" not in load["containers"][0] and "tolerations" not in load
    placed = workload_objects(SETTINGS["placed-nonroot"])
    train = only(placed["train"], "Job")["spec"]["template"]["spec"]
    assert train["containers"][0]["resources"]["limits"] == {"amd.com/gpu": 1}
    assert train["nodeSelector"] == {"pool": "ml", "accelerator": "h100"}
    assert train["tolerations"] == [{"key": "ml", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]
    load = only(placed["load"], "Job")["spec"]["template"]["spec"]
    assert load["nodeSelector"] == {"pool": "ml"}


# -- artifacts -------------------------------------------------------------------------------------

def test_pvc_store_mounts_subpaths_of_one_claim() -> None:
    pod = only(workload_objects(SETTINGS["placed-nonroot"])["train"], "Job")["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "artifacts", "persistentVolumeClaim": {"claimName": "shared"}}]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "artifacts", "mountPath": "/data", "subPath": "team-a/objects/dataset/default/tiny/r/data",
         "readOnly": True},
        {"name": "artifacts", "mountPath": "/model/trained", "subPath": "team-a/objects/model/default/tiny/r/trained",
         "readOnly": False},
        {"name": "artifacts", "mountPath": "/model/logs", "subPath": "team-a/objects/model/default/tiny/r/logs",
         "readOnly": False}]
    assert "initContainers" not in pod


def test_object_store_fetches_inputs_and_uploads_outputs_with_a_native_sidecar() -> None:
    pod = only(workload_objects(SETTINGS["s3"])["train"], "Job")["spec"]["template"]["spec"]
    fetch, sync = pod["initContainers"]
    assert fetch["name"] == "fetch-artifacts" and "restartPolicy" not in fetch
    assert fetch["args"] == ["fetch", "--store", "s3://bucket/substratus",
                             "--map", "/substratus/stage/0=objects/dataset/default/tiny/r/data"]
    assert sync["name"] == "sync-artifacts" and sync["restartPolicy"] == "Always"
    assert sync["args"][-4:] == ["--map", "/substratus/stage/1=objects/model/default/tiny/r/trained",
                                 "--map", "/substratus/stage/2=objects/model/default/tiny/r/logs"]
    for helper in (fetch, sync):
        assert helper["envFrom"] == [{"secretRef": {"name": "substratus-s3"}}]
        assert {"name": "SUBSTRATUS_S3_ENDPOINT_URL", "value": "http://minio.storage:9000"} in helper["env"]
    main = pod["containers"][0]
    assert {m["mountPath"]: m["readOnly"] for m in main["volumeMounts"]} == {
        "/data": True, "/model/trained": False, "/model/logs": False}
    assert pod["terminationGracePeriodSeconds"] >= 600  # time for the upload after the main container exits
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


# -- builds ---------------------------------------------------------------------------------------

def test_git_builds_let_buildkit_clone_the_pinned_commit() -> None:
    job = builds.builder_job(build_jobs(SETTINGS["s3"])[0], SETTINGS["s3"])
    pod = job["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    args = pod["containers"][0]["args"]
    assert f"context=https://github.com/org/repo#{'a' * 40}:models/tiny" in args
    assert args[-2:] == ["--output",
                         "type=image,name=registry.example.com/substratus/model-default-tiny:0123456789abcdef,push=true"]
    assert "--opt" in args and "label:substratus.ai/kind=Model" in args
    auth = next(v for v in pod["volumes"] if v["name"] == "registry-auth")
    assert auth["secret"] == {"secretName": "regcred", "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 3600


def test_dir_builds_unpack_the_uploaded_tarball_first() -> None:
    job = builds.builder_job(build_jobs(SETTINGS["s3"])[1], SETTINGS["s3"])
    prepare = job["spec"]["template"]["spec"]["initContainers"][0]
    assert prepare["args"] == ["fetch", "--store", "s3://bucket/substratus", "--untar",
                               "--map", f"/workspace/context=sources/dirs/{'b' * 64}.tar.gz"]
    assert "--local" in job["spec"]["template"]["spec"]["containers"][0]["args"]


def test_trained_builds_copy_trained_into_saved_from_the_base() -> None:
    job = builds.builder_job(build_jobs(SETTINGS["s3"])[2], SETTINGS["s3"])
    prepare = job["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e.get("value") for e in prepare["env"]}
    assert env["SUBSTRATUS_DOCKERFILE"] == ("FROM registry.example.com/substratus/model-default-tiny:0123456789abcdef\n"
                                            "COPY trained/ /model/saved/\n")
    assert "/workspace/context/trained=objects/model/default/tiny/r/trained" in prepare["args"]


def test_an_insecure_registry_is_configured_for_push_and_pull() -> None:
    settings = SETTINGS["gcs-insecure-registry"]
    job = builds.builder_job(build_jobs(settings)[0], settings)
    pod = job["spec"]["template"]["spec"]
    prepare, buildkit = pod["initContainers"][0], pod["containers"][0]
    toml = next(e["value"] for e in prepare["env"] if e["name"] == "SUBSTRATUS_BUILDKITD_TOML")
    assert '[registry."registry.local:5000"]' in toml and "http = true" in toml
    assert buildkit["args"][-1].endswith(",registry.insecure=true")
    assert {"name": "BUILDKITD_FLAGS", "value": "--oci-worker-no-process-sandbox --config /workspace/buildkitd.toml"} \
        in buildkit["env"]


# -- names and labels ------------------------------------------------------------------------------

def test_long_names_are_shortened_stably_and_distinctly() -> None:
    a = "sub-abcdef-modelserver-a-very-long-namespace-name-" + "x" * 40 + "-server"
    b = a.replace("-server", "-server2")
    assert len(names.object_name(a)) <= 63 and names.object_name(a) == names.object_name(a)
    assert names.object_name(a) != names.object_name(b)
    assert names.object_name("sub-k8s-model-default-tiny-train-0123456789") == \
        "sub-k8s-model-default-tiny-train-0123456789"
    assert names.object_name("9lives")[0].isalpha()


def test_label_values_kubernetes_refuses_are_hashed_and_given_back() -> None:
    labels = {"substratus.ai/image": IMAGE, "substratus.ai/name": "tiny"}
    encoded, kept = names.encode_labels(labels)
    assert encoded["substratus.ai/name"] == "tiny"
    assert encoded["substratus.ai/image"].startswith("sha256-") and len(encoded["substratus.ai/image"]) <= 63
    assert kept == {"substratus.ai/image": IMAGE}
    assert names.decode_labels(encoded, kept) == labels
    assert names.selector(labels) == f"substratus.ai/image={encoded['substratus.ai/image']},substratus.ai/name=tiny"


# -- settings and install --------------------------------------------------------------------------

def test_settings_errors_name_the_key() -> None:
    with pytest.raises(ValidationError) as err:
        parse_settings({"artifactStore": "ftp://x", "gpuPlacement": {"tolerations": [{"effect": "Sometimes"}]},
                        "registy": "r"})
    text = str(err.value)
    assert "artifactStore: 'ftp://x' is not an artifact store URL" in text
    assert "gpuPlacement.tolerations[0].effect" in text
    assert "registy: unknown setting" in text


def test_settings_round_trip_through_the_configmap() -> None:
    cm = install.settings_configmap(SETTINGS["s3"])
    assert settings_from_configmap(cm["data"]) == SETTINGS["s3"]
    assert SETTINGS["s3"].image_ref(IMAGE) == "registry.example.com/substratus/model-default-tiny:0123456789abcdef"
    assert KubeSettings().image_ref(IMAGE) == IMAGE  # no registry: names stay as they are


def test_rbac_is_least_privilege() -> None:
    rules = install.operator_rules()
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    secrets = next(r for r in rules if r["resources"] == ["secrets"])
    assert not {"list", "watch"} & set(secrets["verbs"])
    cluster_role_resources = {res for r in rules for res in r["resources"]}
    assert "configmaps" not in cluster_role_resources  # only its own settings, through a namespaced Role
    role = next(o for o in install.bundle(KubeSettings()) if o["kind"] == "Role")
    assert role["rules"][0]["resourceNames"] == ["substratus-settings"]


def test_install_order_and_operator_deployment() -> None:
    objs = install.bundle(KubeSettings(namespace="ml-system"))
    kinds = [o["kind"] for o in objs]
    assert kinds[0] == "Namespace" and kinds[-1] == "Deployment"
    assert kinds.index("CustomResourceDefinition") < kinds.index("Deployment")
    dep = objs[-1]
    pod = dep["spec"]["template"]["spec"]
    assert dep["metadata"]["namespace"] == "ml-system" and dep["spec"]["replicas"] == 1
    assert pod["serviceAccountName"] == "substratus-operator"
    assert pod["containers"][0]["command"] == ["python", "-m", "substratus.kube"]
    assert pod["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ns = objs[0]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert list(yaml.safe_load_all(yaml.safe_dump_all(objs))) == objs
