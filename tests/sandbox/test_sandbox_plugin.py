"""The sandbox's pytest plugin: ``--spark-sandbox-defect`` through CLI, env and ini, checked
once at configure, refused for a real deployment, and repeated on the reproduce line. No
sandbox starts here (the probe tests never ask for the target)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHECKLIST = """
[gates]
tiny = "a tiny gate"

[[item]]
id = "G1"
title = "one item"
gates = ["tiny"]
waivable = true
sub_checks = ["offset_ms"]
"""

PROBE = """
import json, pathlib
import pytest

pytestmark = pytest.mark.go_nogo("G1")

def test_dump(pytestconfig, spark_evidence):
    from spark_sandbox.plugin import defects_key

    pathlib.Path("defects.json").write_text(json.dumps(list(pytestconfig.stash[defects_key])))
    spark_evidence.check("offset_ms", 1, limit=100)
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", **{"ops/checklist": CHECKLIST})
    pytester.makepyfile(test_probe=PROBE)
    return pytester


def defects_seen(
    project: pytest.Pytester, *args: str, ini: str = ""
) -> tuple[pytest.RunResult, list[str]]:
    if ini:
        project.makeini(f"[pytest]\nspark_sandbox_defects =\n    {ini}\n")
    result = project.runpytest("-p", "no:cacheprovider", "-m", "tiny", *args)
    assert result.ret == 0, result.stdout.str()
    return result, json.loads((project.path / "defects.json").read_text())


def test_defects_come_from_the_option_then_the_environment_then_the_ini_key(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPARK_SANDBOX_DEFECTS", raising=False)
    assert defects_seen(project)[1] == []
    assert defects_seen(project, ini="no_coep\n    ntp_offset")[1] == ["no_coep", "ntp_offset"]
    monkeypatch.setenv("SPARK_SANDBOX_DEFECTS", "float_money, csp_report_500")
    assert defects_seen(project)[1] == ["float_money", "csp_report_500"]
    cli = ["--spark-sandbox-defect", "no_coep", "--spark-sandbox-defect", "risky_flag_on"]
    result, seen = defects_seen(project, *cli)
    assert seen == ["no_coep", "risky_flag_on"]
    # The reproduce line runs the same deployment again.
    result.stdout.fnmatch_lines(
        ["spark reproduce: *--spark-sandbox-defect no_coep --spark-sandbox-defect risky_flag_on*"]
    )


def test_an_unknown_defect_is_one_usage_error_listing_the_known_ones(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest(
        "-p", "no:cacheprovider", "-m", "tiny", "--spark-sandbox-defect", "no_such_defect"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr.str()
    assert "no_such_defect" in errors[0] and "half_up_rounding, " in errors[0]
    assert not (project.path / "defects.json").exists()  # nothing ran


def test_defects_are_refused_for_a_real_deployment(project: pytest.Pytester) -> None:
    project.makefile(".toml", staging='[target]\nname = "staging"\nkind = "deployment"\n')
    result = project.runpytest(
        "-p", "no:cacheprovider", "--spark-target", "staging.toml",
        "--spark-sandbox-defect", "no_coep",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--spark-sandbox-defect*kind 'deployment'*--spark-target sandbox*"]
    )


def test_loading_the_sandbox_plugin_starts_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, spark_sandbox.plugin\n"
        "heavy = [m for m in ('playwright', 'psycopg', 'pact', 'httpx', 'spark_sandbox.sandbox',"
        " 'spark_sandbox.defects') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
