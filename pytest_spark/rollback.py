"""``spark-gate rollback``: move a release's traffic back to the previous release, and leave
signed evidence of every step.

The steps, in order; a rollback passes (exit 0) only when all pass within five minutes:

1. pre-checks: the version serving now is read from the deployment (``api_url``), the previous
   one is ``--to`` or what the stable track serves (``stable_api_url``), and they differ; the
   deployer is configured and, when it is the fault proxy, its destination serves the previous
   release; every migration since the previous release is additive; the stage is in the canary
   plan; a notification webhook is configured. A failed pre-check switches nothing.
2. a snapshot before: the six stage metrics on both tracks, the headroom, the rollback
   triggers pending or firing, the serving version (``metrics_before_rollback_<UTC>.txt``);
3. the switch: the target's ``rollback_command`` (a template: ``{release}``, ``{to}``,
   ``{stage}``, ``{reason}``), or the sandbox's fault proxy moving ``rollback_proxy`` to
   ``rollback_upstream``; a dry run records what it would do and does nothing;
4. confirmation: the previous version serves, ``/health`` answers 200, no trigger fires, and
   a bounded burst of reads stays within S1's and S2's limits; the recovery time is from the
   switch to here;
5. a snapshot after, 6. a Slack-compatible notification (``rollback_webhook_url``; a failed
   notification fails the rollback: nobody would know), 7. the signed record
   ``rollback_<UTC>.txt`` with its snapshots in ``<evidence dir>/<release>/rollback-<UTC>/``.

The record is written whatever happened: a refused or failed rollback is evidence too.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pytest_spark.canary_plan import load_plan
from pytest_spark.config import Target, TargetConfigError
from pytest_spark.signing import SigningKey, sign_bundle
from pytest_spark.verify import ROLLBACK_RECORD

BUDGET_S = 300.0
CONFIRM_TIMEOUT_S = 120.0
STEPS = ("pre-checks", "before snapshot", "switch", "confirmation", "after snapshot",
         "notification", "record")  # fmt: skip


# Keys a rollback reads when the target has them (docs/rollback.md).
OPTIONAL_KEYS = (
    "stable_api_url", "rollback_webhook_url", "rollback_command", "toxiproxy_url",
    "rollback_proxy", "rollback_upstream", "canary_selector", "stable_selector",
    "previous_release_migration", "migrations_dir",
)  # fmt: skip


@dataclass(frozen=True)
class RollbackRequest:
    release: str
    reason: str
    stage: int
    to: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class Deployment:
    """What a rollback reaches: the target's keys (``docs/rollback.md``)."""

    name: str
    api_url: str
    prometheus_url: str
    stable_api_url: str = ""
    webhook_url: str = ""
    command: str = ""
    toxiproxy_url: str = ""
    toxiproxy_token: str = field(default="", repr=False)
    proxy: str = ""
    upstream: str = ""
    canary_selector: str = 'track="canary"'
    stable_selector: str = 'track="stable"'
    # The newest migration the previous release shipped with, and where the migrations are.
    previous_release_migration: str = ""
    migrations_dir: str = ""

    @classmethod
    def of(cls, target: Target) -> Deployment:
        def optional(key: str) -> str:
            """An endpoint, or a secret (a chat webhook URL carries its token)."""
            try:
                return target.require(key)
            except TargetConfigError:
                return ""

        e = {key: optional(key) for key in OPTIONAL_KEYS}
        return cls(
            name=target.name,
            api_url=target.require("api_url"),
            prometheus_url=target.require("prometheus_url"),
            stable_api_url=e.get("stable_api_url", ""),
            webhook_url=e.get("rollback_webhook_url", ""),
            command=e.get("rollback_command", ""),
            toxiproxy_url=e.get("toxiproxy_url", ""),
            toxiproxy_token=optional("toxiproxy_token"),
            proxy=e.get("rollback_proxy", ""),
            upstream=e.get("rollback_upstream", ""),
            canary_selector=e.get("canary_selector") or cls.canary_selector,
            stable_selector=e.get("stable_selector") or cls.stable_selector,
            previous_release_migration=e.get("previous_release_migration", ""),
            migrations_dir=e.get("migrations_dir", ""),
        )

    def switch_text(self, request: RollbackRequest, to: str) -> str:
        if self.command:
            return shlex.join(self.command_argv(request, to))
        if self.proxy and self.upstream:
            return f"point the fault proxy's {self.proxy} at {self.upstream}"
        return "nothing: no deployer configured"

    def command_argv(self, request: RollbackRequest, to: str) -> list[str]:
        values = {"release": request.release, "to": to, "stage": request.stage,
                  "reason": request.reason}  # fmt: skip
        return [part.format(**values) for part in shlex.split(self.command)]


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    seconds: float

    def line(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'FAILED'} ({self.seconds:.1f} s) {self.detail}"


