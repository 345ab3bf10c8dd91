"""The sandbox's own release, as a build pipeline hands it over: a reproducible sdist of this
project, the CycloneDX 1.6 SBOM of the environment it releases, and SLSA v1 provenance.

The sandbox exposes the three files as ``artifact_path``, ``sbom_path`` and ``provenance_path``,
exactly as a staging target file names its pipeline's outputs, so the B9 check reads them the
same way for both. Generating the SBOM takes seconds, so a build is cached in the sandbox home
under a key of everything it is built from: the source files, the released environment's
distributions, the release defects, the commit and the builder. A warm start hashes and copies
the cached files into its run dir, which then owns them for as long as the sandbox runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import site
import sys
import tomllib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from spark_sandbox.defects import Blueprint
from spark_sandbox.home import sandbox_home

REPO_DIR = Path(__file__).resolve().parent.parent
RELEASES_DIR = "releases"
# Builds kept in the cache (the least recently used go): one per source change is plenty.
KEEP_RELEASES = 8
# A draft this old was left by a build that was killed.
STALE_DRAFT_SECONDS = 3600.0
SBOM_TIMEOUT_SECONDS = 120.0
ARTEFACT_DIR = "dist"
SBOM_FILE = "sbom.cdx.json"
PROVENANCE_FILE = "provenance.intoto.json"


@dataclass(frozen=True)
class Release:
    artifact: Path
    sbom: Path
    provenance: Path
    reused: bool

    @property
    def summary(self) -> str:
        return f"{self.artifact.name}, {self.sbom.name}, {self.provenance.name}"


def packages(root: Path) -> list[str]:
    """Top-level packages the project ships (``[tool.setuptools.packages.find] include``)."""
    with (root / "pyproject.toml").open("rb") as handle:
        found = tomllib.load(handle).get("tool", {}).get("setuptools", {}).get("packages", {})
    include = found.get("find", {}).get("include", [])
    return [p.rstrip("*") for p in include if (root / p.rstrip("*")).is_dir()]


def environment_fingerprint() -> str:
    """The running environment's distributions (their metadata), which its SBOM lists."""
    digest = hashlib.sha256()
    for site_dir in sorted(site.getsitepackages()):
        for entry in sorted(Path(site_dir).glob("*.*-info")):
            digest.update(entry.name.encode())
            with contextlib.suppress(OSError):
                digest.update((entry / "METADATA").read_bytes())
    return digest.hexdigest()


def cache_key(root: Path, shipped: list[str], changes: list[str], commit: str | None) -> str:
    """What a release is built from; the same key means the same sdist, SBOM and provenance."""
    from importlib.metadata import version

    from pytest_spark.probes import supply_chain

    digest = hashlib.sha256()
    for part in (
        sys.version,
        version("cyclonedx-bom"),
        str(supply_chain.source_date_epoch()),
        commit or "",
        environment_fingerprint(),
        *changes,
    ):
        digest.update(part.encode() + b"\0")
    for relative in supply_chain.source_files(root, shipped):
        digest.update(str(relative).encode() + b"\0")
        digest.update(hashlib.sha256((root / relative).read_bytes()).digest())
    return digest.hexdigest()[:32]


def sandbox_release(blueprint: Blueprint, run_dir: Path, root: Path = REPO_DIR) -> Release:
    """The release of ``root`` as ``blueprint`` ships it, from the cache or built now."""
    from pytest_spark.probes import supply_chain

    shipped = packages(root)
    commit = supply_chain.git_commit(root)
    changes = [name for name, _ in blueprint.release_changes]
    cache = sandbox_home() / RELEASES_DIR
    cache.mkdir(exist_ok=True)
    final = cache / cache_key(root, shipped, changes, commit)
    if (final / PROVENANCE_FILE).is_file():
        os.utime(final)  # most recently used: pruning keeps it
        return _copied(final, run_dir, reused=True)
    environment = Path(sys.prefix)
    for _, change in blueprint.release_changes:
        environment = change(environment, run_dir)
    # Built aside and renamed: a reader never sees half a release, and two starts that
    # build the same key at once both end up with one whole copy.
    draft = cache / f".draft-{final.name}-{os.getpid()}"
    shutil.rmtree(draft, ignore_errors=True)
    try:
        build(root, shipped, environment, commit, draft)
        try:
            draft.rename(final)
        except OSError:
            if not (final / PROVENANCE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(draft, ignore_errors=True)
    prune(cache, keep=final)
    return _copied(final, run_dir, reused=False)


def build(root: Path, shipped: list[str], environment: Path, commit: str | None, out: Path) -> None:
    """Build the sdist, generate the SBOM of ``environment`` and write the provenance."""
    from pytest_spark.probes import supply_chain

    started = datetime.now(UTC)
    pyproject = root / "pyproject.toml"
    sdist = supply_chain.build_sdist(root, shipped, out / ARTEFACT_DIR)
    supply_chain.generate_sbom(environment, pyproject, out / SBOM_FILE, SBOM_TIMEOUT_SECONDS)
    project = supply_chain.project_metadata(pyproject)
    statement = supply_chain.make_provenance(
        supply_chain.artefact_digests([sdist]),
        build_type=supply_chain.SDIST_BUILD_TYPE,
        builder_id=supply_chain.SANDBOX_BUILDER_ID,
        external_parameters={
            "project": project["name"],
            "version": project["version"],
            "packages": shipped,
            "sourceDateEpoch": supply_chain.source_date_epoch(),
        },
        resolved_dependencies=[{"uri": "git+file:.", "digest": {"gitCommit": commit}}]
        if commit
        else [],
        invocation_id=str(uuid.uuid4()),
        started=started,
        finished=datetime.now(UTC),
    )
    (out / PROVENANCE_FILE).write_text(json.dumps(statement, indent=2) + "\n")


def _copied(build_dir: Path, run_dir: Path, reused: bool) -> Release:
    """The release copied into the run dir: a later pruning of the cache cannot take the files
    from under a sandbox that is still running."""
    release = run_dir / "release"
    shutil.copytree(build_dir, release)
    [artifact] = sorted((release / ARTEFACT_DIR).glob("*.tar.gz"))
    return Release(artifact, release / SBOM_FILE, release / PROVENANCE_FILE, reused)


def prune(cache: Path, keep: Path) -> None:
    """Remove all but the ``KEEP_RELEASES`` most recently used builds (never ``keep``), and
    the drafts of builds that were killed."""
    now = datetime.now(UTC).timestamp()
    for draft in cache.glob(".draft-*"):
        with contextlib.suppress(OSError):
            if now - draft.stat().st_mtime > STALE_DRAFT_SECONDS:
                shutil.rmtree(draft, ignore_errors=True)
    builds = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    builds.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[KEEP_RELEASES:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
