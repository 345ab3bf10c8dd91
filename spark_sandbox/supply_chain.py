"""The sandbox's release environment: the Python environment its SBOM describes.

A healthy sandbox releases the environment it runs in (this interpreter's ``sys.prefix``). The
``denied_license`` defect (layer ``supply_chain``) releases an overlay instead
(:func:`with_denied_licence`): a virtual environment that sees every package of the running
one plus a vendored distribution whose licence the release policy denies, as a dependency
pulled in by a careless upgrade would.
"""

from __future__ import annotations

import site
import sys
import venv
from collections.abc import Iterable
from pathlib import Path

OVERLAY_DIR = "release-env"
# A made-up distribution: no real package's licence is misrepresented.
DENIED_DISTRIBUTION = "spark-vendored-fixcodec"
DENIED_VERSION = "2.1.0"
DENIED_LICENSE = "AGPL-3.0-only"


def release_environment(defects: Iterable[str], run_dir: Path) -> Path:
    """The environment to generate the sandbox's SBOM from (a venv directory), as the named
    defects leave it."""
    from spark_sandbox.defects import Blueprint

    environment = Path(sys.prefix)
    for _, change in Blueprint.of(defects).release_changes:
        environment = change(environment, run_dir)
    return environment


def with_denied_licence(environment: Path, run_dir: Path) -> Path:
    """The ``denied_license`` defect's release: an overlay in ``run_dir`` that adds one
    distribution under a denied licence. It sees the running environment's packages, which is
    the healthy ``environment`` this defect is applied to."""
    return overlay_with_denied_licence(run_dir / OVERLAY_DIR)


def overlay_with_denied_licence(target: Path) -> Path:
    """A venv (no pip, ~50 ms) whose path is the running environment's site-packages plus one
    distribution licensed ``AGPL-3.0-only``."""
    venv.EnvBuilder(symlinks=True, with_pip=False, clear=True).create(target)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    own_site = target / "lib" / version / "site-packages"  # where venv puts it on POSIX
    running = [p for p in site.getsitepackages() if Path(p).is_dir()]
    # A .pth line is a path appended to sys.path: the overlay sees every running package.
    (own_site / "spark-release-base.pth").write_text("".join(f"{p}\n" for p in running))
    dist_info = own_site / f"{DENIED_DISTRIBUTION.replace('-', '_')}-{DENIED_VERSION}.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.4\n"
        f"Name: {DENIED_DISTRIBUTION}\n"
        f"Version: {DENIED_VERSION}\n"
        "Summary: FIX message codec vendored into the order gateway\n"
        f"License-Expression: {DENIED_LICENSE}\n"
    )
    (dist_info / "INSTALLER").write_text("sandbox\n")
    return target
