"""The files that decided a run are in the bundle and bound by digest; secrets stay out."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from pytest_spark.cli import main as spark_gate
from pytest_spark.signing import ENVELOPE

from .conftest import latest_bundle, waiver_toml

SECRET = "s3cr3t-staging-token-value"
TARGET = """
[target]
name = "staging"
kind = "deployment"

[secrets]
api_token = "SPARK_TEST_API_TOKEN"
"""


def configuration(bundle: Path) -> list[dict]:
    envelope = json.loads((bundle / ENVELOPE).read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    return statement["predicate"]["configuration"]  # type: ignore[no-any-return]


def descriptor(bundle: Path, name: str, uri: str | None = None) -> dict:
    (found,) = [
        d for d in configuration(bundle) if d["name"] == name and uri in (None, d.get("uri"))
    ]
    return found


def test_every_input_is_bound_and_copied(gate_project: pytest.Pytester) -> None:
    gate_project.makefile(".toml", **{"ops/waivers": waiver_toml("G1")})
    gate_project.makefile(".toml", **{"ops/thresholds/latency": "[latency]\np95_ms = 200\n"})
    gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    bundle = latest_bundle(gate_project)
    root = gate_project.path
    for name, uri in (
        ("checklist", "ops/checklist.toml"),
        ("waivers", "ops/waivers.toml"),
        ("ops", "ops/checklist.toml"),
        ("ops", "ops/waivers.toml"),
        ("ops", "ops/thresholds/latency.toml"),
    ):
        found = descriptor(bundle, name, uri)
        source = (root / uri).read_bytes()
        assert found["digest"] == {"sha256": hashlib.sha256(source).hexdigest()}
        assert found["annotations"] == {"bundle_path": f"inputs/{uri}"}
        assert (bundle / "inputs" / uri).read_bytes() == source
    assert descriptor(bundle, "target")["uri"] == "sandbox"


def test_a_missing_waivers_file_is_said_to_be_absent(gate_project: pytest.Pytester) -> None:
    gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    waivers = descriptor(latest_bundle(gate_project), "waivers")
    assert waivers["uri"] == "ops/waivers.toml" and "digest" not in waivers
    assert waivers["annotations"]["present"] is False


def test_a_secret_in_an_input_never_reaches_the_bundle(
    gate_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPARK_TEST_API_TOKEN", SECRET)
    gate_project.makefile(".toml", **{"targets/staging": TARGET})
    gate_project.makefile(".toml", **{"ops/alerting": f'[webhook]\ntoken = "{SECRET}"\n'})
    gate_project.runpytest(
        "-m", "tiny", "-p", "no:cacheprovider", "--spark-target", "targets/staging.toml"
    )
    bundle = latest_bundle(gate_project)
    for path in bundle.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    alerting = descriptor(bundle, "ops", "ops/alerting.toml")
    source = (gate_project.path / "ops/alerting.toml").read_bytes()
    assert alerting["digest"]["sha256"] == hashlib.sha256(source).hexdigest()
    assert alerting["annotations"] == {"bundle_path": "inputs/ops/alerting.toml", "redacted": True}
    target = descriptor(bundle, "target")
    assert target["uri"] == "targets/staging.toml"
    target_file = (gate_project.path / "targets/staging.toml").read_bytes()
    assert (bundle / "inputs/targets/staging.toml").read_bytes() == target_file
    # A redacted copy differs from its digest by design; the bundle still verifies.
    assert spark_gate(["verify", str(bundle)]) == 0


@pytest.mark.parametrize(
    ("stray", "named"),
    [
        ('(root / ".tmp-leftover").write_text("half")', ".tmp-leftover: a temporary file"),
        ('(root / "verdict-link.json").symlink_to("verdict.json")', "verdict-link.json: a symlink"),
    ],
)
def test_a_bundle_that_would_not_verify_is_left_unsigned_and_no_go(
    gate_project: pytest.Pytester, capsys: pytest.CaptureFixture[str], stray: str, named: str
) -> None:
    gate_project.makepyfile(
        test_stray=f"""
import pytest

@pytest.mark.go_nogo("G1")
def test_writes_into_the_bundle(spark_evidence):
    root = spark_evidence.attachments_dir.parent
    {stray}
"""
    )
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*cannot sign the evidence bundle*", f"*{named}*"])
    assert "NO-GO" in result.stdout.lines[-1]
    bundle = latest_bundle(gate_project)
    assert not (bundle / ENVELOPE).exists()
    capsys.readouterr()
    assert spark_gate(["verify", str(bundle)]) == 1
    assert f"{ENVELOPE}: missing" in capsys.readouterr().err
