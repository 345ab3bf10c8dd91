"""B9 SBOM and provenance: CycloneDX 1.6 checks, the licence policy, SLSA v1 provenance.

Pure logic first (licence expressions and the policy, SBOM structure, in-toto/SLSA statement
checks, the deterministic source distribution's layout); the I/O (running ``cyclonedx-py``,
schema validation with cyclonedx-python-lib, hashing and writing files) at the bottom.

Sources: CycloneDX 1.6 JSON schema (the root needs ``bomFormat`` and ``specVersion``);
in-toto Statement v1 (each subject MUST have a digest); SLSA Provenance v1 (``buildType``,
``externalParameters`` and ``builder.id`` are required for Build L1); SPDX license expressions
(``AND``, ``OR``, ``WITH``, parentheses).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SPEC_VERSION = "1.6"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
# How the gate builds the sandbox's artefact: see build_sdist.
SDIST_BUILD_TYPE = "https://spark.example/release-gate/buildtypes/deterministic-sdist/v1"
SANDBOX_BUILDER_ID = "https://spark.example/release-gate/sandbox-builder"
# A fixed timestamp (1980-01-01, the zip epoch wheels use) unless SOURCE_DATE_EPOCH is set,
# so the same sources always give the same bytes and the same digest.
DEFAULT_SOURCE_DATE_EPOCH = 315_532_800
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
PURL = re.compile(r"pkg:[a-z][a-z0-9.+-]*/\S+")
_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z0-9.+:-]+)")


class SupplyChainError(RuntimeError):
    """An SBOM, policy or provenance input that cannot be used at all."""


# --- SPDX licence expressions ------------------------------------------------------------------


def _tokens(expression: str) -> list[str]:
    tokens, at = [], 0
    while at < len(expression.rstrip()):
        match = _TOKEN.match(expression, at)
        if match is None:
            raise SupplyChainError(f"licence expression {expression!r}: cannot read at {at}")
        tokens.append(match.group(1))
        at = match.end()
    return tokens


def parse_expression(expression: str) -> Any:
    """An SPDX expression as a tree: a licence id (``str``, ``"A WITH B"`` kept whole) or
    ``("AND"|"OR", [operands])``. ``AND`` binds tighter than ``OR``."""
    tokens = _tokens(expression)
    at = 0

    def peek() -> str | None:
        return tokens[at] if at < len(tokens) else None

    def take() -> str:
        nonlocal at
        if at >= len(tokens):
            raise SupplyChainError(f"licence expression {expression!r} ends too early")
        at += 1
        return tokens[at - 1]

    def operand() -> Any:
        token = take()
        if token == "(":
            inner = either()
            if take() != ")":
                raise SupplyChainError(f"licence expression {expression!r}: missing ')'")
            return inner
        if token.upper() in ("AND", "OR", "WITH", ")"):
            raise SupplyChainError(f"licence expression {expression!r}: unexpected {token}")
        if (peek() or "").upper() == "WITH":
            take()
            return f"{token} WITH {take()}"
        return token

    def both() -> Any:
        parts = [operand()]
        while (peek() or "").upper() == "AND":
            take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else ("AND", parts)

    def either() -> Any:
        parts = [both()]
        while (peek() or "").upper() == "OR":
            take()
            parts.append(both())
        return parts[0] if len(parts) == 1 else ("OR", parts)

    tree = either()
    if at != len(tokens):
        raise SupplyChainError(f"licence expression {expression!r}: unexpected {tokens[at]!r}")
    return tree


def licence_ids(tree: Any) -> Iterator[str]:
    if isinstance(tree, str):
        yield tree
    else:
        for part in tree[1]:
            yield from licence_ids(part)


# --- the licence policy ------------------------------------------------------------------------


@dataclass(frozen=True)
class LicencePolicy:
    """``ops/license-policy.toml``: which SPDX licences a release may ship."""

    allow: frozenset[str]
    deny: frozenset[str]
    classifiers: Mapping[str, str]  # trove classifier -> SPDX id it names exactly
    uninformative: frozenset[str]  # names that say nothing (e.g. "License :: OSI Approved")
    reviewed: Mapping[str, str]  # purl without version -> SPDX expression, after review

    def verdict(self, expression: str) -> bool | None:
        """True allowed, False denied, None unknown (a licence the policy does not name)."""

        def judge(tree: Any) -> bool | None:
            if isinstance(tree, str):
                if tree in self.allow:
                    return True
                return False if tree in self.deny or tree.split(" WITH ")[0] in self.deny else None
            results = [judge(part) for part in tree[1]]
            if tree[0] == "OR":
                return True if True in results else (None if None in results else False)
            return False if False in results else (None if None in results else True)

        return judge(parse_expression(expression))


def load_policy(path: Path) -> LicencePolicy:
    """Read and check the policy: a malformed file, an id both allowed and denied, or an
    unknown table is an error naming the file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SupplyChainError(f"licence policy {path}: {exc}") from None
    policy = policy_from_mapping(raw, str(path))
    return policy


