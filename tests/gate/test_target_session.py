"""The target session: a provider opens the target once, its secrets are redacted from the
moment they exist, and under xdist the controller opens it for every worker and closes it
after them. The provider here is a stand-in plugin that records each open and close; the
embedded sandbox's own plugin is tested in tests/sandbox/test_sandbox_plugin.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import latest_bundle

SECRET = "prov1der-S3cret-value"

# A provider for targets of kind "sandbox", recording in opened.jsonl who opened and closed it.
PROVIDER = f"""
import contextlib, dataclasses, json, os, pathlib
import pytest
from pytest_spark.keys import recorder_key, spark_config_key, target_session_key
from pytest_spark.targets import register

LOG = pathlib.Path(__file__).parent / "opened.jsonl"

def log(event):
    with LOG.open("a") as out:
        out.write(json.dumps({{"event": event, "pid": os.getpid()}}) + "\\n")

@contextlib.contextmanager
def provide(target):
    log("open")
    try:
        yield dataclasses.replace(
            target,
            endpoints={{"api_url": f"http://127.0.0.1:1/{{os.getpid()}}"}},
            secrets={{"api_token": "{SECRET}"}},
            settings={{"notes": ["stand-in started"]}},
        )
    finally:
        log("close")

@pytest.hookimpl
def pytest_spark_open_target(config, spark):
    return provide(spark.target) if spark.target.kind == "sandbox" else None

@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    # Registered at configure, as the gate plugin does: idempotent when it already did.
    if target_session_key not in config.stash:
        recorder = config.stash[recorder_key]
        config.stash[target_session_key] = register(
            config, config.stash[spark_config_key], recorder.redactor
        )
"""

MEASURING = f"""
import json, os, pathlib
import pytest

@pytest.mark.go_nogo("G1")
@pytest.mark.parametrize("n", range(4))
def test_g1(spark_target, spark_evidence, n):
    seen = pathlib.Path(__file__).parent / "seen.jsonl"
    with seen.open("a") as out:
        record = {{"pid": os.getpid(), "api_url": spark_target.require("api_url")}}
        out.write(json.dumps(record) + "\\n")
    assert spark_target.require("api_token") == "{SECRET}"
    print("token", spark_target.require("api_token"))
    spark_evidence.note("token " + spark_target.require("api_token"))
    spark_evidence.check("offset_ms", 1, limit=100)

@pytest.mark.money("M2")
def test_m2(spark_evidence):
    spark_evidence.check("money_findings", 0, limit=1)
"""


def events(pytester: pytest.Pytester, name: str) -> list[dict[str, object]]:
    path = pytester.path / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_provider_opens_once_and_its_secrets_never_reach_the_bundle(
    gate_project: pytest.Pytester,
) -> None:
    gate_project.makeconftest(PROVIDER)
    gate_project.makepyfile(test_suite=MEASURING)
    result = gate_project.runpytest_subprocess("-m", "tiny", "-p", "no:cacheprovider", "-rA")
    assert result.ret == 0, result.stdout.str()
    assert [e["event"] for e in events(gate_project, "opened.jsonl")] == ["open", "close"]
    assert len({e["api_url"] for e in events(gate_project, "seen.jsonl")}) == 1
    terminal = result.stdout.str() + result.stderr.str()
    assert SECRET not in terminal
    for path in latest_bundle(gate_project).rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_bytes().decode("utf-8", "replace"), path.name


def test_under_xdist_the_controller_opens_the_target_once_for_every_worker(
    gate_project: pytest.Pytester,
) -> None:
    gate_project.makeconftest(PROVIDER)
    gate_project.makepyfile(test_suite=MEASURING)
    result = gate_project.runpytest_subprocess("-m", "tiny", "-p", "no:cacheprovider", "-n", "2")
    assert result.ret == 0, result.stdout.str()
    opened = events(gate_project, "opened.jsonl")
    seen = events(gate_project, "seen.jsonl")
    # One deployment: opened and closed once, by the controller, which runs no test itself.
    assert [e["event"] for e in opened] == ["open", "close"], opened
    [controller] = {e["pid"] for e in opened}
    workers = {e["pid"] for e in seen}
    assert workers and controller not in workers, (controller, workers)
    assert {e["api_url"] for e in seen} == {f"http://127.0.0.1:1/{controller}"}
    bundle_text = "".join(
        p.read_bytes().decode("utf-8", "replace")
        for p in latest_bundle(gate_project).rglob("*")
        if p.is_file()
    )
    assert SECRET not in bundle_text


def test_a_target_that_cannot_open_fails_every_check_once_opened_once(
    gate_project: pytest.Pytester,
) -> None:
    failing = PROVIDER.replace(
        '    log("open")\n', '    log("open")\n    raise OSError("port 5432 refused")\n'
    )
    gate_project.makeconftest(failing)
    gate_project.makepyfile(test_suite=MEASURING)
    result = gate_project.runpytest_subprocess("-m", "tiny", "-p", "no:cacheprovider", "-n", "2")
    assert result.ret == 1
    # Tried once, by the controller; each worker's checks fail with that error, none retries.
    assert [e["event"] for e in events(gate_project, "opened.jsonl")] == ["open"]
    result.stdout.fnmatch_lines(["*cannot open the target sandbox (sandbox): port 5432 refused*"])
    result.assert_outcomes(passed=1, errors=4)


def test_a_run_without_a_gate_opens_nothing_up_front(gate_project: pytest.Pytester) -> None:
    gate_project.makeconftest(PROVIDER)
    gate_project.makepyfile(test_plain="def test_nothing():\n    pass\n")
    result = gate_project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "test_plain.py")
    assert result.ret == 0, result.stdout.str()
    assert events(gate_project, "opened.jsonl") == []


def test_a_deployment_target_without_a_provider_is_measured_as_its_file_says(
    gate_project: pytest.Pytester,
) -> None:
    gate_project.makeconftest(PROVIDER)
    gate_project.makefile(
        ".toml",
        staging='[target]\nname = "staging"\nkind = "deployment"\n'
        '[endpoints]\napi_url = "http://127.0.0.1:2/staging"\n',
    )
    gate_project.makepyfile(
        test_suite="""
