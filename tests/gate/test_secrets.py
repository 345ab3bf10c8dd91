"""Secrets named by a target never reach a bundle file, a report file, a log file or the terminal.

One case per channel that carries text out of a gate run. Each case also proves that its
channel really carried the (masked) text, so a channel that printed nothing cannot pass.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_spark.evidence.redact import Redactor

from .conftest import latest_bundle, read_verdict

DSN_PASSWORD = "pg-Secr3t-7781"
DSN = f"postgresql://spark_app:{DSN_PASSWORD}@127.0.0.1:5432/spark"
TOKEN = "tok_live_51HxQv9aZ"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/XXXXyyyyZZZZ"
# Every character that JSON, HTML/XML, repr or percent-encoding rewrites. Its two plain ends
# are in every encoded form of it, so finding neither proves no form of it got out.
PASSPHRASE = "h4rdPfx\"<&\\ğ%'>sfxW9Zq"
NEEDLES = (DSN_PASSWORD, TOKEN, "XXXXyyyyZZZZ", "h4rdPfx", "sfxW9Zq")

M = "[*][*][*]"  # the mask, as an fnmatch pattern

TARGET = """
[target]
name = "staging"
kind = "deployment"

[endpoints]
api_url = "http://127.0.0.1:9"

[secrets]
database_dsn = "SPARK_TEST_DB_DSN"
broker_token = "SPARK_TEST_BROKER_TOKEN"
oncall_webhook = "SPARK_TEST_ONCALL_WEBHOOK"
signing_passphrase = "SPARK_TEST_PASSPHRASE"
"""

HEADER = """
import logging
import os
import warnings

import pytest

DSN = os.environ["SPARK_TEST_DB_DSN"]
TOKEN = os.environ["SPARK_TEST_BROKER_TOKEN"]
WEBHOOK = os.environ["SPARK_TEST_ONCALL_WEBHOOK"]
PASSPHRASE = os.environ["SPARK_TEST_PASSPHRASE"]
log = logging.getLogger("spark.driver")
"""

LEAKY_SUITE = (
    HEADER
    + """
@pytest.mark.go_nogo("G1")
def test_a1(spark_evidence, spark_target, record_property, record_testsuite_property):
    spark_evidence.note("connecting with " + " ".join(spark_target.secret_values()))
    spark_evidence.measure("dsn_seen", DSN)
    spark_evidence.measure("passphrase_seen", PASSPHRASE)
    spark_evidence.attach("raw.txt", "token=" + TOKEN + " passphrase=" + PASSPHRASE)
    record_property("passphrase", PASSPHRASE)
    record_testsuite_property("passphrase", PASSPHRASE)
    print("webhook", WEBHOOK, "passphrase", PASSPHRASE)
    spark_evidence.check("offset_ms", 12.5, unit="ms", limit=100)
    assert False, "cannot reach " + DSN + " with " + PASSPHRASE

@pytest.mark.money("M2")
def test_a2():
    print("token in output:", TOKEN)
    raise RuntimeError("auth failed with Bearer " + TOKEN + " and " + repr(PASSPHRASE))
"""
)

LOGGING_SUITE = (
    HEADER
    + """
@pytest.mark.go_nogo("G1")
def test_a1(spark_evidence, caplog):
    caplog.set_level(logging.INFO)
    log.info("connecting to %s", DSN)
    log.warning("passphrase %r rejected", PASSPHRASE)
    try:
        raise ConnectionError("refused: " + TOKEN)
    except ConnectionError:
        log.exception("broker down")
    log.info("stack", stack_info=True, extra={"note": "no secret"})
    assert DSN not in caplog.text and TOKEN not in caplog.text and PASSPHRASE not in caplog.text
    assert "connecting to postgresql://spark_app:***@127.0.0.1" in caplog.text
    spark_evidence.check("offset_ms", 12.5, unit="ms", limit=100)

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    log.error("dsn %s and passphrase %s", DSN, PASSPHRASE)
    spark_evidence.check("money_findings", 0, limit=1)
    assert False, "see the captured log"
