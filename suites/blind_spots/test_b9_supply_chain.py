"""B9 SBOM & provenance: a schema-valid CycloneDX 1.6 SBOM whose components carry purls and
allowed licences, and SLSA v1 provenance whose subject digests match the released artefact.

Where the inputs come from:

- a real target names what its build pipeline produced: ``artifact_path`` (the artefact file,
  or a directory of them), ``sbom_path`` and ``provenance_path``; the check verifies those;
- the embedded sandbox releases this project: the check builds a reproducible sdist of it
  (``supply_chain.build_sdist``, well under a second), generates the SBOM of the Python
  environment the sandbox runs (``release_environment``) with ``cyclonedx-py``, and writes the
  provenance of that build. All of it once per module (the schema validation alone takes
  seconds, so only the schema check does it).
"""

from __future__ import annotations

import json
import tomllib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_spark.config import Target
from pytest_spark.evidence.records import CheckEvidence
from pytest_spark.probes import supply_chain

Limits = dict[str, dict[str, float]]

pytestmark = pytest.mark.blind_spot("B9")

REPO = Path(__file__).resolve().parents[2]
CONFIGURED_KEYS = ("artifact_path", "sbom_path", "provenance_path")
POLICY_FILE = "license-policy.toml"


@dataclass(frozen=True)
class Release:
    """The artefact files, SBOM and provenance one release is judged by."""

    artefacts: tuple[Path, ...]
    sbom: Path
    provenance: Path
    origin: str  # where they came from, for the evidence


def _packages(pyproject: Path) -> list[str]:
    """Top-level packages the project ships (``[tool.setuptools.packages.find] include``)."""
    with pyproject.open("rb") as handle:
        found = tomllib.load(handle).get("tool", {}).get("setuptools", {}).get("packages", {})
    include = found.get("find", {}).get("include", [])
    return [p.rstrip("*") for p in include if (pyproject.parent / p.rstrip("*")).is_dir()]


def _build_sandbox_release(environment: Path, out: Path, timeout: float) -> Release:
    started = datetime.now(UTC)
    pyproject = REPO / "pyproject.toml"
    sdist = supply_chain.build_sdist(REPO, _packages(pyproject), out / "dist")
    sbom = supply_chain.generate_sbom(environment, pyproject, out / "sbom.cdx.json", timeout)
    project = supply_chain.project_metadata(pyproject)
    commit = supply_chain.git_commit(REPO)
    statement = supply_chain.make_provenance(
        supply_chain.artefact_digests([sdist]),
        build_type=supply_chain.SDIST_BUILD_TYPE,
        builder_id=supply_chain.SANDBOX_BUILDER_ID,
        external_parameters={
            "project": project["name"],
            "version": project["version"],
            "packages": _packages(pyproject),
            "sourceDateEpoch": supply_chain.source_date_epoch(),
        },
        resolved_dependencies=[{"uri": "git+file:.", "digest": {"gitCommit": commit}}]
        if commit
        else [],
        invocation_id=str(uuid.uuid4()),
        started=started,
        finished=datetime.now(UTC),
    )
    provenance = out / "provenance.intoto.json"
    provenance.write_text(json.dumps(statement, indent=2) + "\n")
    return Release((sdist,), sbom, provenance, f"built by the gate from {REPO.name}")


@pytest.fixture(scope="module")
def release(
    spark_target: Target, blind_spot_limits: Limits, tmp_path_factory: pytest.TempPathFactory
) -> Release:
    """The configured artefact/SBOM/provenance, or for the sandbox the ones built here."""
    endpoints = spark_target.endpoints
    if any(endpoints.get(key) for key in CONFIGURED_KEYS):
        artefact, sbom, provenance = (Path(spark_target.require(k)) for k in CONFIGURED_KEYS)
        missing = [str(p) for p in (artefact, sbom, provenance) if not p.exists()]
        if missing:
            pytest.fail(
                f"configured supply-chain files do not exist: {', '.join(missing)}; check "
                f"{', '.join(CONFIGURED_KEYS)} in the target file",
                pytrace=False,
            )
        return Release((artefact,), sbom, provenance, "configured in the target file")
    environment = endpoints.get("release_environment")
    if not environment:
        pytest.fail(
            "no SBOM or provenance to verify: set artifact_path, sbom_path and provenance_path "
            "under [endpoints] of the target file (the build pipeline's outputs)",
            pytrace=False,
        )
    out = tmp_path_factory.mktemp("b9_release")
    try:
        return _build_sandbox_release(
            Path(environment), out, blind_spot_limits["B9"]["sbom_timeout_s"]
        )
    except supply_chain.SupplyChainError as exc:
        pytest.fail(f"building the sandbox's release inputs failed: {exc}", pytrace=False)