import pytest

@pytest.mark.go_nogo("G1")
def test_g1(spark_target, spark_evidence):
    assert spark_target.require("api_url") == "http://127.0.0.1:2/staging"
    spark_evidence.check("offset_ms", 1, limit=100)
"""
    )
    result = gate_project.runpytest_subprocess(
        "-m", "tiny", "-p", "no:cacheprovider", "--spark-target", "staging.toml"
    )
    assert result.ret == 1, result.stdout.str()  # M2 is MISSING: NO-GO, but G1 was measured
    assert events(gate_project, "opened.jsonl") == []
    assert "1 passed" in result.stdout.str()


def test_a_sandbox_target_without_its_provider_fails_naming_the_plugin(
    gate_project: pytest.Pytester,
) -> None:
    gate_project.makepyfile(
        test_suite="""
import pytest

@pytest.mark.go_nogo("G1")
def test_g1(spark_target):
    pass
"""
    )
    result = gate_project.runpytest_subprocess(
        "-m", "tiny", "-p", "no:cacheprovider", "-p", "no:spark_sandbox"
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*no plugin answered pytest_spark_open_target*'sandbox'*"
            "spark_sandbox*-p no:spark_sandbox*"
        ]
    )
    assert not os.path.exists(gate_project.path / "opened.jsonl")


def test_the_target_session_notes_describe_the_target_in_the_bundle_inputs(tmp_path: Path) -> None:
    from pytest_spark.config import SparkConfig, Target
    from pytest_spark.evidence.bundle import Bundle
    from pytest_spark.evidence.inputs import record_inputs
    from pytest_spark.evidence.redact import Redactor

    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "checklist.toml").write_text("[gates]\n")
    spark = SparkConfig(
        rootdir=tmp_path,
        target=Target(name="sandbox", kind="sandbox"),
        release="dev",
        gate="tiny",
        evidence_dir=tmp_path / "reports",
        signing_key=None,
        checklist_path=tmp_path / "ops" / "checklist.toml",
        checklist_explicit=False,
        waivers_path=tmp_path / "ops" / "waivers.toml",
        stage=None,
    )
    bundle = Bundle(tmp_path / "reports" / "dev" / "run", Redactor([SECRET]))
    bundle.create()
    notes = ["sandbox started with defects no_coep: run-1 in 2.1 s", f"token {SECRET}"]
    [target] = [d for d in record_inputs(bundle, spark, notes) if d["name"] == "target"]
    assert target["annotations"] == {
        "kind": "sandbox",
        "target": "sandbox",
        "notes": [notes[0], "token ***"],
    }