"""
)

WARNING_SUITE = (
    HEADER
    + """
class DriverWarning(UserWarning):
    def __init__(self, dsn):
        super().__init__(f"driver fell back to plain TCP for {dsn}")

@pytest.mark.go_nogo("G1")
def test_a1(spark_evidence):
    warnings.warn("broker token " + TOKEN + " expires soon", DeprecationWarning)
    warnings.warn(UserWarning("passphrase " + PASSPHRASE + " is weak"))
    warnings.warn(DriverWarning(DSN))
    spark_evidence.check("offset_ms", 12.5, unit="ms", limit=100)

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""
)

PASSING_LEAKY_SUITE = (
    HEADER
    + """
import sys

@pytest.mark.go_nogo("G1")
def test_a1(spark_evidence):
    print("stdout:", DSN, PASSPHRASE)
    print("stderr:", TOKEN, file=sys.stderr)
    log.warning("log: %s", WEBHOOK)
    spark_evidence.check("offset_ms", 12.5, unit="ms", limit=100)

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""
)

PARAMETRIZED_SUITE = (
    HEADER
    + """
@pytest.mark.go_nogo("G1")
@pytest.mark.parametrize("dsn", [DSN, PASSPHRASE, "plain-value"])
def test_a1(spark_evidence, dsn):
    spark_evidence.check("offset_ms", 12.5, unit="ms", limit=100)

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""
)

FAIL_WITHOUT_TRACE_SUITE = (
    HEADER
    + """
@pytest.mark.go_nogo("G1")
def test_a1():
    pytest.fail("cannot reach " + DSN + " with " + PASSPHRASE, pytrace=False)

@pytest.mark.money("M2")
@pytest.mark.xfail(reason="broker " + TOKEN + " is flaky")
def test_a2():
    assert False
"""
)

EXIT_SUITE = (
    HEADER
    + """
@pytest.mark.go_nogo("G1")
def test_a1():
    pytest.exit("giving up on " + DSN + " and " + PASSPHRASE)

@pytest.mark.money("M2")
def test_a2():
    pass
"""
)

