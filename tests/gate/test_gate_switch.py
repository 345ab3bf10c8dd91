"""The gate never switches itself off in silence, and the deciding gate is the one -m names.

A run that selects tests claiming checklist items must either decide a gate or stop with a
usage error naming what is wrong: no checklist found, an -m expression that no single gate
describes, a gate pinned elsewhere that disagrees, a target file that is not what it says.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import read_verdict

USAGE = pytest.ExitCode.USAGE_ERROR


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def assert_refused(result: pytest.RunResult, pattern: str, where: Path) -> None:
    assert result.ret == USAGE, result.stdout.str()
    result.stderr.fnmatch_lines([pattern])
    assert not (where / "reports").exists(), "a refused run wrote a bundle"


NO_CHECKLIST = {
    "rootdir_elsewhere": (lambda p: ["--rootdir", str(p / "elsewhere")], "*no checklist*"),
    "other_ini_file": (lambda p: ["-c", str(p / "elsewhere" / "tox.ini")], "*no checklist*"),
    "checklist_typo": (lambda p: ["--spark-checklist", "ops/checklst.toml"], "*does not exist*"),
}


@pytest.mark.parametrize("case", sorted(NO_CHECKLIST))
@pytest.mark.parametrize(
    "marker", [["-m", "tiny"], ["-m", "go_nogo"], []], ids=["tiny", "go_nogo", "none"]
)
def test_no_checklist_is_a_usage_error(
    gate_project: pytest.Pytester, case: str, marker: list[str]
) -> None:
    (gate_project.path / "elsewhere").mkdir()
    (gate_project.path / "elsewhere" / "tox.ini").write_text("[pytest]\n")
    args, _ = NO_CHECKLIST[case]
    result = run(gate_project, "test_suite.py", *marker, *args(gate_project.path))
    assert result.ret == USAGE, result.stdout.str()
    assert "checklist" in result.stderr.str()
    assert not (gate_project.path / "reports").exists()


def test_running_from_another_directory_is_refused_or_decided(
    gate_project: pytest.Pytester, tmp_path: Path
) -> None:
    # From a directory without the project's ini, pytest's rootdir is that directory.
    outside = tmp_path / "outside"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(gate_project.path / "test_suite.py"),
            "-m",
            "tiny",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(outside),
        ],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == USAGE, proc.stdout + proc.stderr
    assert "checklist" in proc.stderr


MARK_EXPRESSIONS = {
    "tiny": "GO",
    " tiny ": "GO",
    "(tiny)": "GO",
    "tiny and not slow": "GO",
    "not slow and tiny": "GO",
    "tiny and (slow or not slow)": "GO",
    "tiny and slow": "NO-GO",  # narrowed to nothing: every item MISSING
    "tiny or slow": "refused",
    "not tiny": "refused",
    "tiny or side": "refused",
    "tiny and side": "refused",
    "not side": "refused",
    "money or tiny": "refused",
    "tiny and not tiny": "refused",
    "tiny and": "refused",
}


@pytest.mark.parametrize("expression", sorted(MARK_EXPRESSIONS))
def test_m_expressions_are_understood_or_refused(
    gate_project: pytest.Pytester, expression: str
) -> None:
    expected = MARK_EXPRESSIONS[expression]
    result = run(gate_project, "-m", expression)
    if expected == "refused":
        assert_refused(result, "*spark: -m*", gate_project.path)
        return
    verdict = read_verdict(gate_project)
    assert (verdict["gate"], verdict["verdict"]) == ("tiny", expected)
    assert result.ret == (0 if expected == "GO" else 1)


def test_a_gate_test_selected_without_a_gate_is_refused(gate_project: pytest.Pytester) -> None:
    for args in ([], ["-m", "slow or not slow"], ["-k", "a1"]):
        result = run(gate_project, *args)
        assert_refused(result, "*claim checklist items*-m names no gate*", gate_project.path)


PINS = {
    "cli": (["--spark-gate", "side"], {}, ""),
    "env": ([], {"SPARK_GATE": "side"}, ""),
    "ini": ([], {}, "[pytest]\nspark_gate = side\n"),
    "target": (["--spark-target", "t.toml"], {}, ""),
}


@pytest.mark.parametrize("source", sorted(PINS))
def test_a_gate_pinned_elsewhere_must_agree_with_m(
    gate_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    args, env, ini = PINS[source]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if ini:
        gate_project.makeini(ini)
    gate_project.makefile(
        ".toml", t='[target]\nname = "t"\nkind = "sandbox"\n[settings]\ngate = "side"\n'
    )
    assert_refused(run(gate_project, "-m", "tiny", *args), "*pinned to 'side'*", gate_project.path)
    # agreeing with -m is fine: the pin only guards against a different gate
    result = run(gate_project, "-m", "side", *args)
    assert read_verdict(gate_project)["gate"] == "side"
    assert result.ret == 1  # C1 has no test


TARGET_FILES = {
    "sandbox_with_endpoints": (
        '[target]\nname = "staging"\nkind = "sandbox"\n[endpoints]\napi_url = "https://x"\n',
        "*kind = 'sandbox' with *",
    ),
    "unknown_kind": ('[target]\nkind = "Sandbox"\n', "*kind = 'Sandbox'*"),
    "unknown_table": (
        '[target]\nkind = "deployment"\n[endpoint]\napi_url = "x"\n',
        "*unknown table(s) *'endpoint'*",
    ),
    "unknown_setting": ('[target]\nkind = "deployment"\n[settings]\nrelase = "v1"\n', "*relase*"),
    "unknown_target_key": ('[target]\nkind = "deployment"\nnmae = "x"\n', "*nmae*"),
    "chaos_unknown_key": ('[target]\nkind = "deployment"\n[chaos]\nallowed = true\n', "*allowed*"),
    "chaos_allowed_as_text": (
        '[target]\nkind = "deployment"\n[chaos]\nchaos_allowed = "yes"\n',
        "*chaos_allowed must be true or false*",
    ),
}


@pytest.mark.parametrize("case", sorted(TARGET_FILES))
def test_a_target_file_that_is_not_what_it_says_is_refused(
    gate_project: pytest.Pytester, case: str
) -> None:
    text, pattern = TARGET_FILES[case]
    gate_project.makefile(".toml", t=text)
    assert_refused(
        run(gate_project, "-m", "tiny", "--spark-target", "t.toml"), pattern, gate_project.path
    )


def test_collect_only_decides_nothing_and_writes_no_bundle(gate_project: pytest.Pytester) -> None:
    result = run(gate_project, "-m", "tiny", "--collect-only")
    assert result.ret == 0
    assert "SPARK GATE" not in result.stdout.str()
    assert not (gate_project.path / "reports").exists()
