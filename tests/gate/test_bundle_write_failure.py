"""A bundle that cannot be written or signed is NO-GO with a clear error, never a printed GO.

The faults are injected at the bundle's own write and sign calls, in a subprocess so that the
patch cannot leak into this test process: ENOSPC is what a full disk raises there.
"""

from __future__ import annotations

import pytest

FAULT = """
import errno
import pytest_spark.evidence.bundle as bundle_module
import pytest_spark.signing as signing_module

def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

def pytest_configure(config):
    if "{what}" == "write":
        original = bundle_module.Bundle.write_bytes
        def write_bytes(self, name, data):
            if name == "verdict.json":
                _full()
            return original(self, name, data)
        bundle_module.Bundle.write_bytes = write_bytes
    else:
        signing_module.sign_bundle = _full
"""


@pytest.mark.parametrize("what", ["write", "sign"])
def test_a_full_disk_is_no_go(gate_project: pytest.Pytester, what: str) -> None:
    gate_project.makeconftest(FAULT.replace("{what}", what))
    result = gate_project.runpytest_subprocess("-m", "tiny", "-p", "no:cacheprovider")
    output = result.stdout.str()
    assert result.ret == 1, output
    assert "No space left on device" in output
    assert "bundle is incomplete" in output
    assert output.rstrip().splitlines()[-1].strip("= ") == "SPARK GATE tiny: NO-GO"
    assert "SPARK GATE tiny: GO" not in output


def test_an_unwritable_evidence_dir_is_a_usage_error(gate_project: pytest.Pytester) -> None:
    (gate_project.path / "reports").write_text("a file where the bundles should go\n")
    result = gate_project.runpytest("-m", "tiny", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cannot create the evidence bundle*--spark-evidence-dir*"])
    assert "SPARK GATE tiny: GO" not in result.stdout.str()
