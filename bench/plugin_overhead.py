"""Plugin overhead: a generated suite of trivial tests, with and without the gate's bundle.

Both runs write JUnit and a self-contained pytest-html report; the "with" run also writes the
signed evidence bundle. Prints the medians of N repeats, their ratio (target <= 1.05), and the
median time of `spark-gate verify` on the bundle (target < 1 s).

    .venv/bin/python bench/plugin_overhead.py [--tests 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKLIST = """
[gates]
go_nogo = "benchmark gate"
[[item]]
id = "G1"
title = "trivial"
gates = ["go_nogo"]
waivable = true
sub_checks = ["trivial"]
"""

# Without the plugin (-p no:spark) the tests still ask for `spark_evidence`: a stand-in that
# records nothing keeps the two runs' tests identical.
CONFTEST = """
import pytest


class _NoEvidence:
    def check(self, *args, **kwargs):
        return None


class _StandIn:
    @pytest.fixture
    def spark_evidence(self):
        return _NoEvidence()


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("spark"):
        config.pluginmanager.register(_StandIn(), "spark-evidence-stand-in")
"""


def make_suite(folder: Path, tests: int) -> None:
    (folder / "ops").mkdir()
    (folder / "ops/checklist.toml").write_text(CHECKLIST)
    (folder / "conftest.py").write_text(CONFTEST)
    per_file = 500
    for f in range(0, tests, per_file):
        body = ["import pytest", ""]
        for n in range(f, min(f + per_file, tests)):
            body += [
                '@pytest.mark.go_nogo("G1")',
                f"def test_{n}(spark_evidence):",
                '    spark_evidence.check("trivial", 0, limit=1)',
                "",
            ]
        (folder / f"test_gen_{f // per_file:03d}.py").write_text("\n".join(body))


def timed(cmd: list[str], cwd: Path, cpu: list[float] | None = None) -> float:
    """Wall seconds of the command; its CPU seconds (user + system) are appended to ``cpu``:
    on a shared machine the CPU time of the run itself is the steadier of the two."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0,):
        sys.exit(f"benchmark run failed ({proc.returncode}):\n{proc.stdout[-2000:]}")
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_suite(folder, args.tests)
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "go_nogo"]
        reports = [
            "--junitxml",
            "out/junit.xml",
            "--html",
            "out/report.html",
            "--self-contained-html",
        ]
        with_plugin, without, cpu_with, cpu_without = [], [], [], []
        # Interleaved in alternating order (ABBA), so drift on a shared machine hits both.
        for n in range(args.repeats):
            runs = [
                lambda: without.append(
                    timed([*base, "-p", "no:spark", *reports], folder, cpu_without)
                ),
                lambda: with_plugin.append(timed([*base, *reports], folder, cpu_with)),
            ]
            for run in runs if n % 2 == 0 else reversed(runs):
                run()
        bundles = sorted((folder / "reports/dev").iterdir())
        verify = [
            timed([sys.executable, "-m", "pytest_spark.cli", "verify", str(b)], folder)
            for b in bundles[-args.repeats :]
        ]
    m_with, m_without = statistics.median(with_plugin), statistics.median(without)
    print(f"tests: {args.tests}, repeats: {args.repeats}")
    print(f"without plugin (-p no:spark): median {m_without:.2f} s  runs {without}")
    print(f"with signed bundle:           median {m_with:.2f} s  runs {with_plugin}")
    print(f"ratio with/without: {m_with / m_without:.3f} (target <= 1.05)")
    c_with, c_without = statistics.median(cpu_with), statistics.median(cpu_without)
    print(f"CPU seconds (user+sys): without {c_without:.2f}, with {c_with:.2f}")
    print(f"CPU ratio with/without: {c_with / c_without:.3f}")
    print(f"spark-gate verify: median {statistics.median(verify):.3f} s (target < 1 s)")


if __name__ == "__main__":
    main()
