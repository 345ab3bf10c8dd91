"""The gate reporter: on the controller only, it turns the run into a verdict and a bundle.

It keeps one record per test from the phase reports (under pytest-xdist they arrive from the
workers, with the workers' selection handed over when each one goes down), decides the
verdict at the end of the session, writes the bundle, lets pytest-html and junitxml write
their reports, seals the bundle, and prints the item table and the very last line.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any

import pytest

from pytest_spark import gate as gate_logic
from pytest_spark import report as report_text
from pytest_spark import signing
from pytest_spark.checklist import Checklist
from pytest_spark.config import SparkConfig
from pytest_spark.evidence.bundle import Bundle, CheckRecord
from pytest_spark.evidence.redact import Redactor
from pytest_spark.keys import target_session_key
from pytest_spark.outcomes import judged_measurements, message_of, outcome_of, worst
from pytest_spark.recorder import ClaimRecorder
from pytest_spark.waivers import Waiver


class GateReporter:
    def __init__(
        self,
        config: pytest.Config,
        spark: SparkConfig,
        checklist: Checklist,
        waivers: tuple[Waiver, ...],
        gate: str,
        bundle: Bundle,
        key: signing.SigningKey,
        redactor: Redactor,
        run_id: str,
        recorder: ClaimRecorder,
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
        self.recorder = recorder  # this process's selection, when there are no workers
        self.records: dict[str, CheckRecord] = {}
        self.blockers: list[str] = []
        self.verdict: gate_logic.Verdict | None = None
        self.started = dt.datetime.now(dt.UTC)
        # uri -> sha256 of the checklist, waivers, target and ops/ files when the run began.
        self.inputs_at_start: dict[str, str] = {}
        self._workers = False

    # -- what happens during the run ------------------------------------------------------------

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.blockers.append(f"collection error in {report.nodeid or 'the session'}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = outcome_of(report)
        if outcome is None:
            return
        items = tuple(getattr(report, "spark_items", ()))
        record = self.records.setdefault(report.nodeid, CheckRecord(report.nodeid, items))
        record.duration += report.duration
        if report.when == "call" and getattr(report, "spark_call_ran", False):
            record.call_ran = True
        previous = record.outcome
        record.outcome = worst(outcome, previous)
        if record.outcome != previous or (outcome != "passed" and not record.message):
            record.message = self.redactor.text(message_of(report))
        evidence = getattr(report, "spark_evidence", None)
        if evidence:
            record.evidence = evidence

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # Ctrl-C, SIGTERM and pytest.exit() all land here, whatever exit code they ask for.
        what = excinfo.typename
        if what == "Exit":
            what = f"pytest.exit({str(excinfo.value)!r})"
        elif str(excinfo.value):
            what = f"{what} ({excinfo.value})"
        self.blockers.append(f"the run ended early: {what}")

    def pytest_internalerror(self, excrepr: object) -> None:
        last = str(excrepr).strip().splitlines()[-1][:200]
        self.blockers.append(f"pytest internal error: {last}")

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        # The workers attach into this bundle and name this run.
        self._workers = True
        node.workerinput["spark_bundle_dir"] = str(self.bundle.root)
        node.workerinput["spark_run_id"] = self.run_id

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        # Each worker hands over what it selected and deselected when it goes down.
        output = getattr(node, "workeroutput", None) or {}
        if error or "spark_selected" not in output:
            name = getattr(getattr(node, "gateway", None), "id", "?")
            self.blockers.append(
                f"xdist worker {name} went down without reporting its tests "
                f"({error or 'no report'})"
            )
            return
        self.recorder.selected.update(output["spark_selected"])
        self.recorder.deselected.update(output["spark_deselected"])
        self.blockers.extend(b for b in output["spark_blockers"] if b not in self.blockers)

    # -- the end ----------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(
        self, session: pytest.Session, exitstatus: int
    ) -> Generator[None, None, None]:
        from pytest_spark.evidence.ritual import write_run_files

        verdict = self.verdict = self._decide(session, exitstatus)
        run = {
            **self._identity(),
            "signing": self.signing_info,
            "started_utc": self.started.isoformat(timespec="seconds"),
        }
        self._guarded(
            lambda: write_run_files(
                self.bundle,
                self.checklist,
                verdict,
                self.records.values(),
                run,
                self.spark.rootdir,
                dt.datetime.now(dt.UTC),
            ),
            "writing the evidence bundle",
        )
        self._guarded(self._point_latest_here, "writing reports/LATEST")
        session.exitstatus = 0 if self.verdict.go else 1
        try:
            return (yield)
        finally:
            # After pytest-html and junitxml wrote their files: take them in, then sign.
            self._guarded(self._seal, "signing the evidence bundle")
            session.exitstatus = 0 if self.verdict.go else 1

    def _seal(self) -> None:
        from pytest_spark.evidence.seal import seal, take_in_reports

        assert self.verdict is not None
        take_in_reports(self.config, self.bundle)
        try:
            notes = self.config.stash[target_session_key].notes
            seal(
                self.bundle,
                self.key,
                self.spark,
                self.verdict,
                self.records,
                self._identity(),
                notes,
            )
        except signing.UnsignableBundle as exc:
            # Left unsigned, so verify refuses it; the run says NO-GO and why.
            self._block(str(exc))

    def _point_latest_here(self) -> None:
        latest = self.spark.evidence_dir / "LATEST"
        latest.parent.mkdir(parents=True, exist_ok=True)
        latest.write_text(str(self.bundle.root) + "\n")

    def _guarded(self, step: Callable[[], None], what: str) -> None:
        """A bundle that cannot be written or signed (disk full, read-only) is NO-GO, said
        plainly; never a printed GO over an incomplete bundle."""
        try:
            step()
        except OSError as exc:
            why = exc.strerror or exc
            self._block(f"{what} failed: {why} ({self.bundle.root}); the bundle is incomplete")

    def _block(self, blocker: str) -> None:
        assert self.verdict is not None
        self.blockers.append(blocker)
        self.verdict = replace(
            self.verdict, verdict=gate_logic.NO_GO, blockers=(*self.verdict.blockers, blocker)
        )

    def _decide(self, session: pytest.Session, exitstatus: int) -> gate_logic.Verdict:
        self.blockers.extend(self._session_blockers(session, exitstatus))
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
            blockers=self.blockers + self.recorder.blockers,
            selected=self.recorder.selected,
            deselected=self.recorder.deselected,
        )

    def _session_blockers(self, session: pytest.Session, exitstatus: int) -> list[str]:
        """What makes the run as a whole NO-GO, whatever its items did."""
        found = []
        ended_early = any(b.startswith("the run ended early") for b in self.blockers)
        if exitstatus == pytest.ExitCode.INTERRUPTED and not ended_early:
            found.append("the run was interrupted before every test ran")
        elif exitstatus in (pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
            found.append(f"pytest ended with {pytest.ExitCode(exitstatus).name}")
        if session.shouldfail or session.shouldstop:
            found.append(f"the run stopped early: {session.shouldfail or session.shouldstop}")
        for option in ("setupplan", "setuponly"):  # --setup-plan implies --setup-only
            if self.config.getoption(option, False):
                flag = "--" + option.replace("setup", "setup-")
                found.append(f"{flag}: no test body runs, so nothing was measured")
                break
        found += [
            f"{r.nodeid} {r.outcome} outside any item"
            for r in self.records.values()
            if not r.items and r.outcome in ("failed", "error")
        ]
        if self.inputs_at_start:
            from pytest_spark.evidence.inputs import fingerprint

            now = fingerprint(self.spark)
            was = self.inputs_at_start
            changed = sorted(u for u in {*now, *was} if now.get(u) != was.get(u))
            if changed:
                found.append("inputs changed while the run was going on: " + ", ".join(changed))
        if self.key.mode == signing.DEV_SIGNED and not self.spark.target.is_sandbox:
            found.append("dev-signed bundle for a real target: configure --spark-signing-key")
        return found

    # -- who the run is ---------------------------------------------------------------------

    def _identity(self) -> dict[str, object]:
        identity: dict[str, object] = {"run_id": self.run_id, "target": self.target_name}
        # Signed with the verdict: a later stage finds this one's bundle by gate and stage.
        if self.spark.stage is not None:
            identity["stage"] = self.spark.stage
        return identity

    @property
    def signing_info(self) -> dict[str, str]:
        return {"mode": self.key.mode, "key_fingerprint": self.key.fingerprint}

    @property
    def target_name(self) -> str:
        target = self.spark.target
        return target.name if target.path is None else f"{target.name} ({target.path.name})"

    @property
    def reproduce(self) -> str:
        """The command that decides this run again: paths, selection, and every setting."""
        option = self.config.option
        args = [*self.config.args]
        if option.markexpr:
            args += ["-m", option.markexpr]
        if option.keyword:
            args += ["-k", option.keyword]
        spark = self.spark
        args += ["--spark-release", spark.release]
        args += ["--spark-target", str(spark.target.path or spark.target.kind)]
        for flag, path in (
            ("--spark-checklist", spark.checklist_path),
            ("--spark-waivers", spark.waivers_path),
        ):
            args += [flag, _relative(path, spark.rootdir)]
        if spark.stage is not None:
            args += ["--spark-stage", str(spark.stage)]
        if spark.stage_since is not None:
            args += ["--spark-stage-since", f"{spark.stage_since:.3f}"]
        for extra in self.config.hook.pytest_spark_reproduce_args(config=self.config):
            args += extra
        return "pytest " + shlex.join(args)

    # -- what people read ---------------------------------------------------------------------

    def pytest_report_header(self) -> list[str]:
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
        tr.write_line(f"evidence bundle: {self.bundle.root}")

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # The verdict is the very last line, after pytest's own "N passed" summary line.
        terminal = config.pluginmanager.get_plugin("terminalreporter")
        if self.verdict is None or terminal is None:
            return
        markup = {"green": True} if self.verdict.go else {"red": True}
        terminal.write_sep("=", report_text.final_line(self.verdict), bold=True, **markup)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: object) -> None:
        report.title = f"Spark release gate {self.gate} — {self.spark.release}"  # type: ignore[attr-defined]

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        if self.verdict is None:
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
        signoff = report_text.signoff_html(
            self.verdict,
            target=self.target_name,
            run_id=self.run_id,
            signing=self.signing_info,
            evidence_files=files,
            reproduce=self.reproduce,
        )
        prefix.insert(0, self.redactor.text(signoff))


def _relative(path: object, rootdir: object) -> str:
    from pathlib import Path

    try:
        return Path(str(path)).relative_to(Path(str(rootdir))).as_posix()
    except ValueError:
        return str(path)
