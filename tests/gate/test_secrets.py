"""Secrets named by a target never reach a bundle file or the terminal."""

from __future__ import annotations

import pytest

from pytest_spark.evidence.redact import Redactor

from .conftest import latest_bundle

DSN_PASSWORD = "pg-Secr3t-7781"
TOKEN = "tok_live_51HxQv9aZ"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/XXXXyyyyZZZZ"

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
"""

LEAKY_SUITE = """
import os
import pytest

@pytest.mark.go_nogo("A1")
def test_a1(spark_evidence, spark_target):
    dsn = spark_target.secret_values()
    spark_evidence.note("connecting with " + " ".join(dsn))
    spark_evidence.measure("dsn_seen", os.environ["SPARK_TEST_DB_DSN"])
    spark_evidence.attach("raw.txt", "token=" + os.environ["SPARK_TEST_BROKER_TOKEN"])
    print("webhook", os.environ["SPARK_TEST_ONCALL_WEBHOOK"])
    assert False, "cannot reach " + os.environ["SPARK_TEST_DB_DSN"]

@pytest.mark.money("A2")
def test_a2():
    print("token in output:", os.environ["SPARK_TEST_BROKER_TOKEN"])
    raise RuntimeError("auth failed with Bearer " + os.environ["SPARK_TEST_BROKER_TOKEN"])
"""


def test_no_secret_in_bundle_or_terminal(
    gate_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "SPARK_TEST_DB_DSN", f"postgresql://spark_app:{DSN_PASSWORD}@127.0.0.1:5432/spark"
    )
    monkeypatch.setenv("SPARK_TEST_BROKER_TOKEN", TOKEN)
    monkeypatch.setenv("SPARK_TEST_ONCALL_WEBHOOK", WEBHOOK)
    gate_project.makefile(".toml", **{"targets/staging": TARGET})
    gate_project.makepyfile(test_suite=LEAKY_SUITE)
    result = gate_project.runpytest(
        "-m", "tiny", "-p", "no:cacheprovider", "--spark-target", "targets/staging.toml", "-rA"
    )
    assert result.ret == 1
    terminal = "\n".join(result.outlines + result.errlines)
    bundle = latest_bundle(gate_project)
    files = {p: p.read_bytes().decode("utf-8", "replace") for p in bundle.rglob("*") if p.is_file()}
    assert any("raw.txt" in str(p) for p in files), "the attachment was not kept"
    for secret in (DSN_PASSWORD, TOKEN, WEBHOOK, "XXXXyyyyZZZZ"):
        assert secret not in terminal, f"{secret} reached the terminal"
        for path, text in files.items():
            assert secret not in text, f"{secret} reached {path.name}"
    # and the dev-signed bundle of a real target is NO-GO on its own
    assert "dev-signed bundle for a real target" in files[bundle / "verdict.json"]


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
