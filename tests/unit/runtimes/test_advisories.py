"""Issue 25 item 1: the known escapes the control plane reports at start (runtimes.advisories)."""

from __future__ import annotations

from substratus.runtimes.advisories import Versions, known_escapes, parse_version


def cves(v: Versions) -> set[str]:
    return {a.cve for a in known_escapes(v)}


def test_debian_12_podman_has_the_buildah_escapes_but_not_the_runc_one() -> None:
    """What this machine runs: podman 4.3.1 with buildah 1.28.2; runc 1.1.5 with Debian's backport."""
    v = Versions("podman", "4.3.1", "1.28.2", "runc version 1.1.5+ds1 commit: 1.1.5+ds1-1+deb12u1 spec: 1.0.2-dev")
    found = known_escapes(v)
    assert {"CVE-2024-1753", "CVE-2024-9407", "CVE-2024-9675"} == {a.cve for a in found}
    assert all(a.defence for a in found), "each buildah escape is closed by the Dockerfile policy"
    assert "refuses RUN --mount with from=" in found[0].line()


def test_a_current_podman_has_none() -> None:
    assert cves(Versions("podman", "5.4.0", "1.39.0", "runc version 1.2.5")) == set()


def test_an_old_runc_without_the_backport_is_reported() -> None:
    assert "CVE-2024-21626" in cves(Versions("podman", "4.9.0", "1.34.0", "runc version 1.1.11"))


def test_an_old_docker_reports_leaky_vessels_and_its_runc() -> None:
    found = cves(Versions("docker", "24.0.7", "", "1.1.10"))
    assert found == {"CVE-2024-23651/23652/23653", "CVE-2024-21626"}
    assert cves(Versions("docker", "27.3.1", "", "1.1.14")) == set()


def test_unknown_versions_report_nothing_rather_than_guess() -> None:
    assert cves(Versions("podman")) == set() and parse_version("dev") is None
