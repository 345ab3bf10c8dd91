"""A byte-for-byte reproducible source distribution of the project, and its source commit."""

from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import tarfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_spark.probes.supply_chain.files import SupplyChainError

# A fixed timestamp (1980-01-01, the zip epoch wheels use) unless SOURCE_DATE_EPOCH is set,
# so the same sources always give the same bytes and the same digest.
DEFAULT_SOURCE_DATE_EPOCH = 315_532_800


def project_metadata(pyproject: Path) -> Mapping[str, Any]:
    with pyproject.open("rb") as handle:
        project = tomllib.load(handle).get("project", {})
    if not project.get("name") or not project.get("version"):
        raise SupplyChainError(f"{pyproject}: [project] needs a static name and version")
    return dict(project)


def sdist_name(project: Mapping[str, Any]) -> str:
    """PEP 625: ``{normalized name}-{version}.tar.gz`` with ``_`` for runs of ``-_.``."""
    return f"{re.sub(r'[-_.]+', '_', str(project['name'])).lower()}-{project['version']}"


def pkg_info(project: Mapping[str, Any]) -> str:
    lines = [
        "Metadata-Version: 2.4",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
    ]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    if isinstance(project.get("license"), str):
        lines.append(f"License-Expression: {project['license']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def source_files(root: Path, packages: Sequence[str]) -> list[Path]:
    """The files an sdist of ``packages`` carries, relative to ``root``, sorted: the build
    and readme files plus each package's tree without caches or compiled files."""
    chosen = [Path(n) for n in ("pyproject.toml", "README.md") if (root / n).is_file()]
    for package in packages:
        for path in sorted((root / package).rglob("*")):
            relative = path.relative_to(root)
            if (
                path.is_file()
                and "__pycache__" not in relative.parts
                and not any(p.startswith(".") for p in relative.parts)
                and path.suffix not in (".pyc", ".pyo")
            ):
                chosen.append(relative)
    return sorted(set(chosen))


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else DEFAULT_SOURCE_DATE_EPOCH


def build_sdist(root: Path, packages: Sequence[str], out_dir: Path) -> Path:
    """A byte-for-byte reproducible sdist of the project at ``root``: sorted entries, one
    timestamp, owner root, normalised modes, gzip without a name or time."""
    project = project_metadata(root / "pyproject.toml")
    stem = sdist_name(project)
    when = source_date_epoch()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{stem}.tar.gz"
    entries = [(Path("PKG-INFO"), pkg_info(project).encode())]
    entries += [(p, (root / p).read_bytes()) for p in source_files(root, packages)]
    with (
        target.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for relative, data in sorted(entries, key=lambda e: str(e[0])):
            info = tarfile.TarInfo(f"{stem}/{relative.as_posix()}")
            info.size, info.mtime, info.mode = len(data), when, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    return target


def git_commit(root: Path) -> str | None:
    """The source's commit (read-only ``git rev-parse``), or None outside a checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None
