"""The stateful side of the gate: claims at collection, outcomes per test, the bundle at the end.

One ``GateRun`` is registered per run while a gate is in play. Under pytest-xdist the workers
collect and run (claims and evidence ride on their reports) and only the controller writes the
bundle, as junitxml and pytest-html do.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import signal
import threading
from collections.abc import Callable, Generator, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_spark import gate as gate_logic
from pytest_spark import report as report_text
from pytest_spark import signing
from pytest_spark.checklist import Checklist
from pytest_spark.config import SparkConfig
from pytest_spark.evidence.bundle import Bundle, CheckRecord, release_tag, ritual_files
from pytest_spark.evidence.records import CheckEvidence, Inconclusive, Measurement
from pytest_spark.evidence.redact import Redactor
from pytest_spark.waivers import Waiver

CLAIM_MARKERS = frozenset(
    {"blind_spot", "go_nogo", "money", "contract", "rollback", "canary", "chaos"}
)
claims_key = pytest.StashKey[tuple[str, ...]]()
evidence_key = pytest.StashKey[CheckEvidence]()
# Set by our own pytest_runtest_call wrapper: the test's body really ran in this process.
call_ran_key = pytest.StashKey[bool]()

# Worst first: how several phases of one test combine into its outcome.
OUTCOME_ORDER = ("error", "failed", "inconclusive", "xpassed", "xfailed", "skipped", "passed")


def claimed_items(item: pytest.Item, checklist: Checklist) -> tuple[str, ...]:
    """Item ids a test claims through its markers; unknown ids are a usage error."""
    ids: list[str] = []
    for marker in item.iter_markers():  # one walk of the node chain, not one per marker name
        name = marker.name
        if name not in CLAIM_MARKERS:
            continue
        for arg in marker.args:
            for item_id in [arg] if isinstance(arg, str) else list(arg):
                if item_id not in checklist.items:
                    raise pytest.UsageError(
                        f"{item.nodeid}: @pytest.mark.{name}({item_id!r}) names an item "
                        f"that is not in {checklist.path}; known ids look like "
                        f"{', '.join(list(checklist.items)[:4])}, ..."
                    )
                if item_id not in ids:
                    ids.append(item_id)
    return tuple(ids)


def judged_measurements(evidence: dict[str, object]) -> tuple[gate_logic.Judged, ...]:
    """The measurements of one test's evidence (as shipped on its report) for the verdict."""
    raw = evidence.get("measurements", [])
    judged = []
    for m in raw if isinstance(raw, list) else []:
        measurement = Measurement(
            str(m["name"]), m["value"], str(m.get("unit") or ""), m.get("limit"), m.get("at_least")
        )
        judged.append(
            gate_logic.Judged(
                measurement.name, measurement.within, measurement.missing, measurement.describe()
            )
        )
    return tuple(judged)


def _worst(a: str, b: str) -> str:
    return a if OUTCOME_ORDER.index(a) <= OUTCOME_ORDER.index(b) else b


def _message(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, lineno, reason)
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0][:300] if crash.message else ""
    return str(longrepr).strip().splitlines()[-1][:300] if longrepr else ""


