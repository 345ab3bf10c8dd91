"""The embedded sandbox's own secrets (its DSN passwords and the fault proxy's bearer token)
never reach the bundle or the terminal, even when a check prints every endpoint it got."""

from __future__ import annotations

import re

import pytest

from .conftest import latest_bundle

LEAKY = """
import pathlib
import pytest

@pytest.mark.go_nogo("A1")
def test_a1(spark_target, spark_evidence):
    secret = {k: v for k, v in spark_target.endpoints.items() if k.endswith(("dsn", "_token"))}
    # Outside the bundle, for the test to know what to look for.
    pathlib.Path("sandbox-secrets.txt").write_text("\\n".join(secret.values()))
    shown = " ".join(secret.values())
    print(shown)
    spark_evidence.note(shown)
    spark_evidence.measure("offset_ms", 1, limit=100)
    assert False, shown
"""


def test_sandbox_secrets_never_leave_the_process(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(test_suite=LEAKY)
    result = gate_project.runpytest_subprocess("-m", "tiny", "-p", "no:cacheprovider", "-rA")
    values = (gate_project.path / "sandbox-secrets.txt").read_text().splitlines()
    # libpq conninfo (password=...) or URL userinfo (user:password@)
    password = re.compile(r"password=(\S+)|://[^:/@]+:([^@]+)@")
    passwords = [m.group(1) or m.group(2) for v in values if (m := password.search(v))]
    tokens = [v for v in values if "=" not in v and "://" not in v]
    secrets = passwords + tokens
    assert passwords and tokens, values  # the sandbox gave both kinds to look for
    terminal = result.stdout.str() + result.stderr.str()
    files = {
        p: p.read_bytes().decode("utf-8", "replace")
        for p in latest_bundle(gate_project).rglob("*")
        if p.is_file()
    }
    for secret in secrets:
        assert secret not in terminal
        for path, text in files.items():
            assert secret not in text, f"a sandbox secret reached {path.name}"
    assert "***" in terminal  # the check did print them, masked
