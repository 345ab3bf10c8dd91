"""A run that ends early, or whose exit code something else rewrites, is never GO.

pytest.exit (with any return code), Ctrl-C, SIGTERM, internal errors, -x/--maxfail and
plugins that rewrite the exit status all end NO-GO with a blocker that says what happened,
and the process exit code is never 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import latest_bundle, read_verdict

A2_OK = """
@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""


def suite(a1_body: str, extra: str = "") -> str:
    return f"""
import pytest

@pytest.mark.go_nogo("G1")
def test_a1(spark_evidence):
    spark_evidence.check("offset_ms", 1, limit=100)
    {a1_body}
{A2_OK}
{extra}
"""


EARLY_ENDS = {
    "exit_0_in_a_test": (suite('pytest.exit("operator aborted", returncode=0)'), "", "pytest.exit"),
    "exit_0_in_a_session_fixture": (
        suite("pass", "").replace(
            "def test_a1(spark_evidence)", "def test_a1(spark_evidence, boom)"
        ),
        """
import pytest

@pytest.fixture(scope="session")
def boom():
    pytest.exit("no target today", returncode=0)
""",
        "pytest.exit",
    ),
    "keyboard_interrupt": (suite("raise KeyboardInterrupt"), "", "KeyboardInterrupt"),
    "internal_error": (
        suite("pass"),
        """
def pytest_runtest_logreport(report):
    if report.when == "call" and "a2" in report.nodeid:
        raise RuntimeError("a reporting plugin broke")
""",
        "internal error",
    ),
    "stop_after_first_failure": (
        suite("pass").replace(
            'spark_evidence.check("money_findings", 0, limit=1)',
            "assert False, 'money broke'",
        ),
        "",
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(EARLY_ENDS))
def test_an_early_end_is_no_go(gate_project: pytest.Pytester, case: str) -> None:
    test_file, conftest, blocker = EARLY_ENDS[case]
    gate_project.makepyfile(test_suite=test_file)
    if conftest:
        gate_project.makeconftest(conftest)
    args = ["-x"] if case == "stop_after_first_failure" else []
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider", *args)
    verdict = read_verdict(gate_project)
    assert result.ret != 0
    assert verdict["verdict"] == "NO-GO"
    assert "SPARK GATE tiny: NO-GO" in result.stdout.str()
    if blocker:
        assert any(blocker in b for b in verdict["blockers"]), verdict["blockers"]


REWRITERS = {
    "exitstatus_set_to_0": """
import pytest

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    session.exitstatus = 0
""",
    "exit_0_after_the_verdict": """
import pytest

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    pytest.exit("all good, trust me", returncode=0)
""",
    "wrapper_returns_0": """
import pytest

@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session, exitstatus):
    result = yield
    session.exitstatus = 0
    return result
""",
}


@pytest.mark.parametrize("case", sorted(REWRITERS))
def test_a_rewritten_exit_code_cannot_hide_no_go(gate_project: pytest.Pytester, case: str) -> None:
    gate_project.makepyfile(test_suite=suite("assert False, 'NTP offset 140 ms'"))
    gate_project.makeconftest(REWRITERS[case])
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    assert read_verdict(gate_project)["verdict"] == "NO-GO"
    assert result.ret == pytest.ExitCode.TESTS_FAILED


SLOW_SUITE = suite(
    """import pathlib, time
    pathlib.Path("started").write_text("x")
    time.sleep(60)""",
    """
@pytest.fixture(scope="session", autouse=True)
def deployment():
    yield
    import pathlib
    pathlib.Path("torn-down").write_text("x")  # as the sandbox is stopped
""",
)


def test_sigterm_stops_the_run_like_ctrl_c(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(test_suite=SLOW_SUITE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-m", "tiny", "-p", "no:cacheprovider"],
        cwd=gate_project.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (gate_project.path / "started").exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the test never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode not in (0, -signal.SIGTERM), output
    assert (gate_project.path / "torn-down").exists(), "session teardown did not run"
    verdict = json.loads((latest_bundle(gate_project) / "verdict.json").read_text())
    assert verdict["verdict"] == "NO-GO"
    assert any("SIGTERM" in b for b in verdict["blockers"]), verdict["blockers"]
    assert "SPARK GATE tiny: NO-GO" in output
