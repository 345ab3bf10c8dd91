"""Verify an evidence bundle offline: the DSSE signature, every file against the signed
subjects, and the signed facts (release, gate, verdict, run id, the inputs' digests).

The walk never follows symlinks, so a changed, missing or added file, a stray directory, a
symlink or a special file fails verification and is named; nothing unsigned is ever reported
as a fact.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pytest_spark.gate import GO, NO_GO
from pytest_spark.signing import (
    DEV_SIGNED,
    ENVELOPE,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    PUBLIC_KEY,
    RELEASE_SIGNED,
    SHA256_HEX,
    SIGNED_FACTS,
    STATEMENT_TYPE,
    VERDICT,
    fingerprint,
    pae,
    read_regular,
    scan_tree,
    sha256_file,
    subject_name_problem,
)


@dataclass
class Verification:
    bundle: Path
    problems: list[str] = field(default_factory=list)
    key_fingerprint: str = ""
    signing_mode: str = ""
    key_pinned: bool = False
    # Set only once the signature verified: nothing unsigned is ever reported as a fact.
    statement: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def predicate(self) -> dict[str, object]:
        predicate = self.statement.get("predicate")
        return predicate if isinstance(predicate, dict) else {}

    @property
    def spark(self) -> dict[str, object]:
        spark = self.predicate.get("spark")
        return spark if isinstance(spark, dict) else {}

    def fact(self, name: str) -> str:
        """A signed fact (release, gate, verdict, run_id, target) or '?' when absent."""
        value = self.spark.get(name)
        return value if isinstance(value, str) and value else "?"

    @property
    def checklist(self) -> dict[str, object]:
        """The signed checklist descriptor (uri, digest), or {} when there is not exactly one."""
        found = [d for d in _descriptors(self.predicate) if d.get("name") == "checklist"]
        return found[0] if len(found) == 1 else {}

    @property
    def checklist_sha256(self) -> str:
        digest = self.checklist.get("digest")
        value = digest.get("sha256") if isinstance(digest, dict) else None
        return value if isinstance(value, str) else ""

    def go_refusals(self) -> list[str]:
        """Why this bundle is not a release-signed GO by a pinned key ([] when it is)."""
        reasons = list(self.problems)
        if self.fact("verdict") != GO:
            reasons.append(f"the signed verdict is {self.fact('verdict')}, not {GO}")
        if not self.key_pinned:
            reasons.append(
                "the signer is not pinned: without --key anyone could have signed this bundle; "
                "pass --key with the release public key"
            )
        if self.signing_mode != RELEASE_SIGNED:
            reasons.append(
                f"the bundle is {self.signing_mode or 'of unknown signing mode'}, not "
                f"{RELEASE_SIGNED}: a throw-away key proves integrity, not that the release "
                "key signed it; run the gate with --spark-signing-key"
            )
        return reasons


def _descriptors(predicate: Mapping[str, object]) -> list[dict[str, object]]:
    configuration = predicate.get("configuration")
    if not isinstance(configuration, list):
        return []
    return [d for d in configuration if isinstance(d, dict)]


def _b64decode(text: str) -> bytes:
    # DSSE verifiers must accept both the standard and the URL-safe alphabet.
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error:
        return base64.urlsafe_b64decode(padded)


def verify_bundle(
    bundle: Path,
    public_pem: bytes | None = None,
    *,
    release: str | None = None,
    checklist_sha256: str | None = None,
) -> Verification:
    """Check the envelope, every file and the signed facts; collect every problem found.

    ``release`` and ``checklist_sha256``, when given, are what the caller expects: the bundle
    must be signed for that release and decided with a checklist of that digest.
    """
    result = Verification(bundle)
    root = bundle.resolve()
    statement = _signed_statement(root, public_pem, result)
    if statement is None:
        return result
    subjects = _subjects(statement, result)
    _check_tree(root, subjects, result)
    if result.spark.get("gate") == ROLLBACK_RECORD:
        _check_rollback_record(root, result)
    else:
        _check_predicate(root, subjects, result)
    if release is not None and result.fact("release") != release:
        result.problems.append(
            f"signed for release {result.fact('release')}, not {release} (--release): this "
            "bundle is evidence for another release"
        )
    if checklist_sha256 is not None and result.checklist_sha256 != checklist_sha256:
        uri = result.checklist.get("uri", "?")
        result.problems.append(
            f"decided with the checklist {uri} (sha256 {result.checklist_sha256 or 'unknown'}), "
            f"not with the --checklist file (sha256 {checklist_sha256}): the gate ran against "
            "another checklist; run it again with the checked-in one"
        )
    return result


def _signed_statement(
    root: Path, public_pem: bytes | None, result: Verification
) -> dict[str, object] | None:
    """The statement once the one signature verifies; None (and a problem) otherwise."""
    try:
        envelope = json.loads(read_regular(root / ENVELOPE).decode("utf-8"))
    except FileNotFoundError:
        result.problems.append(f"{ENVELOPE}: missing (the bundle was never signed)")
        return None
    except OSError as exc:
        result.problems.append(f"{ENVELOPE}: cannot be read as a regular file ({exc})")
        return None
    except ValueError as exc:
        result.problems.append(f"{ENVELOPE}: unreadable envelope ({exc.__class__.__name__})")
        return None
    if not isinstance(envelope, dict):
        result.problems.append(f"{ENVELOPE}: not a DSSE envelope (a JSON object is expected)")
        return None
    payload_type = envelope.get("payloadType")
    if payload_type != PAYLOAD_TYPE:
        result.problems.append(f"{ENVELOPE}: payloadType {payload_type!r} is not {PAYLOAD_TYPE}")
        return None
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1:
        count = len(signatures) if isinstance(signatures, list) else "no list of"
        result.problems.append(
            f"{ENVELOPE}: carries {count} signatures; a spark bundle is signed exactly once, "
            "and any other signature is a claim nobody checked"
        )
        return None
    try:
        body = _b64decode(str(envelope["payload"]))
        statement = json.loads(body)
    except (KeyError, ValueError) as exc:
        result.problems.append(f"{ENVELOPE}: unreadable payload ({exc.__class__.__name__})")
        return None
    pinned = public_pem is not None
    if public_pem is None:
        try:
            public_pem = read_regular(root / PUBLIC_KEY)
        except OSError:
            result.problems.append(
                f"{PUBLIC_KEY}: missing or not a regular file, and no --key was given"
            )
            return None
    try:
        public = serialization.load_pem_public_key(public_pem)
    except ValueError:
        where = "--key" if pinned else PUBLIC_KEY
        result.problems.append(f"{where}: not a PEM public key")
        return None
    if not isinstance(public, Ed25519PublicKey):
        where = "--key" if pinned else PUBLIC_KEY
        result.problems.append(f"{where}: not an ed25519 public key")
        return None
    result.key_fingerprint = fingerprint(public)
    result.key_pinned = pinned
    if not _signature_ok(public, signatures[0], PAYLOAD_TYPE, body):
        who = "the given --key" if pinned else f"the bundle's {PUBLIC_KEY}"
        result.problems.append(f"{ENVELOPE}: signature does not verify with {who}")
        return None
    if not isinstance(statement, dict):
        result.problems.append(f"{ENVELOPE}: the payload is not an in-toto Statement")
        return None
    result.statement = statement
    for name, expected in (("_type", STATEMENT_TYPE), ("predicateType", PREDICATE_TYPE)):
        if statement.get(name) != expected:
            result.problems.append(
                f"{ENVELOPE}: the statement's {name} is {statement.get(name)!r}, not {expected}"
            )
    signing = result.predicate.get("signing")
    result.signing_mode = str(signing.get("mode", "")) if isinstance(signing, dict) else ""
    return statement


def _signature_ok(
    public: Ed25519PublicKey, signature: object, payload_type: str, body: bytes
) -> bool:
    try:
        sig = _b64decode(signature["sig"])  # type: ignore[index]
        public.verify(sig, pae(payload_type, body))
    except (InvalidSignature, KeyError, TypeError, ValueError, binascii.Error):
        return False
    return True


def _subjects(statement: Mapping[str, object], result: Verification) -> dict[str, str]:
    """name -> sha256 of every well-formed subject; every malformed one is a problem."""
    raw = statement.get("subject")
    if not isinstance(raw, list) or not raw:
        result.problems.append(f"{ENVELOPE}: the statement names no subjects")
        return {}
    subjects: dict[str, str] = {}
    for n, subject in enumerate(raw):
        name = subject.get("name") if isinstance(subject, dict) else None
        digest = subject.get("digest") if isinstance(subject, dict) else None
        sha256 = digest.get("sha256") if isinstance(digest, dict) else None
        why = subject_name_problem(name)
        if why is not None:
            result.problems.append(f"{ENVELOPE}: subject #{n} {name!r} {why}")
        elif name in subjects:
            result.problems.append(f"{ENVELOPE}: subject {name} is listed twice")
        elif not isinstance(sha256, str) or not SHA256_HEX.match(sha256):
            result.problems.append(f"{ENVELOPE}: subject {name} has no sha256 digest")
        else:
            subjects[str(name)] = sha256
    return subjects


def _check_tree(root: Path, subjects: Mapping[str, str], result: Verification) -> None:
    tree = scan_tree(root)
    result.problems.extend(tree.strays)
    present = set(tree.files)
    for name, digest in sorted(subjects.items()):
        if name not in present:
            result.problems.append(f"{name}: missing")
            continue
        try:
            changed = sha256_file(root / name) != digest
        except OSError as exc:
            result.problems.append(f"{name}: cannot be read ({exc})")
            continue
        if changed:
            result.problems.append(f"{name}: changed since it was signed")
    for name in sorted(present - set(subjects)):
        result.problems.append(f"{name}: added after signing")
    holding = {
        "/".join(parts[:i])
        for parts in (s.split("/") for s in subjects)
        for i in range(1, len(parts))
    }
    for folder in tree.dirs:
        if folder not in holding:
            result.problems.append(
                f"{folder}/: a directory that holds no signed file (added after signing)"
            )


# What `spark-gate rollback` signs in place of a gate's name: a record, not a verdict.
ROLLBACK_RECORD = "rollback"
ROLLBACK_OUTCOMES = ("REHEARSED", "ROLLED BACK", "FAILED")


def _check_rollback_record(root: Path, result: Verification) -> None:
    """A rollback record (``rollback-<UTC>/``): its facts, its signer and its name."""
    outcome = result.fact("verdict")
    if outcome not in ROLLBACK_OUTCOMES:
        result.problems.append(f"{ENVELOPE}: the signed rollback outcome {outcome!r} is unknown")
    if not isinstance(result.predicate.get("rollback"), dict):
        result.problems.append(f"{ENVELOPE}: the signed rollback record is missing")
    _check_signer(result)
    if root.name != result.fact("run_id"):
        result.problems.append(
            f"the record directory is named {root.name} but its signed name is "
            f"{result.fact('run_id')}: keep the directory's name"
        )


def _check_signer(result: Verification) -> None:
    signing = result.predicate.get("signing")
    claimed = signing.get("key_fingerprint") if isinstance(signing, dict) else None
    if result.signing_mode not in (DEV_SIGNED, RELEASE_SIGNED):
        result.problems.append(f"{ENVELOPE}: the statement names no signing mode")
    if claimed != result.key_fingerprint:
        result.problems.append(
            f"{ENVELOPE}: the statement says it was signed by {claimed} but the signature "
            f"verifies with {result.key_fingerprint}"
        )


def _check_predicate(root: Path, subjects: Mapping[str, str], result: Verification) -> None:
    predicate, spark = result.predicate, result.spark
    absent = [f for f in SIGNED_FACTS if result.fact(f) == "?"]
    if absent:
        result.problems.append(
            f"{ENVELOPE}: the signed verdict does not state {', '.join(absent)}; this bundle "
            "was not made by the spark gate (or by an older one): run the gate again"
        )
        return
    verdict = result.fact("verdict")
    if verdict not in (GO, NO_GO):
        result.problems.append(
            f"{ENVELOPE}: the signed verdict {verdict!r} is neither GO nor NO-GO"
        )
    expected_result = "PASSED" if verdict == GO else "FAILED"
    if predicate.get("result") != expected_result:
        result.problems.append(
            f"{ENVELOPE}: the signed result {predicate.get('result')!r} contradicts the signed "
            f"verdict {verdict}"
        )
    _check_signer(result)
    run_id = result.fact("run_id")
    if root.name != run_id:
        result.problems.append(
            f"the bundle directory is named {root.name} but its signed run id is {run_id}: "
            "keep the bundle directory's name; it is the signed run id (a renamed or copied "
            "bundle could stand in for another run)"
        )
    _check_verdict_file(root, subjects, spark, result)
    _check_inputs(subjects, predicate, result)


def _check_verdict_file(
    root: Path, subjects: Mapping[str, str], spark: Mapping[str, object], result: Verification
) -> None:
    if VERDICT not in subjects:
        result.problems.append(f"{VERDICT}: not among the signed files; the verdict must be signed")
        return
    try:
        if sha256_file(root / VERDICT) != subjects[VERDICT]:
            return  # already reported as changed
        written = json.loads(read_regular(root / VERDICT).decode("utf-8"))
    except (OSError, ValueError):
        return  # already reported as missing or unreadable, or changed
    if not isinstance(written, dict):
        result.problems.append(f"{VERDICT}: not a JSON object")
        return
    for name in SIGNED_FACTS:
        if written.get(name) != spark.get(name):
            result.problems.append(
                f"{VERDICT}: says {name} {written.get(name)!r} but the signed statement says "
                f"{spark.get(name)!r}; the bundle's files contradict its signature"
            )


def _check_inputs(
    subjects: Mapping[str, str], predicate: Mapping[str, object], result: Verification
) -> None:
    descriptors = _descriptors(predicate)
    checklists = [d for d in descriptors if d.get("name") == "checklist"]
    if len(checklists) != 1 or not SHA256_HEX.match(result.checklist_sha256):
        result.problems.append(
            f"{ENVELOPE}: the statement does not bind exactly one checklist by sha256 (it "
            f"names {len(checklists)}): nothing shows which checklist decided the verdict; "
            "run the gate again"
        )
    for descriptor in descriptors:
        annotations = descriptor.get("annotations")
        if not isinstance(annotations, dict) or "bundle_path" not in annotations:
            continue
        copy = annotations["bundle_path"]
        role, uri = descriptor.get("name"), descriptor.get("uri")
        digest = descriptor.get("digest")
        sha256 = digest.get("sha256") if isinstance(digest, dict) else None
        if not isinstance(copy, str) or copy not in subjects:
            result.problems.append(
                f"{copy}: named as the copy of the {role} {uri} but not among the signed files"
            )
        elif not annotations.get("redacted") and subjects[copy] != sha256:
            result.problems.append(
                f"{copy}: the copy of the {role} {uri} does not match the digest the statement "
                "gives for it"
            )
