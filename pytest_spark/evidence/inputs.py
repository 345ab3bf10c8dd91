"""The files that decided a run, copied into the bundle and bound by digest in the statement.

A verdict is only as good as the checklist, waivers, target and thresholds it was decided
with: naming the checklist is not enough, since a weakened copy outside the repository has
the same name. Each input becomes an in-toto ResourceDescriptor (``name``, ``uri``,
``digest``, ``annotations``) in the test-result predicate's ``configuration``, and its text
is copied under ``inputs/`` so the bundle shows what the digest stands for.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from pytest_spark.config import SANDBOX, SparkConfig
from pytest_spark.evidence.bundle import Bundle

INPUTS_DIR = "inputs"
OPS_DIR = "ops"
# Never read by a suite: the leftovers of interrupted writes and Python's byte-code caches.
SKIPPED_NAMES = ("__pycache__",)
TEMP_PREFIX = ".tmp-"


def record_inputs(
    bundle: Bundle, spark: SparkConfig, target_notes: Sequence[str] = ()
) -> list[dict[str, object]]:
    """Copy this run's inputs into ``bundle`` and return their ResourceDescriptors.

    The digest is of the file as it is on disk; the copy goes through the bundle's redactor
    like every other bundle file, and says ``redacted`` when that changed it. The target's
    descriptor carries ``target_notes`` (the target session's), which say what was measured:
    for a provider's target such as the sandbox, which deployment, started or reused, with
    which seeded defects.
    """
    rootdir = Path(os.path.abspath(spark.rootdir))
    descriptors: list[dict[str, object]] = []
    copied: set[str] = set()
    descriptors.append(_describe(bundle, "checklist", spark.checklist_path, rootdir, copied))
    waivers = Path(os.path.abspath(spark.waivers_path))
    if waivers.exists():
        descriptors.append(_describe(bundle, "waivers", waivers, rootdir, copied))
    else:
        descriptors.append(
            {
                "name": "waivers",
                "uri": _uri(waivers, rootdir),
                "annotations": {"present": False, "note": "no waivers file: nothing was waived"},
            }
        )
    target = spark.target
    if target.path is None:
        described: dict[str, object] = {
            "name": "target",
            "uri": SANDBOX,
            "annotations": {"kind": target.kind, "target": target.name},
        }
    else:
        described = _describe(bundle, "target", target.path, rootdir, copied)
    if target_notes:
        annotations = described.setdefault("annotations", {})
        assert isinstance(annotations, dict)
        annotations["notes"] = [bundle.redactor.text(note) for note in target_notes]
    descriptors.append(described)
    evidence_dir = Path(os.path.abspath(spark.evidence_dir))
    for path in _ops_files(rootdir / OPS_DIR, evidence_dir):
        descriptors.append(_describe(bundle, "ops", path, rootdir, copied))
    return descriptors


def fingerprint(spark: SparkConfig) -> dict[str, str]:
    """uri -> sha256 of every input file as it is now ("" when unreadable).

    Taken when the run starts and again when it is decided: a checklist, waiver or threshold
    file edited while the tests ran would otherwise be bound as if it had decided the run.
    """
    rootdir = Path(os.path.abspath(spark.rootdir))
    paths = [spark.checklist_path, spark.waivers_path]
    if spark.target.path is not None:
        paths.append(spark.target.path)
    paths += _ops_files(rootdir / OPS_DIR, Path(os.path.abspath(spark.evidence_dir)))
    digests = {}
    for path in paths:
        try:
            digests[_uri(path, rootdir)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            digests[_uri(path, rootdir)] = ""
    return digests


def _ops_files(ops: Path, evidence_dir: Path) -> Iterator[Path]:
    # Directory symlinks are not followed (os.walk's default): the tree is the checkout's own.
    for folder, dirs, files in os.walk(ops):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            # A bundle under ops/ would otherwise copy itself into itself, run after run.
            if d not in SKIPPED_NAMES and here / d != evidence_dir
        )
        for name in sorted(files):
            if not name.startswith(TEMP_PREFIX):
                yield here / name


def _uri(path: Path, rootdir: Path) -> str:
    """Relative to the rootdir when inside it (stable across checkouts), else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(rootdir).as_posix()
    except ValueError:
        return absolute.as_posix()


def _bundle_path(role: str, path: Path, rootdir: Path) -> str:
    absolute = Path(os.path.abspath(path))
    try:
        inside = absolute.relative_to(rootdir).as_posix()
    except ValueError:
        # Outside the checkout: the role keeps a checklist and a target of the same name apart.
        return f"{INPUTS_DIR}/external/{role}/{absolute.name}"
    return f"{INPUTS_DIR}/{inside}"


def _describe(
    bundle: Bundle, role: str, path: Path, rootdir: Path, copied: set[str]
) -> dict[str, object]:
    uri = _uri(path, rootdir)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise OSError("not a regular file")
        data = path.read_bytes()
    except OSError as exc:
        # Recorded without a digest: verify refuses a bundle whose checklist is not bound.
        reason = exc.strerror or str(exc)
        return {"name": role, "uri": uri, "annotations": {"present": False, "note": reason}}
    descriptor: dict[str, object] = {
        "name": role,
        "uri": uri,
        "digest": {"sha256": hashlib.sha256(data).hexdigest()},
    }
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Not copied: binary content cannot go through the redactor, and the digest still
        # binds it.
        descriptor["annotations"] = {"copied": False, "note": "not UTF-8 text"}
        return descriptor
    copy = _bundle_path(role, path, rootdir)
    redacted = bundle.redactor.text(text)
    if copy not in copied:
        bundle.write_bytes(copy, redacted.encode("utf-8"))
        copied.add(copy)
    annotations: dict[str, object] = {"bundle_path": copy}
    if redacted != text:
        annotations["redacted"] = True
    descriptor["annotations"] = annotations
    return descriptor
