"""B9 SBOM and provenance: CycloneDX 1.6 checks, the licence policy, SLSA v1 provenance, and
the reproducible build the sandbox's release is made of.

One module per subject: :mod:`.licences` (SPDX expressions and the policy), :mod:`.sbom`
(structure, purls, schema, generation), :mod:`.provenance` (in-toto / SLSA statements),
:mod:`.sdist` (the deterministic source distribution), :mod:`.files` (reading inputs). The
names the B9 suite uses are re-exported here.
"""

from pytest_spark.probes.supply_chain.files import (
    SupplyChainError,
    artefact_digests,
    read_json,
    sha256_file,
)
from pytest_spark.probes.supply_chain.licences import (
    LicenceFinding,
    LicencePolicy,
    declared_licences,
    grade_component,
    licence_ids,
    load_policy,
    parse_expression,
    policy_from_mapping,
    purl_without_version,
)
from pytest_spark.probes.supply_chain.provenance import (
    SANDBOX_BUILDER_ID,
    SDIST_BUILD_TYPE,
    SLSA_PROVENANCE_V1,
    STATEMENT_TYPE,
    make_provenance,
    provenance_problems,
)
from pytest_spark.probes.supply_chain.sbom import (
    SPEC_VERSION,
    bom_shape_problems,
    components,
    components_without_purl,
    cyclonedx_command,
    fast_format_checker,
    generate_sbom,
    validate_sbom,
)
from pytest_spark.probes.supply_chain.sdist import (
    DEFAULT_SOURCE_DATE_EPOCH,
    build_sdist,
    git_commit,
    pkg_info,
    project_metadata,
    sdist_name,
    source_date_epoch,
    source_files,
)

__all__ = [
    "DEFAULT_SOURCE_DATE_EPOCH",
    "SANDBOX_BUILDER_ID",
    "SDIST_BUILD_TYPE",
    "SLSA_PROVENANCE_V1",
    "SPEC_VERSION",
    "STATEMENT_TYPE",
    "LicenceFinding",
    "LicencePolicy",
    "SupplyChainError",
    "artefact_digests",
    "bom_shape_problems",
    "build_sdist",
    "components",
    "components_without_purl",
    "cyclonedx_command",
    "declared_licences",
    "fast_format_checker",
    "generate_sbom",
    "git_commit",
    "grade_component",
    "licence_ids",
    "load_policy",
    "make_provenance",
    "parse_expression",
    "pkg_info",
    "policy_from_mapping",
    "project_metadata",
    "provenance_problems",
    "purl_without_version",
    "read_json",
    "sdist_name",
    "sha256_file",
    "source_date_epoch",
    "source_files",
    "validate_sbom",
]
