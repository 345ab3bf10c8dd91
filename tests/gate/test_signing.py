"""The tamper matrix: verify fails, naming the file, for any change to a signed bundle."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pytest_spark.cli import main as spark_gate
from pytest_spark.signing import ENVELOPE, PAYLOAD_TYPE, generate_key_pem, pae


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real bundle from a gate run, signed with a release key; copied per test."""
    from .conftest import PASSING_SUITE, TINY_CHECKLIST

    project = tmp_path_factory.mktemp("project")
    (project / "ops").mkdir()
    (project / "ops/checklist.toml").write_text(TINY_CHECKLIST)
    (project / "test_suite.py").write_text(
        PASSING_SUITE
        + """
@pytest.mark.go_nogo("G1")
def test_a1_sbom(spark_evidence):
    spark_evidence.attach("sbom", '{"bomFormat": "CycloneDX", "specVersion": "1.6"}')
"""
    )
    private, public = generate_key_pem()
    (project / "release.pem").write_bytes(private)
    (project / "release.pub.pem").write_bytes(public)
    import subprocess
    import sys

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "tiny",
            "-p",
            "no:cacheprovider",
            "-q",
            "--spark-signing-key",
            "release.pem",
            "--spark-release",
            "v1.4.0",
        ],
        cwd=project,
        check=True,
        capture_output=True,
    )
    (bundle,) = (project / "reports/v1.4.0").iterdir()
    return bundle


@pytest.fixture
def bundle(signed_bundle: Path, tmp_path: Path) -> Path:
    # The copy keeps the directory's name: it is the signed run id.
    copy = tmp_path / signed_bundle.name
    shutil.copytree(signed_bundle, copy)
    shutil.copy(
        signed_bundle.parent.parent.parent / "release.pub.pem", tmp_path / "release.pub.pem"
    )
    return copy


def verify(bundle: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = spark_gate(["verify", str(bundle), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def bundle_files(signed_bundle: Path) -> list[str]:
    return sorted(
        p.relative_to(signed_bundle).as_posix() for p in signed_bundle.rglob("*") if p.is_file()
    )


def test_bundle_has_the_ritual_files_and_verifies(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from .conftest import TINY_CHECKLIST

    names = {p.name for p in bundle.iterdir()}
    assert {
        "checks.jsonl",
        "verdict.json",
        "report.html",
        "junit.xml",
        "release_tag.txt",
        "scan_v1.4.0.txt",
        "sbom_v1.4.0.json",
        "manifest.json",
        ENVELOPE,
        "signing_key.pub.pem",
        "inputs",
    } <= names
    assert (bundle / "inputs/ops/checklist.toml").read_text() == TINY_CHECKLIST
    assert json.loads((bundle / "sbom_v1.4.0.json").read_text())["bomFormat"] == "CycloneDX"
    code, out = verify(bundle, capsys, "--key", str(bundle.parent / "release.pub.pem"))
    assert code == 0, out
    assert "verdict GO" in out and "dev-signed" not in out


def test_every_file_flipped_fails_naming_it(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in bundle_files(bundle):
        target = bundle / name
        original = target.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        target.write_bytes(bytes(flipped))
        code, out = verify(bundle, capsys)
        target.write_bytes(original)
        assert code != 0, f"a flipped byte in {name} went unnoticed"
        assert name in out, f"verify did not name {name}: {out}"


def test_deleted_file_fails(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (bundle / "checks.jsonl").unlink()
    code, out = verify(bundle, capsys)
    assert code == 1 and "checks.jsonl: missing" in out


def test_added_file_fails(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (bundle / "attachments").mkdir(exist_ok=True)
    (bundle / "attachments" / "extra.txt").write_text("slipped in later")
    code, out = verify(bundle, capsys)
    assert code == 1 and "attachments/extra.txt: added after signing" in out


def test_other_key_fails(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, other_public = generate_key_pem()
    (tmp_path / "other.pub.pem").write_bytes(other_public)
    code, out = verify(bundle, capsys, "--key", str(tmp_path / "other.pub.pem"))
    assert code == 1 and f"{ENVELOPE}: signature does not verify with the given --key" in out


def test_truncated_envelope_fails(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    envelope = bundle / ENVELOPE
    envelope.write_bytes(envelope.read_bytes()[:100])
    code, out = verify(bundle, capsys)
    assert code == 1 and ENVELOPE in out


def test_resigned_with_a_swapped_key_fails_when_pinned(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone who rewrites a file and re-signs with their own key is caught by --key."""
    from pytest_spark.signing import load_signing_key, sign_bundle

    (bundle / "verdict.json").write_text('{"verdict": "GO"}')
    (bundle / "forged.pem").write_bytes(generate_key_pem()[0])
    forged = load_signing_key(str(bundle / "forged.pem"), bundle)
    (bundle / "forged.pem").unlink()
    sign_bundle(bundle, forged, {"spark": {"verdict": "GO"}})
    code, out = verify(bundle, capsys, "--key", str(bundle.parent / "release.pub.pem"))
    assert code == 1 and "signature does not verify" in out


def test_pae_matches_the_dsse_test_vector() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert PAYLOAD_TYPE == "application/vnd.in-toto+json"


def test_payload_is_an_in_toto_statement_over_every_file(bundle: Path) -> None:
    import base64

    envelope = json.loads((bundle / ENVELOPE).read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    names = {s["name"] for s in statement["subject"]}
    assert names == set(bundle_files(bundle)) - {ENVELOPE}
    assert statement["predicate"]["result"] == "PASSED"
    spark = statement["predicate"]["spark"]
    assert spark["verdict"] == "GO"
    assert (spark["release"], spark["gate"], spark["run_id"]) == ("v1.4.0", "tiny", bundle.name)
    (checklist,) = [d for d in statement["predicate"]["configuration"] if d["name"] == "checklist"]
    copy = bundle / checklist["annotations"]["bundle_path"]
    assert checklist["uri"] == "ops/checklist.toml"
    assert checklist["digest"]["sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest()
