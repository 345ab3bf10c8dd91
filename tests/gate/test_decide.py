"""`spark-gate decide`: a canary stage's signed bundle -> promote (0), hold (1) or rollback (2).

Real bundles come from gate runs of a tiny canary checklist (S1 measured against a limit, S7
the stage's integrity), signed with a release key: a GO, a measured breach of S1, a trigger
firing in S7, an inconclusive S1, a deselected S1, and a bundle of another gate. Each test
runs the command as a controller would and reads the first line of stdout and the exit code.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_spark.cli import main as spark_gate
from pytest_spark.decide import HOLD, PROMOTE, ROLLBACK, stage_decision
from pytest_spark.signing import ENVELOPE, generate_key_pem, load_signing_key, sign_bundle
from pytest_spark.verify import Verification

RELEASE = "v1.4.0"
CANARY_CHECKLIST = """
[gates]
canary = "canary stage metrics and stage integrity"
go_nogo = "release GO/NO-GO"

[[item]]
id = "S1"
title = "API p95"
gates = ["canary"]
waivable = true
sub_checks = ["canary_p95_ms"]

[[item]]
id = "S7"
title = "stage integrity"
gates = ["canary"]
waivable = false
sub_checks = ["triggers_pending_or_firing"]

[[item]]
id = "G1"
title = "a release item"
gates = ["go_nogo"]
waivable = true
sub_checks = ["offset_ms"]
"""
# What each check measures comes from the environment of the gate run.
CANARY_SUITE = """
import os

import pytest


@pytest.mark.canary("S1")
def test_s1_p95(spark_evidence):
    if os.environ.get("S1_NO_DATA"):
        spark_evidence.inconclusive("Prometheus returned no samples for the canary track")
    p95 = float(os.environ.get("S1_P95_MS", "120"))
    spark_evidence.check("canary_p95_ms", p95, unit="ms", limit=200, why="canary too slow")


@pytest.mark.canary("S7")
def test_s7_triggers(spark_evidence):
    firing = float(os.environ.get("S7_FIRING", "0"))
    spark_evidence.check("triggers_pending_or_firing", firing, limit=1, why="T02 is firing")


@pytest.mark.go_nogo("G1")
def test_g1(spark_evidence):
    spark_evidence.check("offset_ms", 1, unit="ms", limit=100)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("canary-project")
    (project / "ops").mkdir()
    (project / "ops/checklist.toml").write_text(CANARY_CHECKLIST)
    plan = Path(__file__).resolve().parents[2] / "ops" / "canary-plan.toml"
    (project / "ops/canary-plan.toml").write_text(plan.read_text())
    (project / "test_canary.py").write_text(CANARY_SUITE)
    private, public = generate_key_pem()
    (project / "release.pem").write_bytes(private)
    (project / "release.pub.pem").write_bytes(public)
    # Someone else's key: a bundle checked against it must not verify.
    (project / "other.pub.pem").write_bytes(generate_key_pem()[1])
    return project


