"""The claim and outcome recorder: what every process of a gate run does for the verdict.

It runs on the controller and on each pytest-xdist worker alike: it reads the claims at
collection (and adds the gate markers the registry implies, before ``-m`` deselects), keeps
what was selected and deselected, marks the tests whose body really ran, judges each test's
checks once, and puts claims and evidence on the reports. Under xdist the reports travel to
the controller, and the selection is handed over at the end in ``workeroutput``; deciding,
writing and signing belong to the reporter (``reporter.py``), which exists on the
controller only.
"""

from __future__ import annotations

import base64
import contextlib
import signal
import threading
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import pytest

from pytest_spark.checklist import Checklist
from pytest_spark.claims import claimed_items
from pytest_spark.config import SparkConfig
from pytest_spark.evidence.bundle import Bundle
from pytest_spark.evidence.records import CheckEvidence, Inconclusive
from pytest_spark.evidence.redact import Redactor
from pytest_spark.keys import call_ran_key, claims_key, evidence_key

# Imported here, not in the hook: pact-python's pytest plugin wraps builtins.__import__, which
# makes every import statement run per test measurably slower.
from pytest_spark.secrecy import redact_report


class ClaimRecorder:
    def __init__(
        self,
        config: pytest.Config,
        spark: SparkConfig,
        checklist: Checklist,
        gate: str | None,
        bundle: Bundle | None,
        redactor: Redactor,
    ) -> None:
        self.config = config
        self.spark = spark
        self.checklist = checklist
        self.gate = gate
        self.bundle = bundle  # where attachments go (the controller's bundle under xdist)
        self.redactor = redactor
        # nodeid -> claimed items, of the tests selected to run and of those deselected.
        self.selected: dict[str, tuple[str, ...]] = {}
        self.deselected: dict[str, tuple[str, ...]] = {}
        self.blockers: list[str] = []
        self._not_required_tests: set[str] = set()
        self._selecting: dict[str, tuple[str, ...]] = {}
        self._previous_sigterm: Any = None
        # The test this process is running now (tests run one at a time in a process).
        self.running: pytest.Item | None = None

    # -- SIGTERM, how CI cancels a job ------------------------------------------------------

    def pytest_sessionstart(self) -> None:
        # SIGTERM's default kills the process at once: session fixtures (the sandbox) would
        # never stop and no verdict would be written. As an interrupt, pytest tears down and
        # the gate decides NO-GO, exactly as for Ctrl-C.
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._terminated)

    def _terminated(self, signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the teardown
        raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")

    def pytest_unconfigure(self) -> None:
        if self._previous_sigterm is not None and (
            threading.current_thread() is threading.main_thread()
        ):
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    # -- collection -------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        # tryfirst: the implied gate markers must be on the items before `-m` deselects.
        not_required = []
        for item in items:
            ids = claimed_items(item, self.checklist)
            item.stash[claims_key] = ids
            for gate in sorted({g for i in ids for g in self._gates_selecting(i)}):
                item.add_marker(gate)
            if ids and all(self._not_required(i) for i in ids):
                not_required.append(item)
        if not_required:
            # A test of an item this target does not require (K3 without a Pact Broker) is
            # not run at all: the verdict lists the item as NOT-REQUIRED, never as a skip.
            self._not_required_tests.update(i.nodeid for i in not_required)
            config.hook.pytest_deselected(items=not_required)
            dropped = set(not_required)
            items[:] = [i for i in items if i not in dropped]

    def _not_required(self, item_id: str) -> bool:
        condition = self.checklist.items[item_id].required_when
        return condition is not None and condition not in self.spark.target.conditions

    def _gates_selecting(self, item_id: str) -> tuple[str, ...]:
        # Memoised: the registry walk is the same for each of thousands of tests.
        if item_id not in self._selecting:
            self._selecting[item_id] = self.checklist.gates_selecting(item_id)
        return self._selecting[item_id]

    def pytest_deselected(self, items: Iterable[pytest.Item]) -> None:
        for item in items:
            ids = item.stash.get(claims_key, ())
            if ids and item.nodeid not in self._not_required_tests:
                self.deselected[item.nodeid] = ids

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # After every deselection: what is left is what must run for each item.
        self.selected = {i.nodeid: i.stash.get(claims_key, ()) for i in session.items}
        if self.gate is None:
            claiming = [n for n, ids in self.selected.items() if ids]
            if claiming:
                raise pytest.UsageError(
                    f"spark: {len(claiming)} selected test(s) claim checklist items (e.g. "
                    f"{claiming[0]}) but -m names no gate, so no verdict would be decided; "
                    f"run one gate, e.g. `pytest -m go_nogo` ({', '.join(self.checklist.gates)})"
                )

    # -- running ----------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.running = item

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        item.stash[call_ran_key] = True

    @pytest.fixture
    def spark_evidence(self) -> CheckEvidence:
        """Record checks, measurements, notes and attachments for this test's checklist items."""
        # A method of the recorder rather than a fixture asking for `request` or `pytestconfig`:
        # on pytest 9 either costs a FixtureDef or a finalizer per test (inspect.signature and a
        # teardown hook call), which alone made the gate ~10 % slower on a 10,000-test run.
        # The recorder knows the test being set up in this process (tests run one at a time).
        if self.running is None:
            raise RuntimeError("spark_evidence is a function fixture: no test is running")
        return self.evidence_for(self.running)

    def evidence_for(self, item: pytest.Item) -> CheckEvidence:
        """The test's evidence record, made on first use and kept on the item for its report."""
        evidence = item.stash.get(evidence_key, None)
        if evidence is None:
            evidence = CheckEvidence(
                nodeid=item.nodeid,
                items=item.stash.get(claims_key, ()),
                attachments_dir=self.bundle.attachments_dir if self.bundle is not None else None,
                redactor=self.redactor,
            )
            item.stash[evidence_key] = evidence
        return evidence

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        claims: tuple[str, ...] = item.stash.get(claims_key, ())
        report.spark_items = list(claims)  # type: ignore[attr-defined]
        if report.when == "call":
            report.spark_call_ran = item.stash.get(call_ran_key, False)  # type: ignore[attr-defined]
        if call.excinfo is not None and call.excinfo.errisinstance(Inconclusive):
            report.spark_inconclusive = str(call.excinfo.value)  # type: ignore[attr-defined]
        evidence = item.stash.get(evidence_key, None)
        if evidence is not None and report.when == "call":
            judge_checks(report, evidence)
            report.spark_evidence = evidence.to_json()  # type: ignore[attr-defined]
            show_charts(report, evidence)
        # Shape-keeping: a skip's (path, lineno, reason) must stay a tuple (see secrecy).
        redact_report(report, self.redactor)
        return report

    # -- the end ----------------------------------------------------------------------------

    def pytest_sessionfinish(self) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            # An xdist worker collected and ran; the controller decides from what it hands over.
            workeroutput["spark_selected"] = self.selected
            workeroutput["spark_deselected"] = self.deselected
            workeroutput["spark_blockers"] = self.blockers


def show_charts(report: pytest.TestReport, evidence: CheckEvidence) -> None:
    """The charts a test drew (its ``.svg`` attachments, e.g. a canary metric over its
    window) shown with the test in the HTML report, embedded so the report stays one file."""
    charts = [(name, path) for name, path in evidence.attachments.items() if name.endswith(".svg")]
    if not charts:
        return
    try:
        from pytest_html import extras
    except ImportError:  # no HTML report to show them in; they stay in the bundle
        return
    shown = getattr(report, "extras", None) or []
    for name, path in charts:
        with contextlib.suppress(OSError):
            data = base64.b64encode(Path(path).read_bytes()).decode()
            shown.append(extras.svg(data, name=name.removesuffix(".svg")))
    report.extras = shown  # type: ignore[attr-defined]


def judge_checks(report: pytest.TestReport, evidence: CheckEvidence) -> None:
    """The one judgement of a test's checks: a test whose check is outside its limit failed,
    whatever its asserts said, and one with a value it could not measure is inconclusive.
    Every failing check is listed, each with its reason, not only the first."""
    failing = evidence.out_of_bounds()
    shown = "; ".join(f"{m.describe()}: {m.why or 'outside its limit'}" for m in failing)
    if report.passed and failing:
        report.outcome = "failed"
        report.longrepr = f"check(s) outside their limits: {shown}"
    elif report.passed and evidence.missing():
        reason = "no data for " + ", ".join(m.name for m in evidence.missing())
        report.outcome = "failed"
        report.longrepr = f"inconclusive: {reason}"
        report.spark_inconclusive = reason  # type: ignore[attr-defined]
    elif failing:
        report.sections.append(("spark checks outside their limits", shown))
