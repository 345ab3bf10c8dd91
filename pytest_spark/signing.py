"""Sign an evidence bundle: manifest + DSSE envelope over an in-toto Statement (``verify.py``
checks it).

The Statement's subjects are every file of the bundle (sha256), its predicate the verdict and
the files that decided it (checklist, waivers, target, ``ops/``) by digest, and the envelope is
signed once with ed25519 over DSSE's pre-authentication encoding (PAE). A verifier walks the
directory without following symlinks, so a changed, missing or added file, a stray directory,
a symlink or a special file fails verification and is named. Without a configured key an
ephemeral one signs and the bundle says ``dev-signed``: it proves integrity, not who signed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
ENVELOPE = "attestation.dsse.json"
MANIFEST = "manifest.json"
PUBLIC_KEY = "signing_key.pub.pem"
VERDICT = "verdict.json"
DEV_SIGNED = "dev-signed"
RELEASE_SIGNED = "release-signed"
# Bundle.write_bytes and _atomic_write write here first, then rename: a leftover is a crash.
TEMP_PREFIX = ".tmp-"
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# The fields of the signed verdict a reader relies on; verdict.json must agree on each.
SIGNED_FACTS = ("release", "gate", "verdict", "run_id")


class SigningKeyError(ValueError):
    """The configured signing key cannot be loaded."""


class UnsignableBundle(ValueError):
    """The bundle holds something a verifier would refuse; signing over it would hide that."""


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


def _open_regular(path: Path) -> int:
    # O_NOFOLLOW: a symlink swapped in for a signed file is refused, not read through.
    # O_NONBLOCK: a fifo swapped in does not hang the verifier; fstat then refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def sha256_file(path: Path) -> str:
    """sha256 of a regular file; a symlink or special file raises OSError."""
    digest = hashlib.sha256()
    with os.fdopen(_open_regular(path), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_regular(path: Path) -> bytes:
    with os.fdopen(_open_regular(path), "rb") as fh:
        return fh.read()


def subject_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a subject: it must be a plain relative POSIX path in the bundle."""
    if not isinstance(name, str) or not name:
        return "is not a file name"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "has an empty, '.' or '..' component"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "contains a control character"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if name == ENVELOPE:
        return "is the envelope itself, which cannot sign itself"
    return None


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (fifo)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISCHR(mode):
        return "a character device"
    return "a special file"


@dataclass
class _Tree:
    """A bundle as found on disk: signable files, directories, and what may not be there."""

    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)


def scan_tree(root: Path) -> _Tree:
    """Walk ``root`` with lstat only: symlinks are reported, never followed."""
    tree = _Tree()
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(root / folder if folder else root) as entries:
            for entry in entries:
                rel = f"{folder}/{entry.name}" if folder else entry.name
                mode = entry.stat(follow_symlinks=False).st_mode
                unsafe = subject_name_problem(rel) if rel != ENVELOPE else None
                if stat.S_ISLNK(mode):
                    tree.strays.append(
                        f"{rel}: a symlink (to {os.readlink(entry.path)}); a bundle holds only "
                        "regular files and directories, and a link can point anywhere after "
                        "signing"
                    )
                elif stat.S_ISDIR(mode):
                    tree.dirs.append(rel)
                    pending.append(rel)
                elif not stat.S_ISREG(mode):
                    tree.strays.append(
                        f"{rel}: {_kind(mode)}; a bundle holds only regular files and directories"
                    )
                elif rel == ENVELOPE:
                    continue
                elif entry.name.startswith(TEMP_PREFIX):
                    tree.strays.append(
                        f"{rel}: a temporary file left by an interrupted write; it is not "
                        "signed evidence"
                    )
                elif entry.name == ENVELOPE:
                    tree.strays.append(
                        f"{rel}: a second {ENVELOPE} inside the bundle; only the top-level "
                        "envelope signs a bundle, and a nested one could pass a sub-folder off "
                        "as a bundle of its own"
                    )
                elif unsafe is not None:
                    tree.strays.append(f"{rel!r}: a file name that {unsafe}")
                else:
                    tree.files.append(rel)
    tree.files.sort()
    tree.dirs.sort()
    tree.strays.sort()
    return tree


def bundle_files(bundle: Path) -> list[str]:
    """Every signable file of the bundle except the envelope, as sorted POSIX relative paths."""
    return scan_tree(bundle).files


def _prune_empty_dirs(bundle: Path) -> None:
    # An empty folder carries no evidence but would fail verification (no signed file under
    # it), e.g. an attachments folder a test created and never wrote to.
    for folder, _, _ in os.walk(bundle, topdown=False):
        if Path(folder) != bundle:
            # Not empty: its files are signed, or refused by the scan that follows.
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def sign_bundle(bundle: Path, key: SigningKey, predicate: Mapping[str, object]) -> Path:
    """Write the public key, manifest.json and, last and atomically, the DSSE envelope.

    Refuses (UnsignableBundle) when the bundle holds what a verifier would refuse: signing
    around a symlink or a leftover would hand out a bundle that can never verify.
    """
    _prune_empty_dirs(bundle)
    strays = scan_tree(bundle).strays
    if strays:
        raise UnsignableBundle(
            f"cannot sign the evidence bundle {bundle}: it holds what `spark-gate verify` "
            "refuses:\n  - "
            + "\n  - ".join(strays)
            + "\nfind what wrote these into the bundle (a suite, a plugin, an interrupted "
            "write), remove them and run the gate again; the bundle is left unsigned"
        )
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
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
