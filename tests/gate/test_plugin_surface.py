"""Options through CLI and ini, the import budget, the report, and xdist."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import latest_bundle, read_verdict, with_canary_plan

CONFIG_PROBE = """
import json, pathlib
import pytest

# A gate marker but no claim: the probe may run in a no-gate run, and `-m side` selects it.
pytestmark = pytest.mark.side

def test_dump(spark_config, pytestconfig):
    from spark_sandbox.plugin import defects_key  # the option belongs to the sandbox plugin

    c = spark_config
    pathlib.Path("resolved.json").write_text(json.dumps({
        "release": c.release, "gate": c.gate, "evidence_dir": c.evidence_dir.name,
        "signing_key": c.signing_key, "checklist": c.checklist_path.name,
        "waivers": c.waivers_path.name, "stage": c.stage, "target": c.target.name,
        "sandbox_defects": list(pytestconfig.stash[defects_key]),
    }))
"""

# option name -> (CLI args, ini line, resolved field, expected value)
OPTION_CASES = {
    "release": (["--spark-release", "v1.4.0"], "spark_release = v1.4.0", "release", "v1.4.0"),
    # The pin must agree with -m, which is given on the command line in both cases.
    "gate": (["--spark-gate", "side"], "spark_gate = side", "gate", "side"),
    "evidence_dir": (
        ["--spark-evidence-dir", "out"],
        "spark_evidence_dir = out",
        "evidence_dir",
        "out",
    ),
    "signing_key": (
        ["--spark-signing-key", "env:K"],
        "spark_signing_key = env:K",
        "signing_key",
        "env:K",
    ),
    "checklist": (
        ["--spark-checklist", "ops/checklist.toml"],
        "spark_checklist = ops/checklist.toml",
        "checklist",
        "checklist.toml",
    ),
    "waivers": (
        ["--spark-waivers", "ops/w.toml"],
        "spark_waivers = ops/w.toml",
        "waivers",
        "w.toml",
    ),
    "stage": (["--spark-stage", "25"], "spark_stage = 25", "stage", 25),
    "target": (["--spark-target", "t.toml"], "spark_target = t.toml", "target", "t"),
    "sandbox_defect": (
        ["--spark-sandbox-defect", "no_coep"],
        "spark_sandbox_defects = no_coep",
        "sandbox_defects",
        ["no_coep"],
    ),
}


@pytest.mark.parametrize("source", ["cli", "ini"])
@pytest.mark.parametrize("option", sorted(OPTION_CASES))
def test_option_through_cli_and_ini(pytester: pytest.Pytester, option: str, source: str) -> None:
    cli, ini, field, expected = OPTION_CASES[option]
    from .conftest import TINY_CHECKLIST

    pytester.makefile(".toml", **{"ops/checklist": TINY_CHECKLIST})
    with_canary_plan(pytester)
    pytester.makefile(".toml", t='[target]\nname = "t"\nkind = "sandbox"\n')
    pytester.makepyfile(test_probe=CONFIG_PROBE)
    if source == "ini":
        pytester.makeini(f"[pytest]\n{ini}\n")
        args: list[str] = []
    else:
        args = cli
    if option == "gate":
        args = [*args, "-m", "side"]
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    # with the gate "side" in play, its item C1 has no test: a correct NO-GO
    assert result.ret == (1 if option == "gate" else 0), result.stdout.str()
    resolved = json.loads((pytester.path / "resolved.json").read_text())
    assert resolved[field] == expected


def test_cli_beats_env_beats_ini_beats_target_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import TINY_CHECKLIST

    pytester.makefile(".toml", **{"ops/checklist": TINY_CHECKLIST})
    with_canary_plan(pytester)
    pytester.makefile(
        ".toml",
        t='[target]\nname = "t"\nkind = "sandbox"\n'
        '[settings]\nrelease = "from-target"\nstage = 5\n',
    )
    pytester.makepyfile(test_probe=CONFIG_PROBE)
    pytester.makeini("[pytest]\nspark_release = from-ini\nspark_target = t.toml\n")

    def run(*a):
        return (
            pytester.runpytest("-p", "no:cacheprovider", *a),
            json.loads((pytester.path / "resolved.json").read_text()),
        )

    _, resolved = run()
    assert (resolved["release"], resolved["stage"]) == ("from-ini", 5)
    monkeypatch.setenv("SPARK_RELEASE", "from-env")
    _, resolved = run()
    assert resolved["release"] == "from-env"
    _, resolved = run("--spark-release", "from-cli")
    assert resolved["release"] == "from-cli"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--spark-stage", "30"], "*--spark-stage '30'*1, 5, 25, 50, 100*"),
        (["--spark-release", "v1/../x"], "*--spark-release*letters, digits*"),
        (["--spark-target", "nowhere.toml"], "*--spark-target nowhere.toml: no such file*"),
        (["--spark-gate", "nope"], "*gate is pinned to 'nope'*which is not a gate*"),
        (["--spark-gate", "side", "-m", "tiny"], "*pinned to 'side'*but -m names gate 'tiny'*"),
        (["--spark-gate", "tiny"], "*pinned to 'tiny'*but -m names no gate*"),
        (["-m", "tiny or slow"], "*can select tests that are not in gate 'tiny'*"),
        (["-m", "tiny or side"], "*names several gates (side, tiny)*"),
        (["-m", "not side"], "*can select tests that are not in gate 'side'*"),
        (["-m", "tiny", "--spark-signing-key", "missing.pem"], "*--spark-signing-key missing.pem*"),
    ],
)
def test_bad_options_are_usage_errors(
    gate_project: pytest.Pytester, args: list[str], message: str
) -> None:
    result = gate_project.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    code = (
        "import sys, pytest_spark.plugin\n"
        "heavy = [m for m in ('playwright', 'psycopg', 'pact', 'httpx', 'spark_sandbox',"
        " 'cryptography') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_html_carries_the_signoff_and_junit_the_items(gate_project: pytest.Pytester) -> None:
    gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider", "--spark-release", "v2.0.0")
    bundle = latest_bundle(gate_project)
    html = (bundle / "report.html").read_text()
    assert 'id="spark-signoff"' in html
    assert "Spark release gate: GO" in html
    assert "sha256:" in html  # key fingerprint
    junit = (bundle / "junit.xml").read_text()
    assert "spark.items[test_suite.py::test_a1]" in junit
    assert (bundle / "release_tag.txt").read_text().startswith("release: v2.0.0\n")
    assert (gate_project.path / "reports/LATEST").read_text().strip() == str(bundle)


def test_xdist_gives_one_bundle_with_the_serial_verdict(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(
        test_more="""