SKIP_SUITE = (
    HEADER
    + """
@pytest.mark.go_nogo("G1")
def test_a1():
    pytest.skip("no route to " + DSN + " with " + PASSPHRASE)

@pytest.mark.money("M2")
def test_a2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""
)

# Text that reaches report files around the reports: only the after-the-fact scrub of the
# escaped file (an HTML-escaped cell inside JSON inside an attribute) can catch it.
OTHER_PLUGINS_CONFTEST = (
    HEADER
    + """
import html

def pytest_report_header(config):
    return ["broker: " + TOKEN]

def pytest_html_results_table_html(report, data):
    data.append("<div>operator passphrase " + html.escape(PASSPHRASE) + "</div>")

def pytest_html_results_summary(prefix, summary, postfix):
    prefix.append("<p>signed off against " + html.escape(DSN) + "</p>")
"""
)

INTERNAL_ERROR_CONFTEST = (
    HEADER
    + """
def pytest_collection_finish(session):
    raise RuntimeError("registry unreachable at " + DSN + " as " + PASSPHRASE)
"""
)

XDIST_SUITE = (
    HEADER
    + """
@pytest.mark.go_nogo("G1")
def test_a1(spark_evidence):
    log.warning("connecting to %s", DSN)
    warnings.warn("broker token " + TOKEN + " expires soon", DeprecationWarning)
    spark_evidence.check("offset_ms", 12.5, unit="ms", limit=100)
    assert False, "cannot reach " + DSN + " with " + PASSPHRASE

@pytest.mark.money("M2")
@pytest.mark.parametrize("dsn", [DSN, PASSPHRASE])
def test_a2(spark_evidence, dsn):
    print("stdout:", dsn)
    spark_evidence.check("money_findings", 0, limit=1)
"""
)

BROKEN_MODULE = (
    HEADER
    + """
raise RuntimeError("cannot load fixtures from " + DSN + " as " + PASSPHRASE)
"""
)


@dataclass(frozen=True)
class Channel:
    suite: str
    args: tuple[str, ...] = ()
    conftest: str = ""
    env: dict[str, str] = field(default_factory=dict)
    # fnmatch lines in the terminal that show the channel carried the masked text
    shows: tuple[str, ...] = ()
    # file (relative to the project) -> text in it that shows the same
    writes: dict[str, str] = field(default_factory=dict)
    subprocess: bool = False


CHANNELS = {
    "assertions-notes-measurements": Channel(
        LEAKY_SUITE,
        ("-rA",),
        conftest=OTHER_PLUGINS_CONFTEST,
        shows=(f"broker: {M}", f"*cannot reach {M} with {M}*"),
        writes={
            "<bundle>/junit.xml": 'name="passphrase" value="***"',
            "<bundle>/report.html": "operator passphrase ***",
        },
    ),
    "log-cli": Channel(
        LOGGING_SUITE,
        ("--log-cli-level=INFO",),
        shows=("*live log call*", f"*connecting to {M}*"),
        writes={"<bundle>/report.html": "connecting to ***"},
    ),
    "log-file": Channel(
        LOGGING_SUITE,
        ("--log-file=logs/spark.log", "--log-file-level=DEBUG"),
        writes={"logs/spark.log": "connecting to ***"},
    ),
    "warnings-summary": Channel(
        WARNING_SUITE,
        ("-W", "always"),
        shows=(
            "*warnings summary*",
            f"*DeprecationWarning: broker token {M} expires soon*",
            f"*DriverWarning: driver fell back to plain TCP for {M}*",
        ),
    ),
    "metadata-header": Channel(
        PASSING_LEAKY_SUITE,
        ("-v", "--metadata", "dsn", DSN, "--metadata", "passphrase", PASSPHRASE),
        env={"BUILD_URL": f"https://ci.example/job/{TOKEN}/1", "GIT_URL": WEBHOOK},
        shows=(f"metadata: {{*'dsn': '{M}'*'passphrase': '{M}'*",),
        writes={"<bundle>/report.html": "https://ci.example/job/***/1"},
    ),
    "captured-output-rA": Channel(
        PASSING_LEAKY_SUITE,
        ("-rA",),
        shows=("*PASSES*", "*Captured stdout call*", f"stdout: {M} {M}"),
    ),
    "parametrize-ids": Channel(
        PARAMETRIZED_SUITE,
        ("-v",),
        shows=(
            f"*test_a1?{M}0? PASSED*",
            f"*test_a1?{M}1? PASSED*",
            "*test_a1?plain-value? PASSED*",
        ),
        writes={"<bundle>/checks.jsonl": "test_a1[***"},
    ),
    "fail-without-trace-and-xfail-reason": Channel(
        FAIL_WITHOUT_TRACE_SUITE,
        ("-rA",),
        shows=(
            f"XFAIL test_suite.py::test_a2 - broker {M} is flaky",
            f"FAILED test_suite.py::test_a1 - Failed: cannot reach {M} with {M}",
        ),
    ),
    "pytest-exit": Channel(
        EXIT_SUITE,
        shows=(f"*Exit: giving up on {M} and {M}*",),
    ),
    "user-chosen-report-paths": Channel(
        LEAKY_SUITE,
        ("--html=out/user.html", "--junitxml=out/user.xml"),
        conftest=OTHER_PLUGINS_CONFTEST,
        writes={
            "out/user.html": "signed off against ***",
            "out/user.xml": 'name="passphrase" value="***"',
            "<bundle>/report.html": "operator passphrase ***",
            "<bundle>/junit.xml": "cannot reach *** with ***",
        },
    ),
    "xdist-workers": Channel(
        XDIST_SUITE,
        ("-n", "2", "-v", "-rA", "-W", "always"),
        shows=(
            "*warnings summary*",
            f"*broker token {M} expires soon*",
            f"*FAILED test_suite.py::test_a1 - AssertionError: cannot reach {M} with {M}",
        ),
        writes={"<bundle>/report.html": "connecting to ***"},
        subprocess=True,
    ),
}


@pytest.fixture
def leaky_gate(gate_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("SPARK_TEST_DB_DSN", DSN)
    monkeypatch.setenv("SPARK_TEST_BROKER_TOKEN", TOKEN)
    monkeypatch.setenv("SPARK_TEST_ONCALL_WEBHOOK", WEBHOOK)
    monkeypatch.setenv("SPARK_TEST_PASSPHRASE", PASSPHRASE)
    gate_project.makefile(".toml", **{"targets/staging": TARGET})
    return gate_project


def run_gate(
    pytester: pytest.Pytester, *args: str, subprocess: bool = False
) -> tuple[pytest.RunResult, str]:
    run = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    result = run(
        "-m", "tiny", "-p", "no:cacheprovider", "--spark-target", "targets/staging.toml", *args
    )
    return result, "\n".join(result.outlines + result.errlines)


def leaks(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


def written_files(pytester: pytest.Pytester) -> dict[Path, str]:
    """Every file the run left in the project (not the suite and registry it was given).

    A DSSE envelope's payload is base64, out of reach of any scrub: it is read decoded.
    """
    files = {}
    for path in pytester.path.rglob("*"):
        given = "reports" not in path.parts and path.suffix in (".py", ".toml")
        if not path.is_file() or given or path.suffix == ".pyc":
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        if path.name.endswith(".dsse.json"):
            text += base64.b64decode(json.loads(text)["payload"]).decode("utf-8", "replace")
        files[path] = text
    return files


@pytest.mark.parametrize("channel", list(CHANNELS.values()), ids=list(CHANNELS))
def test_no_secret_through_the_channel(
    leaky_gate: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, channel: Channel
) -> None:
    for name, value in channel.env.items():
        monkeypatch.setenv(name, value)
    leaky_gate.makepyfile(test_suite=channel.suite)
    if channel.conftest:
        leaky_gate.makeconftest(channel.conftest)
    result, terminal = run_gate(leaky_gate, *channel.args, subprocess=channel.subprocess)
    assert "INTERNALERROR" not in terminal
    # NO-GO whatever the tests did: the dev-signed bundle of a real target is never GO.
    assert result.ret == 1, terminal[-3000:]
    assert not leaks(terminal), f"{leaks(terminal)} reached the terminal"
    files = written_files(leaky_gate)
    bundle = latest_bundle(leaky_gate)
    assert {"checks.jsonl", "verdict.json", "report.html", "junit.xml"} <= {
        p.name for p in bundle.iterdir()
    }
    for path, text in files.items():
        assert not leaks(text), f"{leaks(text)} reached {path.relative_to(leaky_gate.path)}"
    if channel.shows:
        result.stdout.fnmatch_lines(list(channel.shows))
    for name, shown in channel.writes.items():
        path = Path(name.replace("<bundle>", str(bundle)))
        path = path if path.is_absolute() else leaky_gate.path / path
        assert shown in files[path], f"{name} does not show the masked text {shown!r}"


def test_every_bundle_file_is_masked_before_it_is_serialised(leaky_gate: pytest.Pytester) -> None:
    """The JSON files hold the masked value, not an escaped secret masked afterwards."""
    leaky_gate.makepyfile(test_suite=LEAKY_SUITE)
    run_gate(leaky_gate)
    bundle = latest_bundle(leaky_gate)
    records = [json.loads(line) for line in (bundle / "checks.jsonl").read_text().splitlines()]
    a1 = next(r for r in records if r["nodeid"].endswith("test_a1"))
    values = {m["name"]: m["value"] for m in a1["measurements"]}
    assert values["passphrase_seen"] == "***"
    assert values["dsn_seen"] == "***"
    assert a1["message"] == "AssertionError: cannot reach *** with ***"
    assert any("raw.txt" in str(p) for p in bundle.rglob("*")), "the attachment was not kept"
    # and the dev-signed bundle of a real target is NO-GO on its own
    assert "dev-signed bundle for a real target" in (bundle / "verdict.json").read_text()


def test_a_skip_with_a_secret_is_a_masked_skip(leaky_gate: pytest.Pytester) -> None:
    leaky_gate.makepyfile(test_suite=SKIP_SUITE)
    result, terminal = run_gate(leaky_gate, "-rs")
    assert "INTERNALERROR" not in terminal
    assert result.ret == 1
    assert not leaks(terminal)
    result.stdout.fnmatch_lines([f"SKIPPED [[]1[]] test_suite.py:*: no route to {M} with {M}"])
    result.assert_outcomes(passed=1, skipped=1)
    assert read_verdict(leaky_gate)["items"]["G1"]["status"] == "SKIPPED"  # type: ignore[index]
    records = (latest_bundle(leaky_gate) / "checks.jsonl").read_text().splitlines()
    a1 = next(json.loads(r) for r in records if "test_a1" in r)
    assert a1["outcome"] == "skipped"
    assert a1["message"] == "no route to *** with ***"
    for path, text in written_files(leaky_gate).items():
        assert not leaks(text), f"{leaks(text)} reached {path.name}"


def test_a_collection_error_with_a_secret(leaky_gate: pytest.Pytester) -> None:
    leaky_gate.makepyfile(test_broken=BROKEN_MODULE)
    result, terminal = run_gate(leaky_gate, "-rA")
    assert "INTERNALERROR" not in terminal
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["*ERROR collecting test_broken.py*", f"*cannot load fixtures from {M} as {M}*"]
    )
    assert not leaks(terminal), f"{leaks(terminal)} reached the terminal"
    files = written_files(leaky_gate)
    for path, text in files.items():
        assert not leaks(text), f"{leaks(text)} reached {path.name}"
    assert "cannot load fixtures from" in files[latest_bundle(leaky_gate) / "junit.xml"]


def test_an_internal_error_with_a_secret(leaky_gate: pytest.Pytester) -> None:
    leaky_gate.makeconftest(INTERNAL_ERROR_CONFTEST)
    result, terminal = run_gate(leaky_gate)
    result.stdout.fnmatch_lines([f"INTERNALERROR>*registry unreachable at {M} as {M}"])
    assert not leaks(terminal), f"{leaks(terminal)} reached the terminal"
    for path, text in written_files(leaky_gate).items():
        assert not leaks(text), f"{leaks(text)} reached {path.name}"


def test_the_log_record_factory_is_restored(leaky_gate: pytest.Pytester) -> None:
    before = logging.getLogRecordFactory()
    leaky_gate.makepyfile(test_suite=LOGGING_SUITE)
    run_gate(leaky_gate)
    assert logging.getLogRecordFactory() is before


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("postgresql://app:hunter22@db:5432/spark", "hunter22"),
        ("host=db user=app password=hunter22 dbname=spark", "hunter22"),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("https://broker.example/pacts?token=s3cr3t&x=1", "s3cr3t"),
        ("https://hooks.slack.com/services/T1/B2/c3", "T1/B2/c3"),
        ("-----BEGIN PRIVATE KEY-----\nMC4CAQ\n-----END PRIVATE KEY-----", "MC4CAQ"),
    ],
)
def test_patterns_catch_undeclared_secrets(text: str, hidden: str) -> None:
    assert hidden not in Redactor().text(text)


def test_declared_values_are_masked_wherever_they_stand() -> None:
    redactor = Redactor(["s3cr3t-value", "abc"])  # too short values are not masked
    assert redactor.text("x s3cr3t-value y abc") == "x *** y abc"
    assert redactor.value({"k": ["s3cr3t-value"]}) == {"k": ["***"]}


def test_needles_find_every_encoded_form() -> None:
    # The matrix above relies on this: no encoding touches the passphrase's plain ends.
    assert all(re.fullmatch(r"[A-Za-z0-9]+", n) for n in NEEDLES[-2:])
    assert PASSPHRASE.startswith(NEEDLES[-2]) and PASSPHRASE.endswith(NEEDLES[-1])
