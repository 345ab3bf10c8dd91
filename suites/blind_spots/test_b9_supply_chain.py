"""B9 SBOM & provenance: a schema-valid CycloneDX 1.6 SBOM whose components carry purls and
allowed licences, and SLSA v1 provenance whose subject digests match the released artefact.

The target names what its build pipeline produced: ``artifact_path`` (the artefact file, or a
directory of them), ``sbom_path`` and ``provenance_path``. A staging target file names its
pipeline's outputs; the embedded sandbox builds its own release and names it the same way.
The schema validation alone takes a moment, so only the schema check does it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_spark import CheckEvidence, Target
from pytest_spark.probes import supply_chain
from suites.limits import Limits

pytestmark = pytest.mark.blind_spot("B9")

RELEASE_KEYS = ("artifact_path", "sbom_path", "provenance_path")
POLICY_FILE = "license-policy.toml"


@dataclass(frozen=True)
class Release:
    """The artefact files, SBOM and provenance one release is judged by."""

    artefacts: tuple[Path, ...]
    sbom: Path
    provenance: Path
    origin: str  # where they came from, for the evidence


@pytest.fixture(scope="module")
def release(spark_target: Target) -> Release:
    """The artefact, SBOM and provenance the target names."""
    artefact, sbom, provenance = (Path(spark_target.require(k)) for k in RELEASE_KEYS)
    missing = [str(p) for p in (artefact, sbom, provenance) if not p.exists()]
    if missing:
        pytest.fail(
            f"the release files the target names do not exist: {', '.join(missing)}; check "
            f"{', '.join(RELEASE_KEYS)} of target {spark_target.name} (a target file's "
            "[endpoints]: its build pipeline's outputs)",
            pytrace=False,
        )
    return Release((artefact,), sbom, provenance, f"named by target {spark_target.name}")


def _bom(release: Release) -> Any:
    try:
        return supply_chain.read_json(release.sbom, "SBOM")
    except supply_chain.SupplyChainError as exc:
        pytest.fail(f"{exc}; check sbom_path", pytrace=False)


def test_sbom_is_schema_valid_cyclonedx(
    release: Release, spark_evidence: CheckEvidence, limits: Limits
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
    spark_evidence.check(
        "sbom_problems",
        len(problems),
        limit=limits.b9.sbom_problems,
        why=f"the SBOM {release.sbom} is not a valid CycloneDX {supply_chain.SPEC_VERSION} "
        "release SBOM, so scanners may read it wrongly or not at all: " + "; ".join(problems),
    )


def test_every_component_has_a_purl(
    release: Release, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    bom = _bom(release)
    without = supply_chain.components_without_purl(bom)
    spark_evidence.note(
        f"{len(supply_chain.components(bom))} components, {len(without)} without a purl"
    )
    spark_evidence.check(
        "components_without_purl",
        len(without),
        limit=limits.b9.components_without_purl,
        unit="components",
        why=f"{len(without)} SBOM components have no package URL, so vulnerability feeds "
        f"cannot match them: {', '.join(without)}",
    )


def test_every_licence_known_and_allowed(
    release: Release, spark_target: Target, spark_evidence: CheckEvidence, limits: Limits
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
    spark_evidence.check(
        "licence_findings",
        len(findings),
        limit=limits.b9.licence_findings,
        unit="components",
        why=f"{len(findings)} components carry a licence the policy does not allow (denied "
        f"or unknown; policy {policy_path}): " + "; ".join(lines),
    )


def test_provenance_subjects_match_the_artefact(
    release: Release, spark_evidence: CheckEvidence, limits: Limits
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
    spark_evidence.check(
        "provenance_problems",
        len(problems),
        limit=limits.b9.provenance_problems,
        why=f"the provenance {release.provenance} does not attest the artefact as SLSA v1, "
        "so nobody can tell what was built from what: " + "; ".join(problems),
    )
