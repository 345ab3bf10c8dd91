"""SLSA v1 provenance: writing the statement of a build, and checking one against artefacts.

Sources: in-toto Statement v1 (each subject MUST have a digest); SLSA Provenance v1
(``buildType``, ``externalParameters`` and ``builder.id`` are required for Build L1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
# How the gate builds the sandbox's artefact: see sdist.build_sdist.
SDIST_BUILD_TYPE = "https://spark.example/release-gate/buildtypes/deterministic-sdist/v1"
SANDBOX_BUILDER_ID = "https://spark.example/release-gate/sandbox-builder"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def make_provenance(
    subjects: Mapping[str, str],
    *,
    build_type: str,
    builder_id: str,
    external_parameters: Mapping[str, Any],
    resolved_dependencies: Sequence[Mapping[str, Any]] = (),
    invocation_id: str = "",
    started: datetime | None = None,
    finished: datetime | None = None,
) -> dict[str, Any]:
    """An in-toto Statement v1 with a SLSA Provenance v1 predicate for ``subjects``
    (file name -> sha256 hex)."""
    metadata: dict[str, Any] = {}
    if invocation_id:
        metadata["invocationId"] = invocation_id
    for key, when in (("startedOn", started), ("finishedOn", finished)):
        if when is not None:
            metadata[key] = when.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": n, "digest": {"sha256": d}} for n, d in sorted(subjects.items())],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": build_type,
                "externalParameters": dict(external_parameters),
                "internalParameters": {},
                "resolvedDependencies": [dict(d) for d in resolved_dependencies],
            },
            "runDetails": {
                "builder": {"id": builder_id},
                "metadata": metadata,
                "byproducts": [],
            },
        },
    }


def provenance_problems(statement: Any, artefacts: Mapping[str, str]) -> list[str]:
    """What makes ``statement`` unusable as SLSA v1 provenance of ``artefacts`` (file name ->
    sha256 hex): the statement's shape, and every artefact whose digest no subject carries."""
    if not isinstance(statement, Mapping):
        return ["the provenance is not a JSON object (an in-toto Statement)"]
    problems = []
    if statement.get("_type") != STATEMENT_TYPE:
        problems.append(f"_type is {statement.get('_type')!r}, expected {STATEMENT_TYPE!r}")
    if statement.get("predicateType") != SLSA_PROVENANCE_V1:
        problems.append(
            f"predicateType is {statement.get('predicateType')!r}, expected {SLSA_PROVENANCE_V1!r}"
        )
    predicate = statement.get("predicate")
    predicate = predicate if isinstance(predicate, Mapping) else {}
    definition = predicate.get("buildDefinition")
    definition = definition if isinstance(definition, Mapping) else {}
    run = predicate.get("runDetails")
    run = run if isinstance(run, Mapping) else {}
    builder = run.get("builder")
    builder = builder if isinstance(builder, Mapping) else {}
    if not isinstance(definition.get("buildType"), str) or not definition.get("buildType"):
        problems.append("predicate.buildDefinition.buildType is missing")
    if not isinstance(definition.get("externalParameters"), Mapping):
        problems.append("predicate.buildDefinition.externalParameters is missing")
    if not isinstance(builder.get("id"), str) or not builder.get("id"):
        problems.append("predicate.runDetails.builder.id is missing")
    digests: dict[str, str] = {}
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        problems.append("the statement has no subject")
        subjects = []
    for subject in subjects:
        digest = subject.get("digest") if isinstance(subject, Mapping) else None
        sha = digest.get("sha256") if isinstance(digest, Mapping) else None
        name = subject.get("name") if isinstance(subject, Mapping) else None
        if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha):
            problems.append(f"subject {name!r} has no sha256 digest (64 lowercase hex)")
        else:
            digests[sha] = str(name)
    for name, sha in sorted(artefacts.items()):
        if sha not in digests:
            problems.append(
                f"artefact {name} (sha256 {sha}) matches no subject digest of the provenance "
                f"(subjects: {', '.join(f'{n}={d[:12]}…' for d, n in digests.items()) or 'none'})"
            )
    if not artefacts:
        problems.append("no artefact file to compare the subjects with")
    return problems
