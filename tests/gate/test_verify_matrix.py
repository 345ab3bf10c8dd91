"""The verify matrix: what a hostile user can do to a bundle, and `spark-gate verify` refusing it.

Real bundles come from gate runs of the tiny checklist (a GO and a NO-GO signed with a release
key, a dev-signed GO, and a GO decided with a weakened checklist kept outside the repository);
each test damages a copy and checks that verify refuses it, naming what is wrong.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from pytest_spark.cli import main as spark_gate
from pytest_spark.signing import (
    ENVELOPE,
    PAYLOAD_TYPE,
    RELEASE_SIGNED,
    SigningKey,
    UnsignableBundle,
    fingerprint,
    generate_key_pem,
    pae,
    sign_bundle,
)

from .conftest import PASSING_SUITE, TINY_CHECKLIST

RELEASE = "v1.4.0"
# Same items, but the unwaivable money item M2 made waivable: the kind of edit a checklist
# kept outside the repository could carry into a GO.
WEAK_CHECKLIST = TINY_CHECKLIST.replace("waivable = false", "waivable = true")
THRESHOLDS = "[latency]\np95_ms = 200\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("project")
    (project / "ops/thresholds").mkdir(parents=True)
    (project / "ops/checklist.toml").write_text(TINY_CHECKLIST)
    (project / "ops/thresholds/latency.toml").write_text(THRESHOLDS)
    (project / "test_suite.py").write_text(PASSING_SUITE)
    private, public = generate_key_pem()
    (project / "release.pem").write_bytes(private)
    (project / "release.pub.pem").write_bytes(public)
    return project


def run_gate(project: Path, *args: str) -> Path:
    """One gate run in a subprocess (a bundle per run); returns the new bundle."""
    releases = project / "reports" / RELEASE
    before = set(releases.iterdir()) if releases.exists() else set()
    command = [sys.executable, "-m", "pytest", "-m", "tiny", "-p", "no:cacheprovider", "-q"]
    done = subprocess.run(
        [*command, "--spark-release", RELEASE, *args],
        cwd=project,
        capture_output=True,
        text=True,
    )
    new = set(releases.iterdir()) - before if releases.exists() else set()
    assert len(new) == 1, f"expected one new bundle:\n{done.stdout}\n{done.stderr}"
    return new.pop()


@pytest.fixture(scope="module")
def go_bundle(project: Path) -> Path:
    return run_gate(project, "--spark-signing-key", "release.pem")


@pytest.fixture(scope="module")
def nogo_bundle(project: Path) -> Path:
    # M2's only test deselected: the item never ran, so the gate says NO-GO.
    return run_gate(project, "--spark-signing-key", "release.pem", "-k", "not test_a2")


@pytest.fixture(scope="module")
def dev_bundle(project: Path) -> Path:
    return run_gate(project)


@pytest.fixture(scope="module")
def weak_checklist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert WEAK_CHECKLIST != TINY_CHECKLIST, "the tiny checklist has no unwaivable item left"
    path = tmp_path_factory.mktemp("elsewhere") / "checklist.toml"
    path.write_text(WEAK_CHECKLIST)
    return path


@pytest.fixture(scope="module")
def weak_bundle(project: Path, weak_checklist: Path) -> Path:
    # One argument: as two, pytest would take the path for a test path and move the rootdir.
    return run_gate(
        project, "--spark-signing-key", "release.pem", f"--spark-checklist={weak_checklist}"
    )


def copy_of(bundle: Path, where: Path) -> Path:
    """A copy that keeps the bundle's name (the signed run id), with the release key beside it."""
    copy = where / bundle.name
    shutil.copytree(bundle, copy, symlinks=True)
    shutil.copy(bundle.parents[2] / "release.pub.pem", where / "release.pub.pem")
    return copy


def release_key(bundle: Path) -> str:
    return str(bundle.parent / "release.pub.pem")


