"""B9's other sub-checks fail through the gate on a target whose build outputs are damaged.

The sandbox builds its own release, where only `denied_license` is seeded. Any target names
its release files the same way (`artifact_path`, `sbom_path`, `provenance_path`): here a target
file points at a real release built for the test, each case damages one file, and the gate
must fail exactly the sub-check that reads it. No sandbox runs.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from gate_runner import REPO, assert_only_broken, gate

from pytest_spark.probes import supply_chain

SUITE = ["suites/blind_spots/test_b9_supply_chain.py"]


def drop_first_purl(release: Path) -> None:
    bom = json.loads((release / "sbom.json").read_text())
    # One whose licence is a plain SPDX id: its licence verdict does not lean on the purl.
    licensed = next(
        c
        for c in bom["components"]
        if any("id" in lic.get("license", {}) for lic in c.get("licenses", []))
    )
    del licensed["purl"]
    (release / "sbom.json").write_text(json.dumps(bom))


def add_unknown_property(release: Path) -> None:
    bom = json.loads((release / "sbom.json").read_text())
    bom["releaseNotesUrl"] = "not a CycloneDX property"
    (release / "sbom.json").write_text(json.dumps(bom))


def rebuild_artefact(release: Path) -> None:
    with (release / "artefact.tar.gz").open("ab") as handle:
        handle.write(b"a byte the provenance never saw")


# damage -> (the sub-check that must fail, and no other)
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "component_without_purl": (drop_first_purl, "test_every_component_has_a_purl"),
    "sbom_not_cyclonedx": (add_unknown_property, "test_sbom_is_schema_valid_cyclonedx"),
    "artefact_changed_after_provenance": (
        rebuild_artefact,
        "test_provenance_subjects_match_the_artefact",
    ),
}


@pytest.fixture(scope="module")
def built_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reproducible sdist of this project, its environment's SBOM and matching provenance."""
    out = tmp_path_factory.mktemp("release")
    sdist = supply_chain.build_sdist(REPO, ["pytest_spark", "spark_sandbox"], out / "dist")
    shutil.copy(sdist, out / "artefact.tar.gz")
    supply_chain.generate_sbom(Path(sys.prefix), REPO / "pyproject.toml", out / "sbom.json", 60)
    statement = supply_chain.make_provenance(
        supply_chain.artefact_digests([out / "artefact.tar.gz"]),
        build_type=supply_chain.SDIST_BUILD_TYPE,
        builder_id=supply_chain.SANDBOX_BUILDER_ID,
        external_parameters={"project": "pytest-spark-gate"},
    )
    (out / "provenance.json").write_text(json.dumps(statement))
    return out


def target_file(release: Path, folder: Path) -> Path:
    path = folder / "staging.toml"
    path.write_text(
        '[target]\nname = "pipeline"\nkind = "deployment"\n[endpoints]\n'
        f'artifact_path = "{release / "artefact.tar.gz"}"\n'
        f'sbom_path = "{release / "sbom.json"}"\n'
        f'provenance_path = "{release / "provenance.json"}"\n'
        f'ops_dir = "{REPO / "ops"}"\n'
    )
    return path


@pytest.mark.parametrize("damage", [None, *DAMAGE], ids=lambda d: d or "intact")
def test_damaged_release_file_breaks_exactly_its_sub_check(
    damage: str | None, built_release: Path, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    shutil.copytree(built_release, release)
    if damage is not None:
        DAMAGE[damage][0](release)
    run = gate(
        SUITE,
        "blind_spot",
        None,
        tmp_path / "run",
        ["--spark-target", str(target_file(release, tmp_path))],
    )
    if damage is None:
        assert run.failed() == set(), f"an intact release failed {run.failed()}:\n{run.tail}"
        assert run.items["B9"]["status"] == "PASSED", f"B9: {run.items['B9']}\n{run.tail}"
        return
    assert_only_broken(run, damage, "B9", {DAMAGE[damage][1]}, ["B9"])
