"""The contract as data: one readiness rule per workload, the same on this machine and in a pod;
one clause catalogue for `sub verify` and the control plane; facts stated once."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from substratus import contract
from substratus.contract import HttpGet, Readiness
from substratus.runtimes.base import RunSpec
from substratus.runtimes.kubernetes import workloads
from substratus.runtimes.kubernetes.settings import KubeSettings
from substratus.verify import clauses_for as verify_clauses

REPO = Path(__file__).resolve().parents[2]


# ---- the rule ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("docs", "readyz", "ready"), [
    (200, 200, True),
    (200, 404, True),     # no /readyz: /docs alone decides
    (200, 405, True),
    (302, 200, True),     # 2xx/3xx, as a kubelet's httpGet
    (200, 503, False),    # /readyz says the model is still loading
    (404, 200, False),    # no documentation
    (500, 200, False),
    (None, None, False),  # nothing answers
    (200, None, False),   # /readyz did not answer in time
])
def test_a_server_is_ready_when_docs_answers_and_readyz_where_offered(docs: int | None, readyz: int | None,
                                                                        ready: bool) -> None:
    assert contract.SERVER_READINESS.ready([docs, readyz]) is ready


@pytest.mark.parametrize(("status", "ready"), [(200, True), (302, True), (403, False), (404, False), (None, False)])
def test_a_notebook_is_ready_when_its_root_answers_2xx_or_3xx(status: int | None, ready: bool) -> None:
    assert contract.NOTEBOOK_READINESS.ready([status]) is ready


def test_fewer_answers_than_checks_is_not_ready() -> None:
    assert not contract.SERVER_READINESS.ready([200])


def test_only_a_single_required_get_is_native() -> None:
    assert contract.NOTEBOOK_READINESS.native == HttpGet(contract.NOTEBOOK_PATH, contract.NOTEBOOK_PORT)
    assert contract.SERVER_READINESS.native is None
    assert Readiness((HttpGet("/x", 1, optional=True),)).native is None


def test_the_rule_describes_itself_for_messages() -> None:
    assert contract.SERVER_READINESS.describe() == \
        f"GET {contract.DOCS_PATH} and GET {contract.READYZ_PATH} (if offered) on port {contract.SERVER_PORT}"


# ---- rendered in the pod, from the same value ------------------------------------------------------

SETTINGS = KubeSettings(operator_image="registry.example.com/substratus/operator:9")


def pod_of(role: str) -> dict[str, object]:
    port = contract.PORTS[role]
    spec = RunSpec(name=f"sub-x-{role}", image="img", command=[f"{'serve' if role == 'server' else 'notebook'}.sh"],
                   ports={port: 0}, labels={"substratus.ai/role": role})
    objs = workloads.objects_for(workloads.from_run_spec(spec), SETTINGS)
    main = next(o for o in objs if o["kind"] in ("Deployment", "Pod"))
    return main["spec"]["template"]["spec"] if main["kind"] == "Deployment" else main["spec"]  # type: ignore


def test_the_notebook_pod_probes_exactly_the_contracts_get() -> None:
    pod = pod_of("notebook")
    [main] = pod["containers"]  # type: ignore[misc]
    rule = contract.READINESS["notebook"]
    assert main["readinessProbe"]["httpGet"] == {"path": rule.checks[0].path, "port": rule.checks[0].port}
    assert main["readinessProbe"]["timeoutSeconds"] >= rule.timeout_seconds


def test_the_server_pod_probes_the_helper_which_applies_the_contracts_rule() -> None:
    from substratus.runtimes import readiness

    pod = pod_of("server")
    main, helper = pod["containers"]  # type: ignore[misc]
    assert main["readinessProbe"]["httpGet"] == {"path": "/", "port": workloads.HELPER_PORT}
    assert helper["image"] == SETTINGS.operator_image and helper["command"][-1] == workloads.HELPER_MODULE
    assert helper["ports"][0]["containerPort"] == workloads.HELPER_PORT
    rule, listen = readiness.parse_args(helper["args"])
    assert rule == contract.READINESS["server"] and listen == workloads.HELPER_PORT
    # the kubelet waits for the helper's GETs, one after the other
    assert main["readinessProbe"]["timeoutSeconds"] > rule.timeout_seconds * len(rule.checks)
    assert helper["securityContext"]["readOnlyRootFilesystem"] and helper["securityContext"]["runAsNonRoot"]


# ---- one catalogue ---------------------------------------------------------------------------------

def test_sub_verify_checks_the_contracts_clauses() -> None:
    for kind in ("Model", "Dataset"):
        assert verify_clauses(kind) == contract.clauses_for(kind)
        ids = [c.id for c in contract.clauses_for(kind)]
        assert len(ids) == len(set(ids))
        for c in contract.clauses_for(kind):
            assert set(c.needs) <= set(ids), c.id
    assert {contract.SCRIPT_CLAUSES[s] for s in contract.SCRIPTS["Model"]} <= {c.id for c in contract.CLAUSES["Model"]}


def test_docs_verify_lists_every_clause_id() -> None:
    text = (REPO / "docs" / "verify.md").read_text()
    for kind in ("Model", "Dataset"):
        for c in contract.clauses_for(kind):
            assert f"`{c.id}`" in text, c.id


# ---- facts stated once -----------------------------------------------------------------------------

def test_the_contracts_facts_appear_as_literals_only_in_the_contract_module() -> None:
    pattern = r'\b(8080|8888)\b|"/docs"|JUPYTER_TOKEN|/model/saved'
    found = []
    for path in sorted((REPO / "src" / "substratus").rglob("*.py")):
        if path.name == "contract.py" and path.parent.name == "substratus":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert found == []


def test_no_module_decides_by_an_errors_text() -> None:
    grep = subprocess.run(["git", "grep", "-n", r"in err.message\|in str(e", "--", "src"], cwd=REPO,
                          capture_output=True, text=True)
    assert grep.returncode in (0, 1) and grep.stdout == ""
