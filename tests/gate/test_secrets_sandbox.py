"""The embedded sandbox's own secrets (its DSN passwords and the fault proxy's bearer token)
never reach the bundle or the terminal, even when a check prints every endpoint it got."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import latest_bundle

LEAKY = """
import json
import pathlib
import pytest

@pytest.mark.go_nogo("G1")
def test_a1(spark_target, spark_evidence):
    dsns = [v for k, v in spark_target.endpoints.items() if k.endswith("dsn")]
    declared = list(spark_target.secrets.values())
    # Outside the bundle, for the test to know what to look for.
    pathlib.Path("sandbox-secrets.json").write_text(json.dumps([dsns, declared]))
    shown = " ".join(dsns + declared)
    print(shown)
    spark_evidence.note(shown)
    spark_evidence.check("offset_ms", 1, limit=100)
    assert False, shown
"""


def test_sandbox_secrets_never_leave_the_process(gate_project: pytest.Pytester) -> None:
    gate_project.makepyfile(test_suite=LEAKY)
    result = gate_project.runpytest_subprocess("-m", "tiny", "-p", "no:cacheprovider", "-rA")
    dsns, declared = json.loads((gate_project.path / "sandbox-secrets.json").read_text())
    # libpq conninfo (password=...) or URL userinfo (user:password@)
    password = re.compile(r"password=(\S+)|://[^:/@]+:([^@]+)@")
    passwords = [m.group(1) or m.group(2) for v in dsns if (m := password.search(v))]
    assert passwords and len(declared) > len(set(passwords)), (dsns, len(declared))
    # The sandbox declares every password its DSNs embed (and its token) as a secret: the run
    # redacts what it was told, and mines nothing from the DSNs.
    assert set(passwords) <= set(declared)
    secrets = declared
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
