"""``spark-gate decide``: one canary stage's evidence bundle -> promote, hold or rollback.

For a progressive-delivery controller (an Argo Rollouts job metric, a CI step) acting on the
stage the bundle decided. Only the signed statement is read, once the bundle verifies: nothing
unsigned in the bundle can move the release.

- ``promote`` (exit 0): the canary gate signed GO, every item satisfied;
- ``rollback`` (exit 2): an item measured a breach (status FAILED), e.g. S2's 5xx ratio over
  its threshold or S7 seeing a rollback trigger pending or firing;
- ``hold`` (exit 1): anything else, i.e. no decision can be taken from this bundle: it does not
  verify, it was signed for another gate, release or stage, its items are INCONCLUSIVE,
  MISSING, ERROR or WAIVER-*, or the command was misused. Holding is never promoting.

Argo Rollouts' job provider knows only success (exit 0) and failure (any other exit code), so
there both hold and rollback fail the metric; a controller that tells them apart reads the
first line of stdout, which is the action and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_spark.gate import FAILED, GO, SATISFIED
from pytest_spark.signing import RELEASE_SIGNED
from pytest_spark.verify import Verification, verify_bundle

PROMOTE, HOLD, ROLLBACK = "promote", "hold", "rollback"
EXIT_CODES = {PROMOTE: 0, HOLD: 1, ROLLBACK: 2}
CANARY_GATE = "canary"
# Stage integrity: FAILED when a rollback trigger is pending or firing in the stage's window.
S7 = "S7"


@dataclass(frozen=True)
class Decision:
    action: str
    reasons: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.action]

    def lines(self) -> list[str]:
        """stdout: the action alone on the first line, then one reason per line."""
        return [self.action, *self.reasons]


def hold(*reasons: str) -> Decision:
    return Decision(HOLD, reasons)


def stage_decision(result: Verification, *, stage: int | None = None) -> Decision:
    """The action for a verified (or refused) bundle, from its signed facts alone.

    ``stage``, when given, is the stage the controller is acting on (percent of traffic): a
    bundle signed for another stage, e.g. an earlier stage's GO, decides nothing here."""
    if not result.ok:
        problems = [f"  {problem}" for problem in result.problems]
        return hold(f"the bundle does not verify ({len(problems)} problem(s)):", *problems)
    spark = result.spark
    gate, release, run_id = result.fact("gate"), result.fact("release"), result.fact("run_id")
    where = f"release {release}, gate {gate}, stage {_stage_text(spark)}, run {run_id}"
    if gate != CANARY_GATE:
        return hold(f"{where}: signed for gate {gate}, not {CANARY_GATE}")
    if stage is not None and spark.get("stage") != stage:
        return hold(f"{where}: signed for stage {_stage_text(spark)}, not {stage} % (--stage)")
    items = spark.get("items")
    statuses = _statuses(items)
    if not statuses:
        return hold(f"{where}: the signed verdict lists no canary items")
    # S7 first: a trigger pending or firing is the reason a controller most needs to see.
    failed = sorted((i for i, s in statuses.items() if s == FAILED), key=lambda i: i != S7)
    if failed:
        breaches = [f"  {i} {_item_line(items, i)}" for i in failed]
        return Decision(ROLLBACK, (f"{where}: {len(failed)} item(s) FAILED:", *breaches))
    unsatisfied = [
        f"  {i} {_item_line(items, i)}" for i, s in statuses.items() if s not in SATISFIED
    ]
    blockers = spark.get("blockers")
    unsatisfied += [f"  blocker: {b}" for b in blockers] if isinstance(blockers, list) else []
    verdict = result.fact("verdict")
    # Anyone can sign a GO with a key of their own: a release-signed GO promotes only when
    # the controller names the release key. (A dev-signed GO is a sandbox's: the gate never
    # gives a real target a dev-signed GO.)
    if verdict == GO and result.signing_mode == RELEASE_SIGNED and not result.key_pinned:
        return hold(
            f"{where}: verdict GO, but its signer {result.key_fingerprint} is not pinned: "
            "pass --key with the release public key"
        )
    if verdict == GO and not unsatisfied:
        pinned = "key pinned by --key" if result.key_pinned else "key NOT pinned: pass --key"
        return Decision(
            PROMOTE,
            (
                f"{where}: verdict GO, {len(statuses)} item(s) satisfied",
                f"signed by {result.key_fingerprint} ({result.signing_mode}, {pinned})",
            ),
        )
    return hold(f"{where}: verdict {verdict} without a measured breach:", *unsatisfied)


def decide_bundle(
    bundle: Path,
    public_pem: bytes | None = None,
    *,
    release: str | None = None,
    stage: int | None = None,
) -> Decision:
    """Verify ``bundle`` (against ``public_pem`` when given) and decide from what it signed."""
    if not bundle.is_dir():
        return hold(f"{bundle} is not a directory (an evidence bundle, reports/<release>/<run>)")
    return stage_decision(verify_bundle(bundle, public_pem, release=release), stage=stage)


def _statuses(items: object) -> dict[str, str]:
    if not isinstance(items, Mapping):
        return {}
    return {
        str(i): str(item.get("status", "?")) if isinstance(item, Mapping) else "?"
        for i, item in items.items()
    }


def _item_line(items: object, item_id: str) -> str:
    item = items.get(item_id) if isinstance(items, Mapping) else None
    if not isinstance(item, Mapping):
        return "?"
    return f"{item.get('status', '?')}: {item.get('reason', '')}"


def _stage_text(spark: Mapping[str, object]) -> str:
    stage = spark.get("stage")
    return f"{stage} %" if isinstance(stage, int) and not isinstance(stage, bool) else "?"
