"""Sign and verify an evidence bundle: manifest + DSSE envelope over an in-toto Statement.

The Statement's subjects are every file of the bundle (sha256), its predicate the verdict,
and the envelope is signed with ed25519 over DSSE's pre-authentication encoding (PAE). A
verifier re-hashes the directory, so a changed, missing or added file fails verification
and is named. Without a configured key an ephemeral one signs and the bundle says
``dev-signed``: it proves integrity, not who signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
ENVELOPE = "attestation.dsse.json"
MANIFEST = "manifest.json"
PUBLIC_KEY = "signing_key.pub.pem"
DEV_SIGNED = "dev-signed"
RELEASE_SIGNED = "release-signed"


class SigningKeyError(ValueError):
    """The configured signing key cannot be loaded."""


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    mode: str  # DEV_SIGNED or RELEASE_SIGNED
    source: str  # where it came from, for the report (never the key itself)

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.private.public_key())


def fingerprint(public: Ed25519PublicKey) -> str:
    """sha256 of the raw public key: the keyid convention, never a security decision."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def load_signing_key(spec: str | None, rootdir: Path) -> SigningKey:
    """``None`` -> ephemeral dev key; ``env:VAR`` -> PEM in VAR; otherwise a PEM file path."""
    if not spec:
        return SigningKey(Ed25519PrivateKey.generate(), DEV_SIGNED, "ephemeral")
    if spec.startswith("env:"):
        var = spec[4:]
        pem = os.environ.get(var)
        if not pem:
            raise SigningKeyError(
                f"--spark-signing-key {spec}: environment variable {var} is not set"
            )
        data, source = pem.encode(), f"environment variable {var}"
    else:
        path = Path(spec).expanduser()
        path = path if path.is_absolute() else rootdir / path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SigningKeyError(f"--spark-signing-key {spec}: {exc.strerror}") from None
        source = f"file {spec}"
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(
            f"--spark-signing-key {spec}: not a PEM private key ({exc})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"--spark-signing-key {spec}: an ed25519 key is required")
    return SigningKey(key, RELEASE_SIGNED, source)


def generate_key_pem() -> tuple[bytes, bytes]:
    """A new (private PEM, public PEM) pair for ``spark-gate keygen``."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(bundle: Path) -> list[str]:
    """Every file of the bundle except the envelope, as sorted POSIX relative paths."""
    return sorted(
        p.relative_to(bundle).as_posix()
        for p in bundle.rglob("*")
        if p.is_file() and p.name != ENVELOPE and not p.name.startswith(".tmp-")
    )


def sign_bundle(bundle: Path, key: SigningKey, predicate: Mapping[str, object]) -> Path:
    """Write the public key, manifest.json and, last and atomically, the DSSE envelope."""
    _atomic_write(bundle / PUBLIC_KEY, key.public_pem)
    files = [f for f in bundle_files(bundle) if f != MANIFEST]
    manifest = {
        "files": {f: sha256_file(bundle / f) for f in files},
        "signing": {"mode": key.mode, "key_fingerprint": key.fingerprint},
    }
    _atomic_write(bundle / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": f, "digest": {"sha256": sha256_file(bundle / f)}} for f in bundle_files(bundle)
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": dict(predicate),
    }
    body = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    envelope = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [
            {
                "keyid": key.fingerprint,
                "sig": base64.b64encode(key.private.sign(pae(PAYLOAD_TYPE, body))).decode(),
            }
        ],
    }
    path = bundle / ENVELOPE
    _atomic_write(path, json.dumps(envelope, indent=2).encode())
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class Verification:
    bundle: Path
    problems: list[str] = field(default_factory=list)
    key_fingerprint: str = ""
    signing_mode: str = ""
    key_pinned: bool = False
    statement: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _b64decode(text: str) -> bytes:
    # DSSE verifiers must accept both the standard and the URL-safe alphabet.
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error:
        return base64.urlsafe_b64decode(padded)


def verify_bundle(bundle: Path, public_pem: bytes | None = None) -> Verification:
    """Check the envelope's signature and every file's digest; collect every problem found."""
    result = Verification(bundle)
    env_path = bundle / ENVELOPE
    try:
        envelope = json.loads(env_path.read_text(encoding="utf-8"))
        body = _b64decode(envelope["payload"])
        payload_type = envelope["payloadType"]
        signatures = envelope["signatures"]
        statement = json.loads(body)
    except FileNotFoundError:
        result.problems.append(f"{ENVELOPE}: missing (the bundle was never signed)")
        return result
    except (ValueError, KeyError, TypeError) as exc:
        result.problems.append(f"{ENVELOPE}: unreadable envelope ({exc.__class__.__name__})")
        return result
    if payload_type != PAYLOAD_TYPE:
        result.problems.append(f"{ENVELOPE}: payloadType {payload_type!r} is not {PAYLOAD_TYPE}")
        return result
    result.statement = statement
    pinned = public_pem is not None
    if public_pem is None:
        try:
            public_pem = (bundle / PUBLIC_KEY).read_bytes()
        except OSError:
            result.problems.append(f"{PUBLIC_KEY}: missing, and no --key was given")
            return result
    try:
        public = serialization.load_pem_public_key(public_pem)
    except ValueError:
        where = "--key" if pinned else PUBLIC_KEY
        result.problems.append(f"{where}: not a PEM public key")
        return result
    if not isinstance(public, Ed25519PublicKey):
        result.problems.append("the verification key is not an ed25519 key")
        return result
    result.key_fingerprint = fingerprint(public)
    result.key_pinned = pinned
    if not any(_signature_ok(public, s, payload_type, body) for s in signatures):
        who = "the given --key" if pinned else f"the bundle's {PUBLIC_KEY}"
        result.problems.append(f"{ENVELOPE}: signature does not verify with {who}")
        return result
    _check_subjects(bundle, statement, result)
    predicate = statement.get("predicate", {})
    if isinstance(predicate, dict):
        result.signing_mode = str(predicate.get("signing", {}).get("mode", ""))
    return result


def _signature_ok(
    public: Ed25519PublicKey, signature: object, payload_type: str, body: bytes
) -> bool:
    try:
        sig = _b64decode(signature["sig"])  # type: ignore[index]
        public.verify(sig, pae(payload_type, body))
    except (InvalidSignature, KeyError, TypeError, ValueError, binascii.Error):
        return False
    return True


def _check_subjects(bundle: Path, statement: Mapping[str, object], result: Verification) -> None:
    subjects = statement.get("subject", [])
    expected: dict[str, str] = {}
    if isinstance(subjects, list):
        for s in subjects:
            expected[str(s["name"])] = str(s["digest"]["sha256"])
    present = set(bundle_files(bundle))
    for name, digest in sorted(expected.items()):
        path = bundle / name
        if name not in present:
            result.problems.append(f"{name}: missing")
        elif sha256_file(path) != digest:
            result.problems.append(f"{name}: changed since it was signed")
    for name in sorted(present - set(expected)):
        result.problems.append(f"{name}: added after signing")
