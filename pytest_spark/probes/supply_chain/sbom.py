"""CycloneDX 1.6 SBOMs: structure, package URLs, strict schema validation, and generating one
for a Python environment with ``cyclonedx-py``.

Sources: the CycloneDX 1.6 JSON schema (the root needs ``bomFormat`` and ``specVersion``);
package URLs as ``packageurl`` parses them (the purl specification).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from packageurl import PackageURL

from pytest_spark.probes.supply_chain.files import SupplyChainError

SPEC_VERSION = "1.6"


def components(bom: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every component, nested ones included."""
    found: list[Mapping[str, Any]] = []

    def walk(items: Iterable[Any]) -> None:
        for item in items:
            if isinstance(item, Mapping):
                found.append(item)
                walk(item.get("components", []) or [])

    walk(bom.get("components", []) or [])
    return found


def bom_shape_problems(bom: Mapping[str, Any]) -> list[str]:
    """What the schema allows but a release SBOM must still have."""
    problems = []
    if bom.get("bomFormat") != "CycloneDX":
        problems.append(f"bomFormat is {bom.get('bomFormat')!r}, expected 'CycloneDX'")
    if bom.get("specVersion") != SPEC_VERSION:
        problems.append(f"specVersion is {bom.get('specVersion')!r}, expected {SPEC_VERSION!r}")
    metadata = bom.get("metadata") or {}
    root = metadata.get("component") if isinstance(metadata, Mapping) else None
    if not isinstance(root, Mapping) or not root.get("name") or not root.get("version"):
        problems.append("metadata.component (the released artefact, name and version) is missing")
    if not components(bom):
        problems.append("the SBOM lists no components")
    return problems


def components_without_purl(bom: Mapping[str, Any]) -> list[str]:
    return [
        f"{c.get('name')}@{c.get('version')}"
        + (f" (purl {c.get('purl')!r} is malformed)" if c.get("purl") else "")
        for c in components(bom)
        if not is_purl(c.get("purl"))
    ]


def is_purl(value: object) -> bool:
    """A package URL that parses (``pkg:type/namespace/name@version``)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        PackageURL.from_string(value)
    except ValueError:
        return False
    return True


def cyclonedx_command(environment: Path, pyproject: Path, output: Path) -> list[str]:
    """``cyclonedx-py environment`` for a Python environment (a venv dir or an interpreter),
    1.6 JSON, reproducible; the schema is validated separately (see validate_sbom)."""
    return [
        sys.executable,
        "-m",
        "cyclonedx_py",
        "environment",
        str(environment),
        "--pyproject",
        str(pyproject),
        "--of",
        "JSON",
        "--sv",
        SPEC_VERSION,
        "--output-reproducible",
        "--no-validate",
        "-o",
        str(output),
    ]


def generate_sbom(environment: Path, pyproject: Path, output: Path, timeout: float) -> Path:
    """Run ``cyclonedx-py`` and return the SBOM path; a failure names the command and its
    last output lines."""
    command = cyclonedx_command(environment, pyproject, output)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise SupplyChainError(
            f"cyclonedx-py ran over {timeout:g} s: {' '.join(command)}"
        ) from None
    if done.returncode != 0 or not output.is_file():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise SupplyChainError(
            f"cyclonedx-py failed ({done.returncode}): {' '.join(command)}\n{tail}"
        )
    return output


def validate_sbom(text: str) -> str | None:
    """The first CycloneDX 1.6 JSON schema violation (strict: no unknown properties), or None.

    cyclonedx-python-lib's schema and registry, validated with ``fast_format_checker`` (the
    library's verdicts, seconds faster; see there for the one difference).
    """
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    try:
        structure = json.loads(text)
    except ValueError as exc:
        return f"not JSON: {exc}"
    # The library's own Draft7 validator, evolved to another format checker: the library
    # offers no parameter for it, and its `_validator` is the one place the schema is built.
    validator = JsonStrictValidator(SchemaVersion.V1_6)._validator
    error = next(
        validator.evolve(format_checker=fast_format_checker()).iter_errors(structure), None
    )
    if error is None:
        return None
    # The jsonschema error's own message and path; its str() dumps the whole sub-schema.
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message} (at /{where})"


def fast_format_checker() -> Any:
    """jsonschema's Draft 7 format checker with an ASCII fast path for ``iri``/``iri-reference``.

    jsonschema checks IRIs with rfc3987-syntax, an Earley parser: ~18 ms per IRI, 5–7 s for an
    SBOM of ~300 IRIs, most of a warm blind-spot scan. An IRI made of ASCII characters only is
    exactly a URI (RFC 3987 §2.2 only adds non-ASCII characters to RFC 3986's grammar), so those
    are checked with rfc3986-validator's regular expression; anything else keeps the parser.
    One difference, in RFC 3986's favour: IP-literal hosts (``http://[::1]/``, §3.2.2), which
    rfc3987-syntax's grammar rejects, are accepted.
    """
    from jsonschema import FormatChecker
    from jsonschema.validators import Draft7Validator
    from rfc3986_validator import validate_rfc3986

    base = Draft7Validator.FORMAT_CHECKER
    checker = FormatChecker(())
    checker.checkers = dict(base.checkers)
    for fmt, rule in (("iri", "URI"), ("iri-reference", "URI_reference")):
        if fmt not in base.checkers:
            continue
        exact, raises = base.checkers[fmt]

        def check(instance: object, exact: Any = exact, rule: str = rule) -> bool:
            if isinstance(instance, str) and instance.isascii():
                return validate_rfc3986(instance, rule=rule) is not None
            return bool(exact(instance))

        checker.checkers[fmt] = (check, raises)
    return checker