def policy_from_mapping(raw: Mapping[str, Any], source: str = "licence policy") -> LicencePolicy:
    unknown = set(raw) - {"policy", "classifiers", "reviewed"}
    if unknown:
        raise SupplyChainError(f"{source}: unknown table(s) {sorted(unknown)}")
    table = raw.get("policy", {})
    allow = frozenset(table.get("allow", ()))
    deny = frozenset(table.get("deny", ()))
    if not allow:
        raise SupplyChainError(f"{source}: [policy] allow is empty: nothing could ship")
    both = allow & deny
    if both:
        raise SupplyChainError(f"{source}: {sorted(both)} are both allowed and denied")
    classifiers = dict(raw.get("classifiers", {}))
    reviewed = dict(raw.get("reviewed", {}))
    for where, mapping in (("classifiers", classifiers), ("reviewed", reviewed)):
        for key, expression in mapping.items():
            try:
                parse_expression(str(expression))
            except SupplyChainError as exc:
                raise SupplyChainError(f"{source}: [{where}] {key!r}: {exc}") from None
    return LicencePolicy(
        allow=allow,
        deny=deny,
        classifiers=classifiers,
        uninformative=frozenset(table.get("uninformative", ())),
        reviewed=reviewed,
    )


@dataclass(frozen=True)
class LicenceFinding:
    component: str  # name@version
    purl: str
    status: str  # "denied" | "unknown"
    detail: str