def verify(bundle: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = spark_gate(["verify", str(bundle), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def statement_of(bundle: Path) -> dict:
    envelope = json.loads((bundle / ENVELOPE).read_text())
    return json.loads(base64.b64decode(envelope["payload"]))  # type: ignore[no-any-return]


def attacker(where: Path) -> tuple[SigningKey, str]:
    """A key the attacker holds, and the path of its public PEM."""
    key = SigningKey(Ed25519PrivateKey.generate(), RELEASE_SIGNED, "attacker")
    (where / "attacker.pub.pem").write_bytes(key.public_pem)
    return key, str(where / "attacker.pub.pem")


def forge_envelope(bundle: Path, statement: dict, key: SigningKey, copies: int = 1) -> None:
    """Sign ``statement`` as it stands (no re-hashing), as a hand-made envelope would be."""
    body = json.dumps(statement).encode()
    sig = base64.b64encode(key.private.sign(pae(PAYLOAD_TYPE, body))).decode()
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [{"keyid": key.fingerprint, "sig": sig}] * copies,
    }
    (bundle / ENVELOPE).write_text(json.dumps(envelope))


def resign(bundle: Path, key: SigningKey, **spark: str) -> None:
    """Re-sign the bundle as it now is with ``key``, keeping (or overriding) the predicate."""
    predicate = statement_of(bundle)["predicate"]
    predicate["spark"].update(spark)
    predicate["signing"] = {"mode": key.mode, "key_fingerprint": key.fingerprint}
    sign_bundle(bundle, key, predicate)


# -- the tree: every entry must be a signed regular file or a folder holding one ---------------


def _symlink_to_signed_file(b: Path) -> str:
    (b / "verdict-link.json").symlink_to("verdict.json")
    return "verdict-link.json: a symlink"


def _symlink_instead_of_signed_file(b: Path) -> str:
    outside = b.parent / "verdict.json"
    shutil.copy(b / "verdict.json", outside)  # same bytes, same digest, outside the bundle
    (b / "verdict.json").unlink()
    (b / "verdict.json").symlink_to(outside)
    return "verdict.json: a symlink"


def _symlinked_folder(b: Path) -> str:
    (b / "more-inputs").symlink_to("inputs", target_is_directory=True)
    return "more-inputs: a symlink"


def _fifo(b: Path) -> str:
    os.mkfifo(b / "pipe")
    return "pipe: a named pipe (fifo)"


def _fifo_instead_of_signed_file(b: Path) -> str:
    (b / "checks.jsonl").unlink()
    os.mkfifo(b / "checks.jsonl")  # reading it would block: verify must not open it
    return "checks.jsonl: a named pipe (fifo)"


def _tmp_leftover(b: Path) -> str:
    (b / ".tmp-x").write_text("half a file")
    return ".tmp-x: a temporary file"


def _tmp_leftover_in_a_folder(b: Path) -> str:
    (b / "inputs/ops/.tmp-checklist.toml").write_text(TINY_CHECKLIST)
    return "inputs/ops/.tmp-checklist.toml: a temporary file"


def _nested_envelope(b: Path) -> str:
    nested = b / "attachments/test_suite.py_test_a1"
    nested.mkdir(parents=True)
    shutil.copy(b / ENVELOPE, nested / ENVELOPE)
    return f"attachments/test_suite.py_test_a1/{ENVELOPE}: a second {ENVELOPE}"


def _empty_folder(b: Path) -> str:
    (b / "attachments-extra").mkdir()
    return "attachments-extra/: a directory that holds no signed file"


def _empty_folder_in_a_folder(b: Path) -> str:
    (b / "inputs/ops/extra").mkdir()
    return "inputs/ops/extra/: a directory that holds no signed file"


def _added_file(b: Path) -> str:
    (b / "inputs/ops/relaxed.toml").write_text("p95_ms = 5000\n")
    return "inputs/ops/relaxed.toml: added after signing"


STRAYS: dict[str, Callable[[Path], str]] = {
    "symlink to a signed file": _symlink_to_signed_file,
    "symlink instead of a signed file": _symlink_instead_of_signed_file,
    "symlinked folder": _symlinked_folder,
    "fifo": _fifo,
    "fifo instead of a signed file": _fifo_instead_of_signed_file,
    ".tmp- leftover": _tmp_leftover,
    ".tmp- leftover in a folder": _tmp_leftover_in_a_folder,
    "nested envelope": _nested_envelope,
    "empty folder": _empty_folder,
    "empty folder in a folder": _empty_folder_in_a_folder,
    "added file": _added_file,
}


@pytest.mark.parametrize("case", list(STRAYS))
def test_an_entry_that_is_not_a_signed_file_is_refused_naming_it(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    expected = STRAYS[case](bundle)
    for extra in ([], ["--key", release_key(bundle)]):
        code, out = verify(bundle, capsys, *extra)
        assert code == 1, out
        assert expected in out, out
        assert f"REFUSED {bundle}" in out


def test_a_signed_bundle_verifies_and_says_what_it_is(
    go_bundle: Path, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    code, out = verify(bundle, capsys, "--key", release_key(bundle))
    assert code == 0, out
    checklist_sha = hashlib.sha256((project / "ops/checklist.toml").read_bytes()).hexdigest()
    public = load_pem_public_key((tmp_path / "release.pub.pem").read_bytes())
    assert isinstance(public, Ed25519PublicKey)
    signer = fingerprint(public)
    for fact in (
        f"release {RELEASE}",
        "gate tiny",
        "verdict GO",
        f"run {bundle.name}",
        f"signed by {signer} (release-signed, key pinned by --key)",
        f"checklist: ops/checklist.toml sha256:{checklist_sha}",
    ):
        assert fact in out
    assert "NOT pinned" not in out


def test_without_key_the_signer_is_said_to_be_unpinned(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    assert spark_gate(["verify", str(bundle)]) == 0
    err = capsys.readouterr().err
    assert "WARNING: the signer is NOT pinned" in err and "anyone could have signed it" in err


# -- the bundle's path and release -------------------------------------------------------------


def test_a_renamed_bundle_is_refused(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    renamed = bundle.rename(tmp_path / "20990101T000000Z-abcdef")
    code, out = verify(renamed, capsys, "--key", release_key(bundle))
    assert code == 1
    assert "keep the bundle directory's name; it is the signed run id" in out
    assert go_bundle.name in out


def test_release_must_be_the_one_asked_for(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    code, out = verify(bundle, capsys, "--key", release_key(bundle), "--release", RELEASE)
    assert code == 0, out
    code, out = verify(bundle, capsys, "--key", release_key(bundle), "--release", "v1.5.0")
    assert code == 1
    assert f"signed for release {RELEASE}, not v1.5.0 (--release)" in out


# -- --require-go ------------------------------------------------------------------------------


def test_require_go_accepts_a_release_signed_go_pinned_by_key(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    code, out = verify(bundle, capsys, "--key", release_key(bundle), "--require-go")
    assert code == 0, out


def test_require_go_refuses_a_no_go(
    nogo_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(nogo_bundle, tmp_path)
    code, out = verify(bundle, capsys, "--key", release_key(bundle))
    assert code == 0, out  # a genuine NO-GO verifies: it is evidence too
    assert "verdict NO-GO" in out
    code, out = verify(bundle, capsys, "--key", release_key(bundle), "--require-go")
    assert code == 1
    assert "--require-go: the signed verdict is NO-GO, not GO" in out


def test_require_go_without_key_is_refused(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    code, out = verify(bundle, capsys, "--require-go")
    assert code == 2
    assert "--require-go needs --key" in out


def test_require_go_refuses_a_dev_signed_go_pinned_with_its_own_key(
    dev_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(dev_bundle, tmp_path)
    own_key = shutil.copy(bundle / "signing_key.pub.pem", tmp_path / "own.pub.pem")
    code, out = verify(bundle, capsys, "--key", str(own_key))
    assert code == 0, out
    assert "verdict GO" in out and "dev-signed" in out
    code, out = verify(bundle, capsys, "--key", str(own_key), "--require-go")
    assert code == 1
    assert "--require-go: the bundle is dev-signed, not release-signed" in out


# -- the envelope and the statement ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../outside.txt", "has an empty, '.' or '..' component"),
        ("inputs/../../outside.txt", "has an empty, '.' or '..' component"),
        ("./verdict.json", "has an empty, '.' or '..' component"),
        ("/etc/hostname", "is an absolute path"),
        ("inputs\\ops\\checklist.toml", "contains a backslash"),
        (ENVELOPE, "is the envelope itself"),
    ],
)
def test_an_unsafe_subject_name_is_refused(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, why: str
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    (tmp_path / "outside.txt").write_text("outside the bundle")
    key, public = attacker(tmp_path)
    statement = statement_of(bundle)
    statement["predicate"]["signing"] = {"mode": key.mode, "key_fingerprint": key.fingerprint}
    digest = hashlib.sha256(b"outside the bundle").hexdigest()
    statement["subject"].append({"name": name, "digest": {"sha256": digest}})
    forge_envelope(bundle, statement, key)
    code, out = verify(bundle, capsys, "--key", public)
    assert code == 1
    assert f"{name!r} {why}" in out


def test_a_subject_listed_twice_is_refused(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    key, public = attacker(tmp_path)
    statement = statement_of(bundle)
    statement["predicate"]["signing"] = {"mode": key.mode, "key_fingerprint": key.fingerprint}
    twice = next(s for s in statement["subject"] if s["name"] == "verdict.json")
    statement["subject"].append(dict(twice))
    forge_envelope(bundle, statement, key)
    code, out = verify(bundle, capsys, "--key", public)
    assert code == 1 and "subject verdict.json is listed twice" in out


def test_two_signatures_are_refused(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    envelope = json.loads((bundle / ENVELOPE).read_text())
    key, _ = attacker(tmp_path)
    body = base64.b64decode(envelope["payload"])
    theirs = base64.b64encode(key.private.sign(pae(PAYLOAD_TYPE, body))).decode()
    envelope["signatures"].append({"keyid": key.fingerprint, "sig": theirs})
    (bundle / ENVELOPE).write_text(json.dumps(envelope))
    code, out = verify(bundle, capsys, "--key", release_key(bundle))
    assert code == 1 and f"{ENVELOPE}: carries 2 signatures" in out


def test_the_same_signature_twice_is_refused(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    envelope = json.loads((bundle / ENVELOPE).read_text())
    envelope["signatures"] *= 2
    (bundle / ENVELOPE).write_text(json.dumps(envelope))
    code, out = verify(bundle, capsys, "--key", release_key(bundle))
    assert code == 1 and "carries 2 signatures" in out


def test_another_payload_type_is_refused(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    key, public = attacker(tmp_path)
    statement = statement_of(bundle)
    body = json.dumps(statement).encode()
    kind = "application/json"
    envelope = {
        "payloadType": kind,
        "payload": base64.b64encode(body).decode(),
        "signatures": [{"sig": base64.b64encode(key.private.sign(pae(kind, body))).decode()}],
    }
    (bundle / ENVELOPE).write_text(json.dumps(envelope))
    code, out = verify(bundle, capsys, "--key", public)
    assert code == 1 and f"payloadType 'application/json' is not {PAYLOAD_TYPE}" in out


def test_verdict_file_contradicting_the_statement_is_refused(
    nogo_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An attacker turns verdict.json into a GO and re-signs with their own key."""
    bundle = copy_of(nogo_bundle, tmp_path)
    verdict = json.loads((bundle / "verdict.json").read_text())
    verdict["verdict"] = "GO"
    (bundle / "verdict.json").write_text(json.dumps(verdict))
    key, public = attacker(tmp_path)
    resign(bundle, key)
    code, out = verify(bundle, capsys, "--key", release_key(bundle))
    assert code == 1 and f"{ENVELOPE}: signature does not verify with the given --key" in out
    for extra in ([], ["--key", public]):
        code, out = verify(bundle, capsys, *extra)
        assert code == 1
        assert "verdict.json: says verdict 'GO' but the signed statement says 'NO-GO'" in out


def test_a_forged_go_passes_only_an_unpinned_check(
    nogo_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A consistent forgery (files and statement say GO) is caught by pinning the key."""
    bundle = copy_of(nogo_bundle, tmp_path)
    verdict = json.loads((bundle / "verdict.json").read_text())
    verdict["verdict"] = "GO"
    (bundle / "verdict.json").write_text(json.dumps(verdict))
    key, _ = attacker(tmp_path)
    predicate = statement_of(bundle)["predicate"]
    predicate["spark"]["verdict"] = "GO"
    predicate["result"] = "PASSED"
    predicate["signing"] = {"mode": key.mode, "key_fingerprint": key.fingerprint}
    sign_bundle(bundle, key, predicate)
    code, out = verify(bundle, capsys)
    assert code == 0, out
    assert "NOT pinned" in out
    code, out = verify(bundle, capsys, "--key", release_key(bundle), "--require-go")
    assert code == 1 and "signature does not verify with the given --key" in out


def test_a_statement_claiming_another_signer_is_refused(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    key, _ = attacker(tmp_path)
    # Signed by the attacker, still claiming the release key's fingerprint and mode.
    sign_bundle(bundle, key, statement_of(bundle)["predicate"])
    code, out = verify(bundle, capsys)
    assert code == 1
    assert f"but the signature verifies with {key.fingerprint}" in out


def test_a_result_contradicting_the_verdict_is_refused(
    nogo_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(nogo_bundle, tmp_path)
    key, public = attacker(tmp_path)
    predicate = statement_of(bundle)["predicate"]
    predicate["result"] = "PASSED"
    predicate["signing"] = {"mode": key.mode, "key_fingerprint": key.fingerprint}
    sign_bundle(bundle, key, predicate)
    code, out = verify(bundle, capsys, "--key", public)
    assert code == 1 and "the signed result 'PASSED' contradicts the signed verdict NO-GO" in out


# -- the checklist that decided the verdict ----------------------------------------------------


def test_a_statement_binding_no_checklist_is_refused(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    key, public = attacker(tmp_path)
    predicate = statement_of(bundle)["predicate"]
    predicate["configuration"] = [{"name": "checklist.toml"}]  # named, not bound
    predicate["signing"] = {"mode": key.mode, "key_fingerprint": key.fingerprint}
    sign_bundle(bundle, key, predicate)
    code, out = verify(bundle, capsys, "--key", public)
    assert code == 1 and "does not bind exactly one checklist by sha256" in out


def test_a_go_decided_with_a_weakened_checklist_shows_it_and_is_refused_against_the_real_one(
    weak_bundle: Path,
    weak_checklist: Path,
    project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle = copy_of(weak_bundle, tmp_path)
    weak_sha = hashlib.sha256(weak_checklist.read_bytes()).hexdigest()
    code, out = verify(bundle, capsys, "--key", release_key(bundle), "--require-go")
    assert code == 0, out  # a valid signature over a GO: only the checklist gives it away
    assert f"checklist: {weak_checklist.as_posix()} sha256:{weak_sha}" in out
    copy = bundle / "inputs/external/checklist/checklist.toml"
    assert copy.read_text() == WEAK_CHECKLIST
    real = project / "ops/checklist.toml"
    code, out = verify(
        bundle, capsys, "--key", release_key(bundle), "--require-go", "--checklist", str(real)
    )
    assert code == 1
    assert f"decided with the checklist {weak_checklist.as_posix()} (sha256 {weak_sha})" in out
    assert "not with the --checklist file" in out
    code, out = verify(bundle, capsys, "--checklist", str(weak_checklist))
    assert code == 0, out


def test_the_checked_in_checklist_matches_a_bundle_it_decided(
    go_bundle: Path, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    real = project / "ops/checklist.toml"
    code, out = verify(bundle, capsys, "--key", release_key(bundle), "--checklist", str(real))
    assert code == 0, out


def test_a_changed_input_copy_is_refused(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    copy = bundle / "inputs/ops/thresholds/latency.toml"
    copy.write_text("[latency]\np95_ms = 5000\n")
    code, out = verify(bundle, capsys, "--key", release_key(bundle))
    assert code == 1 and "inputs/ops/thresholds/latency.toml: changed since it was signed" in out


def test_usage_problems_exit_2(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    assert verify(tmp_path / "nothing-here", capsys)[0] == 2
    assert verify(bundle, capsys, "--key", str(tmp_path / "no.pem"))[0] == 2
    assert verify(bundle, capsys, "--checklist", str(tmp_path / "no.toml"))[0] == 2


# -- the signing side refuses what verify would refuse ------------------------------------------


@pytest.mark.parametrize("case", [".tmp- leftover", "symlink to a signed file", "fifo"])
def test_signing_refuses_a_bundle_that_would_not_verify(
    go_bundle: Path, tmp_path: Path, case: str
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    expected = STRAYS[case](bundle)
    key, _ = attacker(tmp_path)
    envelope = (bundle / ENVELOPE).read_bytes()
    with pytest.raises(UnsignableBundle, match="cannot sign the evidence bundle") as refused:
        resign(bundle, key)
    assert expected in str(refused.value)
    assert (bundle / ENVELOPE).read_bytes() == envelope  # nothing was signed over it


def test_signing_drops_empty_folders(
    go_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = copy_of(go_bundle, tmp_path)
    (bundle / "attachments/never-written").mkdir(parents=True)
    key, public = attacker(tmp_path)
    resign(bundle, key)
    assert not (bundle / "attachments").exists()
    code, out = verify(bundle, capsys, "--key", public)
    assert code == 0, out