def _bom(release: Release) -> Any:
    try:
        return supply_chain.read_json(release.sbom, "SBOM")
    except supply_chain.SupplyChainError as exc:
        pytest.fail(f"{exc}; check sbom_path", pytrace=False)


def test_sbom_is_schema_valid_cyclonedx(
    release: Release, spark_evidence: CheckEvidence, blind_spot_limits: Limits
) -> None:
    spark_evidence.attach("sbom", release.sbom)
    text = release.sbom.read_text(encoding="utf-8")
    bom = _bom(release)
    problems = supply_chain.bom_shape_problems(bom)
    error = supply_chain.validate_sbom(text)
    if error:
        problems.insert(0, f"CycloneDX {supply_chain.SPEC_VERSION} schema: {error}")
    root = (bom.get("metadata") or {}).get("component") or {}
    spark_evidence.note(
        f"SBOM {release.sbom.name} ({release.origin}): {len(supply_chain.components(bom))} "
        f"components, metadata.component {root.get('name')}@{root.get('version')}, "
        f"specVersion {bom.get('specVersion')}, strict JSON schema validation by "
        "cyclonedx-python-lib"
    )
    limit = blind_spot_limits["B9"]["sbom_problems"]
    spark_evidence.measure("sbom_problems", len(problems), limit=limit)
    assert len(problems) < limit, (
        f"the SBOM {release.sbom} is not a valid CycloneDX {supply_chain.SPEC_VERSION} "
        "release SBOM: " + "; ".join(problems)
    )


def test_every_component_has_a_purl(
    release: Release, spark_evidence: CheckEvidence, blind_spot_limits: Limits
) -> None:
    bom = _bom(release)
    without = supply_chain.components_without_purl(bom)
    spark_evidence.note(
        f"{len(supply_chain.components(bom))} components, {len(without)} without a purl"
    )
    limit = blind_spot_limits["B9"]["components_without_purl"]
    spark_evidence.measure("components_without_purl", len(without), unit="components", limit=limit)
    assert len(without) < limit, (
        f"{len(without)} SBOM components have no package URL, so vulnerability feeds cannot "
        f"match them: {', '.join(without)}"
    )


def test_every_licence_known_and_allowed(
    release: Release,
    spark_target: Target,
    spark_evidence: CheckEvidence,
    blind_spot_limits: Limits,
) -> None:
    policy_path = Path(spark_target.require("ops_dir")) / POLICY_FILE
    try:
        policy = supply_chain.load_policy(policy_path)
    except supply_chain.SupplyChainError as exc:
        pytest.fail(f"{exc}; check {POLICY_FILE} in the ops dir", pytrace=False)
    found = supply_chain.components(_bom(release))
    findings = [f for c in found if (f := supply_chain.grade_component(c, policy))]
    lines = [f"{f.status:8} {f.component} ({f.purl}): {f.detail}" for f in findings]
    spark_evidence.note(
        f"{len(found)} components against {policy_path.name} ({len(policy.allow)} allowed, "
        f"{len(policy.deny)} denied licences): "
        + (("\n" + "\n".join(lines)) if lines else "all allowed")
    )
    limit = blind_spot_limits["B9"]["licence_findings"]
    spark_evidence.measure("licence_findings", len(findings), unit="components", limit=limit)
    assert len(findings) < limit, (
        f"{len(findings)} components carry a licence the policy does not allow (denied or "
        f"unknown; policy {policy_path}): " + "; ".join(lines)
    )


def test_provenance_subjects_match_the_artefact(
    release: Release, spark_evidence: CheckEvidence, blind_spot_limits: Limits
) -> None:
    spark_evidence.attach("build_provenance", release.provenance)
    try:
        statement = supply_chain.read_json(release.provenance, "provenance")
    except supply_chain.SupplyChainError as exc:
        pytest.fail(f"{exc}; check provenance_path", pytrace=False)
    artefacts = supply_chain.artefact_digests(release.artefacts)
    problems = supply_chain.provenance_problems(statement, artefacts)
    spark_evidence.note(
        "artefacts: "
        + ", ".join(f"{name} sha256 {digest}" for name, digest in artefacts.items())
        + f"; provenance {release.provenance.name} ({release.origin})"
    )
    limit = blind_spot_limits["B9"]["provenance_problems"]
    spark_evidence.measure("provenance_problems", len(problems), limit=limit)
    assert len(problems) < limit, (
        f"the provenance {release.provenance} does not attest the artefact as SLSA v1: "
        + "; ".join(problems)
    )