def declared_licences(component: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(SPDX expressions or ids, free-text names) a CycloneDX component declares."""
    expressions, names = [], []
    for entry in component.get("licenses", []) or []:
        if not isinstance(entry, Mapping):
            continue
        if entry.get("expression"):
            expressions.append(str(entry["expression"]))
        licence = entry.get("license")
        if isinstance(licence, Mapping):
            if licence.get("id"):
                expressions.append(str(licence["id"]))
            elif licence.get("name"):
                names.append(str(licence["name"]))
    return expressions, names


def purl_without_version(purl: str) -> str:
    return purl.split("?")[0].split("#")[0].rsplit("@", 1)[0] if "@" in purl else purl


def grade_component(component: Mapping[str, Any], policy: LicencePolicy) -> LicenceFinding | None:
    """None when every licence the component declares is allowed; otherwise why not.

    Every declared entry counts (a component declaring MIT and a GPL classifier ships GPL
    code too); names the policy calls uninformative are skipped; a reviewed entry replaces
    what the metadata declares."""
    name = f"{component.get('name')}@{component.get('version')}"
    purl = str(component.get("purl", ""))
    reviewed = policy.reviewed.get(purl_without_version(purl))
    if reviewed is not None:
        expressions, unresolved = [reviewed], list[str]()
    else:
        expressions, names = declared_licences(component)
        unresolved = []
        for text in names:
            if text in policy.classifiers:
                expressions.append(policy.classifiers[text])
            elif text not in policy.uninformative:
                unresolved.append(text)
    if unresolved or not expressions:
        said = ", ".join(repr(n) for n in unresolved) or "no licence"
        return LicenceFinding(
            name,
            purl,
            "unknown",
            f"declares {said}; map it in [classifiers] or review it under [reviewed]",
        )
    verdicts = {e: policy.verdict(e) for e in expressions}
    denied = [e for e, v in verdicts.items() if v is False]
    if denied:
        return LicenceFinding(name, purl, "denied", f"licence {' + '.join(denied)} is denied")
    unknown = [e for e, v in verdicts.items() if v is None]
    if unknown:
        return LicenceFinding(
            name, purl, "unknown", f"licence {' + '.join(unknown)} is not in the policy"
        )
    return None


# --- SBOM structure ----------------------------------------------------------------------------


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
        if not PURL.fullmatch(str(c.get("purl") or ""))
    ]


# --- SLSA v1 provenance ------------------------------------------------------------------------


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


# --- deterministic source distribution ---------------------------------------------------------


def project_metadata(pyproject: Path) -> Mapping[str, Any]:
    with pyproject.open("rb") as handle:
        project = tomllib.load(handle).get("project", {})
    if not project.get("name") or not project.get("version"):
        raise SupplyChainError(f"{pyproject}: [project] needs a static name and version")
    return dict(project)


def sdist_name(project: Mapping[str, Any]) -> str:
    """PEP 625: ``{normalized name}-{version}.tar.gz`` with ``_`` for runs of ``-_.``."""
    return f"{re.sub(r'[-_.]+', '_', str(project['name'])).lower()}-{project['version']}"


def pkg_info(project: Mapping[str, Any]) -> str:
    lines = [
        "Metadata-Version: 2.4",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
    ]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    if isinstance(project.get("license"), str):
        lines.append(f"License-Expression: {project['license']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def source_files(root: Path, packages: Sequence[str]) -> list[Path]:
    """The files an sdist of ``packages`` carries, relative to ``root``, sorted: the build
    and readme files plus each package's tree without caches or compiled files."""
    chosen = [Path(n) for n in ("pyproject.toml", "README.md") if (root / n).is_file()]
    for package in packages:
        for path in sorted((root / package).rglob("*")):
            relative = path.relative_to(root)
            if (
                path.is_file()
                and "__pycache__" not in relative.parts
                and not any(p.startswith(".") for p in relative.parts)
                and path.suffix not in (".pyc", ".pyo")
            ):
                chosen.append(relative)
    return sorted(set(chosen))


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else DEFAULT_SOURCE_DATE_EPOCH


# --- I/O -----------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artefact_digests(paths: Iterable[Path]) -> dict[str, str]:
    """File name -> sha256 of each artefact file (a directory counts file by file)."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return {p.name: sha256_file(p) for p in files}


def build_sdist(root: Path, packages: Sequence[str], out_dir: Path) -> Path:
    """A byte-for-byte reproducible sdist of the project at ``root``: sorted entries, one
    timestamp, owner root, normalised modes, gzip without a name or time."""
    project = project_metadata(root / "pyproject.toml")
    stem = sdist_name(project)
    when = source_date_epoch()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{stem}.tar.gz"
    entries = [(Path("PKG-INFO"), pkg_info(project).encode())]
    entries += [(p, (root / p).read_bytes()) for p in source_files(root, packages)]
    with (
        target.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for relative, data in sorted(entries, key=lambda e: str(e[0])):
            info = tarfile.TarInfo(f"{stem}/{relative.as_posix()}")
            info.size, info.mtime, info.mode = len(data), when, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    return target


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


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SupplyChainError(f"{what} {path}: {exc}") from None


def git_commit(root: Path) -> str | None:
    """The source's commit (read-only ``git rev-parse``), or None outside a checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None