import pytest

@pytest.mark.go_nogo("G1")
@pytest.mark.parametrize("n", range(6))
def test_a1_many(spark_evidence, n):
    spark_evidence.check("sample", n, limit=10)
    spark_evidence.attach(f"sample{n}.txt", str(n))

@pytest.mark.money("M2")
def test_a2_fails(spark_evidence):
    spark_evidence.check("money_findings", 1, limit=1)
    assert False, "commission 0.01 != 0.00"
"""
    )
    gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider", "--spark-release", "serial")
    serial = read_verdict(gate_project)
    result = gate_project.runpytest_subprocess(
        "-m", "tiny", "-p", "no:cacheprovider", "-n", "2", "--spark-release", "parallel"
    )
    assert result.ret == 1
    bundles = list((gate_project.path / "reports/parallel").iterdir())
    assert len(bundles) == 1
    parallel = json.loads((bundles[0] / "verdict.json").read_text())
    strip = lambda v: {i: (r["status"], sorted(r["nodeids"])) for i, r in v["items"].items()}  # noqa: E731
    assert parallel["verdict"] == serial["verdict"] == "NO-GO"
    assert strip(parallel) == strip(serial)
    checks = (bundles[0] / "checks.jsonl").read_text().splitlines()
    assert len(checks) == 9
    assert len(list((bundles[0] / "attachments").rglob("sample*.txt"))) == 6
    assert (
        subprocess.run(
            [sys.executable, "-m", "pytest_spark.cli", "verify", str(bundles[0])],
            capture_output=True,
        ).returncode
        == 0
    )