def run_gate(project: Path, gate: str = "canary", *args: str, **env: str) -> Path:
    """One gate run in a subprocess, signed with the release key; returns the new bundle."""
    releases = project / "reports" / RELEASE
    before = set(releases.iterdir()) if releases.exists() else set()
    command = [sys.executable, "-m", "pytest", "-m", gate, "-p", "no:cacheprovider", "-q"]
    if gate == "canary":
        command += ["--spark-stage", "25"]
    done = subprocess.run(
        [*command, "--spark-release", RELEASE, "--spark-signing-key", "release.pem", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    new = set(releases.iterdir()) - before if releases.exists() else set()
    assert len(new) == 1, f"expected one new bundle:\n{done.stdout}\n{done.stderr}"
    return new.pop()


@pytest.fixture(scope="module")
def go_bundle(project: Path) -> Path:
    return run_gate(project)


@pytest.fixture(scope="module")
def breach_bundle(project: Path) -> Path:
    return run_gate(project, S1_P95_MS="480")


@pytest.fixture(scope="module")
def firing_bundle(project: Path) -> Path:
    return run_gate(project, S7_FIRING="2")


@pytest.fixture(scope="module")
def no_data_bundle(project: Path) -> Path:
    return run_gate(project, S1_NO_DATA="1")


@pytest.fixture(scope="module")
def go_nogo_bundle(project: Path) -> Path:
    return run_gate(project, "go_nogo")


def decide(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = spark_gate(["decide", *args])
    return code, capsys.readouterr().out.splitlines()


def key_of(bundle: Path) -> str:
    return str(bundle.parents[2] / "release.pub.pem")


def verdict_of(bundle: Path) -> dict[str, object]:
    return json.loads((bundle / "verdict.json").read_text())  # type: ignore[no-any-return]


def sign_for_stage(bundle: Path, project: Path, stage: int) -> None:
    """Re-sign the bundle with the release key, its signed verdict now naming ``stage``."""
    envelope = json.loads((bundle / ENVELOPE).read_text())
    predicate = json.loads(base64.b64decode(envelope["payload"]))["predicate"]
    predicate["spark"]["stage"] = stage
    sign_bundle(bundle, load_signing_key("release.pem", project), predicate)


def test_a_signed_canary_go_is_promoted(
    go_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = decide(capsys, str(go_bundle), "--key", key_of(go_bundle))
    assert (code, out[0]) == (0, PROMOTE)
    assert "verdict GO, 2 item(s) satisfied" in out[1]
    assert "release-signed, key pinned by --key" in out[2]


def test_without_key_a_release_signed_go_is_held_until_the_signer_is_pinned(
    go_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Anyone can sign a GO with a key of their own: without --key it promotes nothing."""
    code = spark_gate(["decide", str(go_bundle)])
    captured = capsys.readouterr()
    assert (code, captured.out.splitlines()[0]) == (1, HOLD)
    assert "is not pinned: pass --key" in captured.out


def test_a_measured_breach_is_rolled_back(
    breach_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verdict_of(breach_bundle)["items"]["S1"]["status"] == "FAILED"  # type: ignore[index]
    code, out = decide(capsys, str(breach_bundle), "--key", key_of(breach_bundle))
    assert (code, out[0]) == (2, ROLLBACK)
    assert "1 item(s) FAILED" in out[1]
    assert out[2].startswith("  S1 FAILED:") and "canary_p95_ms = 480 ms" in out[2]


def test_a_trigger_firing_in_the_stage_is_rolled_back_naming_s7(
    firing_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = decide(capsys, str(firing_bundle), "--key", key_of(firing_bundle))
    assert (code, out[0]) == (2, ROLLBACK)
    assert out[2].startswith("  S7 FAILED:")


def test_an_inconclusive_stage_is_held(
    no_data_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verdict_of(no_data_bundle)["verdict"] == "NO-GO"
    code, out = decide(capsys, str(no_data_bundle), "--key", key_of(no_data_bundle))
    assert (code, out[0]) == (1, HOLD)
    assert "verdict NO-GO without a measured breach" in out[1]
    assert any(line.startswith("  S1 INCONCLUSIVE:") for line in out)


def test_a_stage_whose_check_never_ran_is_held(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = run_gate(project, "canary", "-k", "not test_s1")
    code, out = decide(capsys, str(missing), "--key", key_of(missing))
    assert (code, out[0]) == (1, HOLD)
    assert any(line.startswith("  S1 MISSING:") for line in out)


def test_another_gates_bundle_is_held(
    go_nogo_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verdict_of(go_nogo_bundle)["verdict"] == "GO"
    code, out = decide(capsys, str(go_nogo_bundle), "--key", key_of(go_nogo_bundle))
    assert (code, out[0]) == (1, HOLD)
    assert "signed for gate go_nogo, not canary" in out[1]


def test_a_tampered_bundle_is_held_saying_why(
    breach_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The breach turned into a pass in the unsigned files: decide must not promote it.
    copy = tmp_path / breach_bundle.name
    shutil.copytree(breach_bundle, copy)
    verdict = verdict_of(copy)
    verdict["verdict"] = "GO"
    verdict["items"]["S1"]["status"] = "PASSED"  # type: ignore[index]
    (copy / "verdict.json").write_text(json.dumps(verdict))
    code, out = decide(capsys, str(copy), "--key", key_of(breach_bundle))
    assert (code, out[0]) == (1, HOLD)
    assert "does not verify" in out[1]
    assert any("verdict.json: changed since it was signed" in line for line in out)


def test_a_bundle_signed_by_another_key_is_held(
    go_bundle: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = decide(capsys, str(go_bundle), "--key", str(project / "other.pub.pem"))
    assert (code, out[0]) == (1, HOLD)
    assert any("signature does not verify with the given --key" in line for line in out)


def test_another_release_or_stage_is_held(
    go_bundle: Path, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = key_of(go_bundle)
    code, out = decide(capsys, str(go_bundle), "--key", key, "--release", "v9.9.9")
    assert (code, out[0]) == (1, HOLD)
    assert any("not v9.9.9 (--release)" in line for line in out)
    # The stage is signed with the verdict: an earlier stage's GO cannot promote this one.
    staged = tmp_path / go_bundle.name
    shutil.copytree(go_bundle, staged)
    sign_for_stage(staged, project, 5)
    code, out = decide(capsys, str(staged), "--key", key, "--stage", "25")
    assert (code, out[0]) == (1, HOLD)
    assert "signed for stage 5 %, not 25 % (--stage)" in out[1]
    code, out = decide(capsys, str(staged), "--key", key, "--stage", "5")
    assert (code, out[0]) == (0, PROMOTE)


@pytest.mark.parametrize(
    "args",
    [[], ["--no-such-option", "b"], ["b", "--stage", "five"], ["no/such/bundle"]],
    ids=["no bundle", "unknown option", "bad stage", "missing path"],
)
def test_usage_errors_and_a_missing_path_are_held_never_rolled_back(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = spark_gate(["decide", *args])
    except SystemExit as exc:  # argparse's way out, with the code the controller sees
        code = int(exc.code or 0)
    out = capsys.readouterr().out.splitlines()
    assert (code, out[0]) == (1, HOLD)
    assert len(out) >= 2  # and why


def test_an_unreadable_key_is_held(go_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = decide(capsys, str(go_bundle), "--key", "no/such/key.pem")
    assert (code, out[0]) == (1, HOLD)
    assert out[1].startswith("--key no/such/key.pem")


def test_the_exit_code_is_the_one_a_subprocess_sees(breach_bundle: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_spark.cli", "decide", str(breach_bundle)],
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stdout.splitlines()[0]) == (2, ROLLBACK)


def signed(spark: dict[str, object]) -> Verification:
    """A verification that passed, carrying ``spark`` as the signed verdict."""
    facts = {"release": RELEASE, "gate": "canary", "run_id": "r1", **spark}
    return Verification(Path("r1"), statement={"predicate": {"spark": facts}})


def item(status: str) -> dict[str, str]:
    return {"status": status, "reason": "as signed"}


def test_a_failed_item_rolls_back_even_under_a_signed_go() -> None:
    # The gate never signs this; if anything ever did, the breach wins over the GO.
    decision = stage_decision(
        signed({"verdict": "GO", "items": {"S1": item("PASSED"), "S2": item("FAILED")}})
    )
    assert (decision.action, decision.exit_code) == (ROLLBACK, 2)


@pytest.mark.parametrize(
    "spark",
    [
        {"verdict": "GO", "items": {}},
        {"verdict": "GO", "items": {"S1": item("PASSED")}, "blockers": ["interrupted"]},
        {"verdict": "GO", "items": {"S1": item("INCONCLUSIVE")}},
        {"verdict": "NO-GO", "items": {"S1": item("WAIVER-EXPIRED"), "S2": item("ERROR")}},
    ],
    ids=["no items", "a blocker", "GO with an unsatisfied item", "waiver expired and error"],
)
def test_nothing_to_promote_on_without_a_breach_is_a_hold(spark: dict[str, object]) -> None:
    assert stage_decision(signed(spark)).action == HOLD


def test_a_waived_item_does_not_stop_a_go() -> None:
    spark = {"verdict": "GO", "items": {"S1": item("WAIVED"), "S7": item("PASSED")}}
    assert stage_decision(signed(spark)).action == PROMOTE
