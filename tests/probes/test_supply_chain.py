"""B9 probe logic: SPDX expressions and the licence policy, SBOM shape, SLSA v1 provenance,
the reproducible sdist; plus the real cyclonedx-py and schema validator on small inputs."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pytest_spark.probes import supply_chain as sc
from spark_sandbox import supply_chain as sandbox_supply_chain

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("MIT", "MIT"),
        ("Apache-2.0 OR BSD-3-Clause", ("OR", ["Apache-2.0", "BSD-3-Clause"])),
        ("A OR B AND C", ("OR", ["A", ("AND", ["B", "C"])])),
        ("(A OR B) AND C", ("AND", [("OR", ["A", "B"]), "C"])),
        ("GPL-2.0-only WITH Classpath-exception-2.0", "GPL-2.0-only WITH Classpath-exception-2.0"),
        # A known SPDX id is spelt as the licence list spells it, whatever the case written.
        ("mit or  MIT-0", ("OR", ["MIT", "MIT-0"])),
        ("LicenseRef-acme", "LicenseRef-acme"),
    ],
)
def test_spdx_expressions_parse(text: str, tree: Any) -> None:
    assert sc.parse_expression(text) == tree


@pytest.mark.parametrize("text", ["MIT OR", "(MIT", "AND MIT", "MIT MIT", "MIT / BSD", ""])
def test_malformed_expressions_are_errors(text: str) -> None:
    with pytest.raises(sc.SupplyChainError):
        sc.parse_expression(text)


POLICY = sc.policy_from_mapping(
    {
        "policy": {
            "allow": ["MIT", "Apache-2.0", "BSD-3-Clause"],
            "deny": ["GPL-3.0-only", "AGPL-3.0-only"],
            "uninformative": ["License :: OSI Approved", "License :: OSI Approved :: BSD License"],
        },
        "classifiers": {"License :: OSI Approved :: Apache Software License": "Apache-2.0"},
        "reviewed": {"pkg:pypi/jinja2": "BSD-3-Clause"},
    }
)


@pytest.mark.parametrize(
    ("expression", "verdict"),
    [
        ("MIT", True),
        ("GPL-3.0-only", False),
        ("WTFPL", None),
        ("MIT OR GPL-3.0-only", True),  # the licensee may choose MIT
        ("MIT AND GPL-3.0-only", False),
        ("MIT AND WTFPL", None),
        ("GPL-3.0-only OR WTFPL", None),
        ("GPL-3.0-only WITH GCC-exception-3.1", False),
    ],
)
def test_policy_verdicts(expression: str, verdict: bool | None) -> None:
    assert POLICY.verdict(expression) is verdict


def _component(name: str, *licences: dict[str, Any], purl: str | None = None) -> dict[str, Any]:
    return {
        "type": "library",
        "name": name,
        "version": "1.0",
        "purl": purl if purl is not None else f"pkg:pypi/{name}@1.0",
        "licenses": list(licences),
    }


def _id(value: str) -> dict[str, Any]:
    return {"license": {"id": value}}


def _name(value: str) -> dict[str, Any]:
    return {"license": {"name": value}}


@pytest.mark.parametrize(
    ("component", "status"),
    [
        (_component("a", _id("MIT")), None),
        (_component("b", {"expression": "Apache-2.0 OR GPL-3.0-only"}), None),
        (_component("c", _name("License :: OSI Approved :: Apache Software License")), None),
        (_component("d", _id("MIT"), _name("License :: OSI Approved")), None),
        (_component("e", _name("License :: OSI Approved :: BSD License")), "unknown"),
        (_component("jinja2", _name("License :: OSI Approved :: BSD License")), None),
        (_component("f", _id("AGPL-3.0-only")), "denied"),
        (_component("g", _id("MIT"), _id("GPL-3.0-only")), "denied"),
        (_component("h", _id("WTFPL")), "unknown"),
        (_component("i", _name("Some custom licence")), "unknown"),
        (_component("j"), "unknown"),
    ],
)
def test_component_grading(component: dict[str, Any], status: str | None) -> None:
    finding = sc.grade_component(component, POLICY)
    assert (finding.status if finding else None) == status


def test_denied_finding_names_the_licence() -> None:
    finding = sc.grade_component(_component("f", _id("AGPL-3.0-only")), POLICY)
    assert finding is not None
    assert finding.component == "f@1.0" and "AGPL-3.0-only is denied" in finding.detail


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"policy": {"allow": ["MIT"], "deny": ["MIT"]}}, "both allowed and denied"),
        ({"policy": {"allow": []}}, "allow is empty"),
        ({"policy": {"allow": ["MIT"]}, "rules": {}}, "unknown key rules"),
        ({"policy": {"allow": ["MIT"], "alow": ["BSD"]}}, r"unknown key \[policy\] alow"),
        ({"policy": {"allow": "MIT"}}, r"\[policy\] allow must be an array"),
        ({"policy": {"allow": ["MIT OR BSD-3-Clause"]}}, "list single ids"),
        ({"policy": {"allow": ["MIT"]}, "reviewed": {"pkg:pypi/x": "MIT OR"}}, "pkg:pypi/x"),
    ],
)
def test_bad_policies_are_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(sc.SupplyChainError, match=message):
        sc.policy_from_mapping(raw)


def test_the_repository_policy_names_real_spdx_ids() -> None:
    from cyclonedx.spdx import is_supported_id

    policy = sc.load_policy(REPO / "ops" / "license-policy.toml")
    for licence in policy.allow | policy.deny | set(policy.classifiers.values()):
        assert licence.startswith("LicenseRef-") or is_supported_id(licence), licence
    assert "AGPL-3.0-only" in policy.deny


def test_bom_shape_and_purls() -> None:
    bom: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "metadata": {"component": {"type": "library", "name": "spark", "version": "1.4.0"}},
        "components": [
            _component("a", _id("MIT")),
            {**_component("b", purl=""), "components": [_component("c", purl="not-a-purl")]},
        ],
    }
    assert sc.bom_shape_problems(bom) == []
    assert [c["name"] for c in sc.components(bom)] == ["a", "b", "c"]
    assert sc.components_without_purl(bom) == [
        "b@1.0",
        "c@1.0 (purl 'not-a-purl' is malformed)",
    ]
    broken = {"bomFormat": "SPDX", "specVersion": "1.4", "components": []}
    problems = sc.bom_shape_problems(broken)
    assert len(problems) == 4, problems


def _statement(subjects: dict[str, str]) -> dict[str, Any]:
    return sc.make_provenance(
        subjects,
        build_type=sc.SDIST_BUILD_TYPE,
        builder_id=sc.SANDBOX_BUILDER_ID,
        external_parameters={"project": "spark"},
    )


def test_provenance_matching_the_artefact_passes() -> None:
    digest = hashlib.sha256(b"artefact").hexdigest()
    statement = _statement({"spark-1.4.0.tar.gz": digest})
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert sc.provenance_problems(statement, {"spark-1.4.0.tar.gz": digest}) == []


def test_provenance_of_another_build_is_named() -> None:
    statement = _statement({"spark-1.4.0.tar.gz": hashlib.sha256(b"built").hexdigest()})
    tampered = hashlib.sha256(b"tampered").hexdigest()
    [problem] = sc.provenance_problems(statement, {"spark-1.4.0.tar.gz": tampered})
    assert f"sha256 {tampered}" in problem and "matches no subject" in problem


def test_provenance_shape_problems() -> None:
    digest = hashlib.sha256(b"a").hexdigest()
    statement = _statement({"a": digest})
    statement["predicateType"] = "https://slsa.dev/provenance/v0.2"
    del statement["predicate"]["runDetails"]["builder"]["id"]
    statement["subject"].append({"name": "b", "digest": {"sha1": "0" * 40}})
    problems = sc.provenance_problems(statement, {"a": digest})
    assert len(problems) == 3, problems
    assert sc.provenance_problems([], {"a": digest}) != []
    assert "no artefact" in " ".join(sc.provenance_problems(_statement({"a": digest}), {}))


def _project(root: Path) -> Path:
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "Spark.Gate"\nversion = "1.4.0"\nlicense = "Apache-2.0"\n'
    )
    (root / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (root / "pkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    return root


def test_sdist_is_reproducible_and_carries_only_sources(tmp_path: Path) -> None:
    root = _project(tmp_path / "src")
    first = sc.build_sdist(root, ["pkg"], tmp_path / "one")
    (root / "pkg" / "__init__.py").touch()  # a new mtime must not change the bytes
    second = sc.build_sdist(root, ["pkg"], tmp_path / "two")
    assert first.name == "spark_gate-1.4.0.tar.gz"
    assert sc.sha256_file(first) == sc.sha256_file(second)
    with tarfile.open(first) as archive:
        assert archive.getnames() == [
            "spark_gate-1.4.0/PKG-INFO",
            "spark_gate-1.4.0/pkg/__init__.py",
            "spark_gate-1.4.0/pyproject.toml",
        ]
        assert {m.mtime for m in archive.getmembers()} == {sc.DEFAULT_SOURCE_DATE_EPOCH}
    (root / "pkg" / "__init__.py").write_text("VALUE = 2\n")
    third = sc.build_sdist(root, ["pkg"], tmp_path / "three")
    assert sc.sha256_file(third) != sc.sha256_file(first)


def test_sdist_honours_source_date_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    built = sc.build_sdist(_project(tmp_path / "src"), ["pkg"], tmp_path / "out")
    with tarfile.open(built) as archive:
        assert {m.mtime for m in archive.getmembers()} == {1_700_000_000}


def test_artefact_digests_of_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "a.whl").write_bytes(b"a")
    (tmp_path / "b.tar.gz").write_bytes(b"b")
    assert sc.artefact_digests([tmp_path / "dist", tmp_path / "b.tar.gz"]) == {
        "a.whl": hashlib.sha256(b"a").hexdigest(),
        "b.tar.gz": hashlib.sha256(b"b").hexdigest(),
    }


def test_schema_validation_with_cyclonedx_python_lib() -> None:
    bom: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "components": [_component("a", _id("MIT"))],
    }
    assert sc.validate_sbom(json.dumps(bom)) is None
    bom["components"][0]["type"] = "gadget"
    error = sc.validate_sbom(json.dumps(bom))
    assert error is not None and "/components/0/type" in error
    assert str(sc.validate_sbom("{")).startswith("not JSON")


@pytest.mark.parametrize(
    "iri",
    [
        "https://pypi.org/project/psycopg/",
        "git+https://github.com/org/repo.git@v1.2",
        "mailto:ops@spark.example",
        "../relative/path",
        "",
        "http://exa mple.com/",
        "http://[::1/",
        "https://example.com/%zz",
        "https://bücher.example/ünïcode",
    ],
)
def test_fast_iri_check_agrees_with_the_exact_parser(iri: str) -> None:
    from jsonschema.validators import Draft7Validator

    fast = sc.fast_format_checker()
    for fmt in ("iri", "iri-reference"):
        assert fast.conforms(iri, fmt) == Draft7Validator.FORMAT_CHECKER.conforms(iri, fmt), fmt


def test_fast_iri_check_accepts_ip_literals() -> None:
    # RFC 3986 §3.2.2 allows them; rfc3987-syntax's grammar rejects them.
    assert sc.fast_format_checker().conforms("http://[::1]:8080/a?b=c#d", "iri-reference")


def test_denied_licence_overlay_shows_up_in_a_real_sbom(tmp_path: Path) -> None:
    """The sandbox's supply_chain defect, end to end through cyclonedx-py (no validation)."""
    environment = sandbox_supply_chain.release_environment(["denied_license"], tmp_path)
    assert environment == tmp_path / sandbox_supply_chain.OVERLAY_DIR
    sbom = sc.generate_sbom(environment, REPO / "pyproject.toml", tmp_path / "sbom.json", 120)
    bom = json.loads(sbom.read_text())
    policy = sc.load_policy(REPO / "ops" / "license-policy.toml")
    findings = [f for c in sc.components(bom) if (f := sc.grade_component(c, policy))]
    assert [(f.component, f.status) for f in findings] == [
        (
            f"{sandbox_supply_chain.DENIED_DISTRIBUTION}@{sandbox_supply_chain.DENIED_VERSION}",
            "denied",
        )
    ]
    assert bom["metadata"]["component"]["name"] == "pytest-spark-gate"
    assert sandbox_supply_chain.release_environment([], tmp_path) != environment