@dataclass
class RollbackRun:
    request: RollbackRequest
    target: str
    started: dt.datetime
    steps: list[Step] = field(default_factory=list)
    serving: str | None = None
    previous: str | None = None
    recovery_s: float | None = None
    precheck_problems: list[str] = field(default_factory=list)
    snapshot_problems: list[str] = field(default_factory=list)
    record_dir: Path | None = None
    seconds: float = 0.0

    @property
    def stamp(self) -> str:
        return self.started.strftime("%Y%m%dT%H%M%SZ")

    @property
    def ok(self) -> bool:
        done = [s.name for s in self.steps]
        return done == list(STEPS) and all(s.ok for s in self.steps) and self.seconds <= BUDGET_S

    def outcome(self) -> str:
        """Of the steps taken so far: the notification and the record state it before the end."""
        if all(s.ok for s in self.steps) and self.seconds <= BUDGET_S:
            return "REHEARSED" if self.request.dry_run else "ROLLED BACK"
        return "FAILED"

    def to_json(self) -> dict[str, object]:
        r = self.request
        return {
            "release": r.release, "reason": r.reason, "stage": r.stage, "dry_run": r.dry_run,
            "target": self.target, "started": self.started.isoformat(), "outcome": self.outcome(),
            "from_version": self.serving, "to_version": self.previous,
            "recovery_s": self.recovery_s, "seconds": round(self.seconds, 3),
            "budget_s": BUDGET_S, "precheck_problems": self.precheck_problems,
            "snapshot_problems": self.snapshot_problems,
            "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail,
                       "seconds": round(s.seconds, 3)} for s in self.steps],
        }  # fmt: skip

    def text(self) -> str:
        r = self.request
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        lines = [
            f"rollback of release {r.release}: {self.outcome()}",
            f"target: {self.target}; stage: {r.stage} %; reason: {r.reason}"
            f"{'; DRY RUN (nothing switched)' if r.dry_run else ''}",
            f"from {self.serving or '?'} to {self.previous or '?'}; recovery time: {recovery}",
            f"started {self.started.isoformat()}; took {self.seconds:.1f} s (budget {BUDGET_S:g})",
            "", *(s.line() for s in self.steps),
        ]  # fmt: skip
        return "\n".join(lines) + "\n"