class GateRun:
    def __init__(
        self,
        config: pytest.Config,
        spark: SparkConfig,
        checklist: Checklist,
        waivers: tuple[Waiver, ...],
        gate: str | None,
        bundle: Bundle | None,
        key: signing.SigningKey | None,
        redactor: Redactor,
        run_id: str,
    ) -> None:
        self.config = config
        self.spark = spark
        self.checklist = checklist
        self.waivers = waivers
        self.gate = gate
        self.bundle = bundle
        self.key = key
        self.redactor = redactor
        self.run_id = run_id
        # Only the controller of a run with a gate in play decides and writes the bundle
        # (not an xdist worker, not --collect-only).
        self.is_controller = (
            gate is not None and bundle is not None and not hasattr(config, "workerinput")
        )
        self.records: dict[str, CheckRecord] = {}
        # nodeid -> claimed items, of the tests selected to run and of those deselected.
        self.selected: dict[str, tuple[str, ...]] = {}
        self.deselected: dict[str, tuple[str, ...]] = {}
        self._not_required_tests: set[str] = set()
        self.blockers: list[str] = []
        self._selecting: dict[str, tuple[str, ...]] = {}
        self.verdict: gate_logic.Verdict | None = None
        self.started = dt.datetime.now(dt.UTC)
        # uri -> sha256 of the checklist, waivers, target and ops/ files when the run began.
        self.inputs_at_start: dict[str, str] = {}

    # -- SIGTERM, how CI cancels a job --------------------------------------------------------

    def pytest_sessionstart(self) -> None:
        # SIGTERM's default kills the process at once: session fixtures (the sandbox) would
        # never stop and no verdict would be written. As an interrupt, pytest tears down and
        # the gate decides NO-GO, exactly as for Ctrl-C.
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._terminated)

    def _terminated(self, signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the teardown
        raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")

    def _restore_sigterm(self) -> None:
        previous = getattr(self, "_previous_sigterm", None)
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
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
            gates = {g for i in ids for g in self._gates_selecting(i)}
            for gate in sorted(gates):
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

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.blockers.append(f"collection error in {report.nodeid or 'the session'}")

    # -- running ----------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        item.stash[call_ran_key] = True
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        claims: tuple[str, ...] = item.stash.get(claims_key, ())
        report.spark_items = list(claims)  # type: ignore[attr-defined]
        if report.when == "call":
            report.spark_call_ran = item.stash.get(call_ran_key, False)  # type: ignore[attr-defined]
        evidence = item.stash.get(evidence_key, None)
        if call.excinfo is not None and call.excinfo.errisinstance(Inconclusive):
            report.spark_inconclusive = str(call.excinfo.value)  # type: ignore[attr-defined]
        if evidence is not None and report.when == "call":
            self._enforce_thresholds(report, evidence)
            report.spark_evidence = evidence.to_json()  # type: ignore[attr-defined]
        self._redact_report(report)
        return report

    def _enforce_thresholds(self, report: pytest.TestReport, evidence: CheckEvidence) -> None:
        # A passing test whose own measurement is out of bounds (or missing) did not pass:
        # the gate does not trust a test that forgot to assert.
        if not report.passed:
            return
        if evidence.out_of_bounds():
            report.outcome = "failed"
            report.longrepr = "measurement out of bounds: " + "; ".join(
                m.describe() for m in evidence.out_of_bounds()
            )
        elif evidence.missing():
            report.outcome = "failed"
            reason = "no data for " + ", ".join(m.name for m in evidence.missing())
            report.longrepr = f"inconclusive: {reason}"
            report.spark_inconclusive = reason  # type: ignore[attr-defined]

    def _redact_report(self, report: pytest.TestReport) -> None:
        # Shape-keeping: a skip's (path, lineno, reason) must stay a tuple (see secrecy).
        from pytest_spark.secrecy import redact_report

        redact_report(report, self.redactor)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = self._outcome(report)
        if outcome is None:
            return
        items = tuple(getattr(report, "spark_items", ()))
        record = self.records.setdefault(report.nodeid, CheckRecord(report.nodeid, items))
        record.duration += report.duration
        if report.when == "call" and getattr(report, "spark_call_ran", False):
            record.call_ran = True
        previous = record.outcome
        record.outcome = _worst(outcome, previous)
        if record.outcome != previous or (outcome != "passed" and not record.message):
            record.message = self.redactor.text(_message(report))
        evidence = getattr(report, "spark_evidence", None)
        if evidence:
            record.evidence = evidence

    @staticmethod
    def _outcome(report: pytest.TestReport) -> str | None:
        xfail = hasattr(report, "wasxfail")
        if report.when == "call":
            if report.passed:
                return "xpassed" if xfail else "passed"
            if report.failed:
                return "inconclusive" if hasattr(report, "spark_inconclusive") else "failed"
            return "xfailed" if xfail else "skipped"
        if report.failed:
            return "error"
        if report.skipped:
            return "xfailed" if xfail else "skipped"
        return "passed" if report.when == "setup" else None

    # -- the end ----------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(
        self, session: pytest.Session, exitstatus: int
    ) -> Generator[None, None, None]:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            # An xdist worker collected and ran; the controller decides from what it hands over.
            workeroutput["spark_selected"] = self.selected
            workeroutput["spark_deselected"] = self.deselected
            workeroutput["spark_blockers"] = self.blockers
        if self.is_controller:
            self.verdict = self._decide(session, exitstatus)
            self._guarded(self._write_evidence, "writing the evidence bundle")
            session.exitstatus = 0 if self.verdict.go else 1
        try:
            return (yield)
        finally:
            # After pytest-html and junitxml wrote their files: scrub them, then sign.
            if self.is_controller and self.verdict is not None:
                self._guarded(self._sign, "signing the evidence bundle")
                session.exitstatus = 0 if self.verdict.go else 1

    def _guarded(self, step: Callable[[], None], what: str) -> None:
        """A bundle that cannot be written or signed (disk full, read-only) is NO-GO, said
        plainly; never a printed GO over an incomplete bundle."""
        try:
            step()
        except OSError as exc:
            where = self.bundle.root if self.bundle is not None else "the bundle"
            self._block(f"{what} failed: {exc.strerror or exc} ({where}); the bundle is incomplete")

    def _block(self, blocker: str) -> None:
        assert self.verdict is not None
        self.blockers.append(blocker)
        self.verdict = replace(
            self.verdict,
            verdict=gate_logic.NO_GO,
            blockers=(*self.verdict.blockers, blocker),
        )

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # Ctrl-C, SIGTERM and pytest.exit() all land here, whatever exit code they ask for.
        what = excinfo.typename
        if what == "Exit":
            what = f"pytest.exit({str(excinfo.value)!r})"
        elif str(excinfo.value):
            what = f"{what} ({excinfo.value})"
        self.blockers.append(f"the run ended early: {what}")

    def pytest_internalerror(self, excrepr: object) -> None:
        self.blockers.append(
            f"pytest internal error: {str(excrepr).strip().splitlines()[-1][:200]}"
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        # Controller under xdist: each worker hands over what it collected and deselected.
        output = getattr(node, "workeroutput", None) or {}
        if error or "spark_selected" not in output:
            name = getattr(node, "gateway", None)
            self.blockers.append(
                f"xdist worker {getattr(name, 'id', '?')} went down without reporting its "
                f"tests ({error or 'no report'})"
            )
            return
        self.selected.update(output["spark_selected"])
        self.deselected.update(output["spark_deselected"])
        self.blockers.extend(b for b in output["spark_blockers"] if b not in self.blockers)

    def _decide(self, session: pytest.Session, exitstatus: int) -> gate_logic.Verdict:
        assert self.gate is not None
        if exitstatus == pytest.ExitCode.INTERRUPTED and not any(
            b.startswith("the run ended early") for b in self.blockers
        ):
            self.blockers.append("the run was interrupted before every test ran")
        elif exitstatus in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
            self.blockers.append(f"pytest ended with {pytest.ExitCode(exitstatus).name}")
        if session.shouldfail or session.shouldstop:
            self.blockers.append(
                f"the run stopped early: {session.shouldfail or session.shouldstop}"
            )
        for option in ("setupplan", "setuponly"):  # --setup-plan implies --setup-only
            if self.config.getoption(option, False):
                flag = "--" + option.replace("setup", "setup-")
                self.blockers.append(f"{flag}: no test body runs, so nothing was measured")
                break
        for record in self.records.values():
            if not record.items and record.outcome in ("failed", "error"):
                self.blockers.append(f"{record.nodeid} {record.outcome} outside any item")
        if self.inputs_at_start:
            from pytest_spark.evidence.inputs import fingerprint

            now = fingerprint(self.spark)
            changed = sorted(
                uri
                for uri in {*now, *self.inputs_at_start}
                if now.get(uri) != self.inputs_at_start.get(uri)
            )
            if changed:
                self.blockers.append(
                    "inputs changed while the run was going on: " + ", ".join(changed)
                )
        dev_signed = self.key is not None and self.key.mode == signing.DEV_SIGNED
        if dev_signed and not self.spark.target.is_sandbox:
            self.blockers.append(
                "dev-signed bundle for a real target: configure --spark-signing-key"
            )
        results = [
            gate_logic.CheckOutcome(
                r.nodeid,
                r.items,
                r.outcome,
                r.message,
                call_ran=r.call_ran,
                measurements=judged_measurements(r.evidence),
            )
            for r in self.records.values()
        ]
        return gate_logic.decide(
            self.checklist,
            self.gate,
            self.spark.release,
            results,
            self.waivers,
            now=dt.datetime.now(dt.UTC),
            conditions=self.spark.target.conditions,
            blockers=self.blockers,
            selected=self.selected,
            deselected=self.deselected,
        )

    @property
    def signing_info(self) -> dict[str, str]:
        if self.key is None:
            return {}
        return {"mode": self.key.mode, "key_fingerprint": self.key.fingerprint}

    def _write_evidence(self) -> None:
        assert self.verdict is not None and self.bundle is not None and self.gate is not None
        now = dt.datetime.now(dt.UTC)
        bundle = self.bundle
        bundle.create()
        bundle.write_text(
            "release_tag.txt",
            release_tag(self.spark.release, self.gate, self.target_name, self.spark.rootdir, now),
        )
        lines = [self._check_line(r.to_json(bundle.root)) for r in self.records.values()]
        bundle.write_bytes("checks.jsonl", ("\n".join(lines) + "\n" if lines else "").encode())
        for name, content in ritual_files(
            self.checklist, self.verdict, self.records.values(), self.signing_info, now
        ).items():
            if isinstance(content, Path):
                bundle.adopt(content, name)
            else:
                bundle.write_text(name, content)
        bundle.write_json(
            "verdict.json",
            {
                **self.verdict.to_json(),
                "run_id": self.run_id,
                "target": self.target_name,
                "signing": self.signing_info,
                "started_utc": self.started.isoformat(timespec="seconds"),
                "finished_utc": now.isoformat(timespec="seconds"),
            },
        )
        latest = self.spark.evidence_dir / "LATEST"
        latest.parent.mkdir(parents=True, exist_ok=True)
        latest.write_text(str(bundle.root) + "\n")

    def _check_line(self, record: dict[str, object]) -> str:
        line = json.dumps(record, sort_keys=True)
        # Redacted before serialising (JSON escaping would hide a secret with a quote from a
        # text scrub); the cheap scrub of the line tells whether there is anything to redact.
        if self.redactor.text(line) == line:
            return line
        return json.dumps(self.redactor.value(record), sort_keys=True)

    def _sign(self) -> None:
        assert self.verdict is not None and self.key is not None and self.bundle is not None
        for option, name in (("htmlpath", "report.html"), ("xmlpath", "junit.xml")):
            # Written by pytest-html and junitxml, maybe to a path of the user's choosing:
            # copy it in if so, and scrub it either way before it is signed.
            chosen = self.config.getoption(option, None)
            # As pytest-html and junitxml do: `--html=~/r.html` is not expanded by the shell.
            path = Path(os.path.expandvars(chosen)).expanduser() if chosen else None
            if path is not None and path.resolve() != (self.bundle.root / name).resolve():
                self.bundle.adopt(path, name)
            else:
                self.bundle.redact_in_place(name)
        from pytest_spark.evidence.inputs import record_inputs
        from pytest_spark.evidence.junit import carry_gate_properties

        verdict = self.verdict
        junit = self.bundle.root / "junit.xml"
        if junit.exists():
            # The bundle's copy, already scrubbed; the values added here are scrubbed as added.
            carry_gate_properties(junit, verdict, self.run_id, self.records, self.redactor.text)
        predicate = {
            "result": "PASSED" if verdict.go else "FAILED",
            "passedTests": [i for i, r in verdict.items.items() if r.status == "PASSED"],
            "warnedTests": [i for i, r in verdict.items.items() if r.status == "WAIVED"],
            "failedTests": [r.id for r in verdict.not_passed()],
            # The files that decided the verdict, by digest: a name alone would let a
            # weakened checklist from outside the repository pass for the real one.
            "configuration": record_inputs(self.bundle, self.spark),
            "spark": {
                **verdict.to_json(),
                "release": verdict.release,
                "gate": verdict.gate,
                "run_id": self.run_id,
                "target": self.target_name,
            },
            "signing": self.signing_info,
        }
        try:
            signing.sign_bundle(self.bundle.root, self.key, predicate)
        except signing.UnsignableBundle as exc:
            # Left unsigned, so verify refuses it; the run says NO-GO and why.
            self._block(str(exc))

    @property
    def target_name(self) -> str:
        target = self.spark.target
        return target.name if target.path is None else f"{target.name} ({target.path.name})"

    @property
    def reproduce(self) -> str:
        markexpr = self.config.option.markexpr
        args = (["-m", markexpr] if markexpr else []) + self.spark.reproduce_args()
        return "pytest " + shlex.join(args)

    # -- what people read ---------------------------------------------------------------------

    def pytest_report_header(self) -> list[str]:
        if not self.is_controller or self.bundle is None:
            return []
        return [
            f"spark gate: {self.gate} · release {self.spark.release} · target "
            f"{self.target_name} · bundle {self.bundle.root}",
            f"spark reproduce: {self.redactor.text(self.reproduce)}",
        ]

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.verdict is None:
            return
        tr = terminalreporter
        tr.write_sep("=", f"spark gate {self.gate}: items")
        for line in report_text.terminal_lines(self.verdict, tr._tw.fullwidth):
            tr.write_line(self.redactor.text(line))
        tr.write_line(f"evidence bundle: {self.bundle.root}")  # type: ignore[union-attr]

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self._restore_sigterm()
        # The verdict is the very last line, after pytest's own "N passed" summary line.
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        if self.verdict is None or terminal is None:
            return
        markup = {"green": True} if self.verdict.go else {"red": True}
        terminal.write_sep("=", report_text.final_line(self.verdict), bold=True, **markup)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: object) -> None:
        if self.is_controller:
            report.title = f"Spark release gate {self.gate} — {self.spark.release}"  # type: ignore[attr-defined]

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        if self.verdict is None or self.bundle is None:
            return
        files = sorted(
            {
                *signing.bundle_files(self.bundle.root),
                "report.html",
                "junit.xml",
                signing.MANIFEST,
                signing.PUBLIC_KEY,
                signing.ENVELOPE,
            }
        )
        prefix.insert(
            0,
            self.redactor.text(
                report_text.signoff_html(
                    self.verdict,
                    target=self.target_name,
                    run_id=self.run_id,
                    signing=self.signing_info,
                    evidence_files=files,
                    reproduce=self.reproduce,
                )
            ),
        )