class Rollback:
    """One rollback (or dry run) of ``request`` on ``deployment``; :meth:`run` does it all."""

    def __init__(
        self,
        request: RollbackRequest,
        deployment: Deployment,
        ops_dir: Path,
        evidence_dir: Path,
        key: SigningKey,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.request = request
        self.deployment = deployment
        self.ops_dir = ops_dir
        self.evidence_dir = evidence_dir
        self.key = key
        self.say = say
        self.run_state = RollbackRun(request, deployment.name, dt.datetime.now(dt.UTC))
        self.began = time.monotonic()
        self.snapshots: dict[str, str] = {}

    def run(self) -> RollbackRun:
        state = self.run_state
        self._step("pre-checks", self._prechecks)
        self._step("before snapshot", lambda: self._snapshot("before"))
        if state.steps[0].ok:
            switched_at = time.monotonic()
            if self._step("switch", self._switch) is not None:
                self._step("confirmation", lambda: self._confirm(switched_at))
            else:
                self._skip("confirmation", "not run: the switch failed")
        else:
            # Nothing moves after a failed pre-check: switching blind is how outages grow.
            self._skip("switch", "not run: the pre-checks failed")
            self._skip("confirmation", "not run: the pre-checks failed")
        self._step("after snapshot", lambda: self._snapshot("after"))
        state.seconds = time.monotonic() - self.began
        self._step("notification", self._notify)
        state.seconds = time.monotonic() - self.began
        self._step("record", self._record)
        return state

    def _skip(self, name: str, why: str) -> None:
        self.run_state.steps.append(Step(name, False, why, 0.0))
        self.say(f"      {self.run_state.steps[-1].line()}")

    def _step(self, name: str, action: Callable[[], object]) -> object:
        """Run one step; an exception is the step failing, with what was raised."""
        started = time.monotonic()
        self.say(f"[{STEPS.index(name) + 1}/{len(STEPS)}] {name} ...")
        try:
            result = action()
            ok, detail = (False, str(result)) if isinstance(result, Failure) else (True, "")
            detail = detail or (result if isinstance(result, str) else "")
        except Exception as exc:  # every failure of a step is recorded, none escapes
            result, ok, detail = None, False, f"{type(exc).__name__}: {exc}"
        step = Step(name, ok, detail, time.monotonic() - started)
        self.run_state.steps.append(step)
        self.say(f"      {step.line()}")
        return result if ok else None

    # --- the steps -------------------------------------------------------------------------

    def _prechecks(self) -> str | Failure:
        from pytest_spark.probes import serving

        d, r, state = self.deployment, self.request, self.run_state
        problems = state.precheck_problems
        state.serving = serving.serving_version(d.api_url)
        if state.serving is None:
            problems.append(f"no serving version on {d.api_url}/metrics (spark_build_info)")
        stable = serving.serving_version(d.stable_api_url) if d.stable_api_url else None
        state.previous = r.to or stable
        if state.previous is None:
            problems.append("no previous release to roll back to: pass --to or set stable_api_url")
        elif state.previous == state.serving:
            problems.append(f"the previous release {state.previous} is what serves now")
        if d.command:
            pass  # a deployer of its own: what it switches to is seen at confirmation
        elif d.proxy and d.upstream and d.toxiproxy_url:
            destination = serving.serving_version(f"http://{d.upstream}")
            if state.previous is not None and destination != state.previous:
                problems.append(
                    f"the deployer's destination {d.upstream} serves {destination or 'nothing'}"
                    f", not the previous release {state.previous}"
                )
        else:
            problems.append("no deployer: set rollback_command (or rollback_proxy and "
                            "rollback_upstream with toxiproxy_url)")  # fmt: skip
        problems += self._migration_problems()
        plan = load_plan(self.ops_dir)
        if plan.stage(r.stage) is None:
            problems.append(f"stage {r.stage} % is not in the canary plan {plan.percents}")
        if not d.webhook_url:
            problems.append("no rollback_webhook_url: a rollback nobody hears of is a failure")
        if problems:
            return Failure("; ".join(problems))
        return f"serving {state.serving}, previous {state.previous}, stage {r.stage} % planned"

    def _migration_problems(self) -> list[str]:
        """The previous release's code runs on today's schema after the switch: every
        migration it did not ship with must be additive."""
        from pytest_spark.probes.migrations import non_additive_since

        d = self.deployment
        if not (d.migrations_dir and d.previous_release_migration):
            return ["cannot tell whether the migrations since the previous release are additive:"
                    " set migrations_dir and previous_release_migration"]  # fmt: skip
        return [f"non-additive migration since the previous release: {finding}"
                for finding in non_additive_since(Path(d.migrations_dir),
                                                  d.previous_release_migration)]  # fmt: skip

    def _snapshot(self, when: str) -> str | Failure:
        from pytest_spark.rollback_snapshot import snapshot_text

        text, problems = snapshot_text(
            self.deployment, self.ops_dir, self.request.stage, when, self.request.release
        )
        self.snapshots[when] = text
        self.run_state.snapshot_problems += [f"{when}: {p}" for p in problems]
        return Failure("; ".join(problems)) if problems else f"{len(text.splitlines())} lines"

    def _switch(self) -> str | Failure:
        d, r = self.deployment, self.request
        what = d.switch_text(r, self.run_state.previous or "?")
        if r.dry_run:
            return f"dry run: would {what}"
        if d.command:
            left = max(1.0, BUDGET_S - (time.monotonic() - self.began))
            done = subprocess.run(
                d.command_argv(r, self.run_state.previous or ""),
                capture_output=True, text=True, timeout=left, check=False,
            )  # fmt: skip
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            if done.returncode != 0:
                return Failure(f"{what} exited {done.returncode}: {tail}")
            return f"{what}: exit 0 {tail}".strip()
        from pytest_spark.probes.toxiproxy import ToxiproxyClient

        with ToxiproxyClient(d.toxiproxy_url, token=d.toxiproxy_token or None) as client:
            before = client.get_proxy(d.proxy).upstream
            after = client.set_upstream(d.proxy, d.upstream).upstream
        return f"{d.proxy}: {before} -> {after}"

    def _confirm(self, switched_at: float) -> str | Failure:
        from pytest_spark.rollback_snapshot import confirm

        if self.request.dry_run:
            return "dry run: nothing switched, nothing to confirm"
        deadline = min(switched_at + CONFIRM_TIMEOUT_S, self.began + BUDGET_S)
        plan = load_plan(self.ops_dir)
        outcome = confirm(self.deployment, plan, self.run_state.previous or "", deadline)
        if outcome.problems:
            return Failure("; ".join(outcome.problems))
        self.run_state.recovery_s = outcome.confirmed_at - switched_at
        return outcome.detail

    def _notify(self) -> str | Failure:
        import httpx

        state, r = self.run_state, self.request
        text = (
            f"{'[dry run] ' if r.dry_run else ''}Rollback of {r.release} at stage {r.stage} % "
            f"({r.reason}) on {state.target}: {state.outcome()}; "
            f"{state.serving or '?'} -> {state.previous or '?'}"
        )
        failed = [s.name for s in state.steps if not s.ok]
        if failed:
            text += f"; failed: {', '.join(failed)}"
        if not self.deployment.webhook_url:
            return Failure("no rollback_webhook_url")
        response = httpx.post(self.deployment.webhook_url, json={"text": text}, timeout=5.0,
                              trust_env=False)  # fmt: skip
        if not response.is_success:
            return Failure(f"the webhook answered {response.status_code}")
        return f"posted: {text}"

    def _record(self) -> str:
        state = self.run_state
        folder = self.evidence_dir / self.request.release / f"rollback-{state.stamp}"
        folder.mkdir(parents=True, exist_ok=False)
        stamp = state.stamp
        for when, text in self.snapshots.items():
            (folder / f"metrics_{when}_rollback_{stamp}.txt").write_text(text, encoding="utf-8")
        # The record lists the six steps before it; the seventh is this signature.
        (folder / f"rollback_{stamp}.txt").write_text(state.text(), encoding="utf-8")
        (folder / f"rollback_{stamp}.json").write_text(
            json.dumps(state.to_json(), indent=2), encoding="utf-8"
        )
        predicate = {
            # The facts every signed directory states; `gate` says this one is a record.
            "spark": {
                "release": self.request.release,
                "gate": ROLLBACK_RECORD,
                "verdict": state.outcome(),
                "run_id": folder.name,
                "target": state.target,
            },
            "rollback": state.to_json(),
            "signing": {"mode": self.key.mode, "key_fingerprint": self.key.fingerprint},
        }
        sign_bundle(folder, self.key, predicate)
        state.record_dir = folder
        return f"signed ({self.key.mode}) in {folder}"


class Failure(str):
    """A step's result that says it failed, and why."""
