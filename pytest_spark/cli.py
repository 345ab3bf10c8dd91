"""spark-gate: verify a bundle, decide a canary stage from one, roll a release back, make a
signing key, drive the embedded sandbox."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from pytest_spark.config import Target

COMMANDS_ENTRY_POINT = "spark_gate.commands"
DECIDE_HELP = "promote, hold or rollback a canary stage from its signed bundle (exit 0, 1, 2)"
DECIDE_DESCRIPTION = (
    "Print promote, hold or rollback alone on the first line, the reasons after it, and exit "
    "0, 1 or 2. Anything that is neither a signed canary GO nor a measured breach (a bundle "
    "that does not verify, inconclusive items, a usage error) is a hold."
)


def verify(args: argparse.Namespace) -> int:
    from pytest_spark.signing import DEV_SIGNED, PUBLIC_KEY
    from pytest_spark.verify import verify_bundle

    bundle = Path(args.bundle)
    if not bundle.is_dir():
        print(f"spark-gate verify: {bundle} is not a directory", file=sys.stderr)
        return 2
    if args.require_go and not args.key:
        print(
            "spark-gate verify: --require-go needs --key: without the release public key "
            "anyone could have signed a GO; pass --key release.pub.pem",
            file=sys.stderr,
        )
        return 2
    public = None
    if args.key:
        try:
            public = Path(args.key).read_bytes()
        except OSError as exc:
            print(f"spark-gate verify: --key {args.key}: {exc.strerror}", file=sys.stderr)
            return 2
    checklist_sha256 = None
    if args.checklist:
        try:
            checklist_sha256 = hashlib.sha256(Path(args.checklist).read_bytes()).hexdigest()
        except OSError as exc:
            print(
                f"spark-gate verify: --checklist {args.checklist}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 2
    result = verify_bundle(bundle, public, release=args.release, checklist_sha256=checklist_sha256)
    if not result.ok:
        for problem in result.problems:
            print(f"FAIL {bundle}: {problem}", file=sys.stderr)
        print(
            f"REFUSED {bundle}: {len(result.problems)} problem(s); nothing in it can be trusted",
            file=sys.stderr,
        )
        return 1
    pinned = "key pinned by --key" if result.key_pinned else "key NOT pinned"
    checklist = result.checklist
    print(
        f"OK {bundle}: release {result.fact('release')}, gate {result.fact('gate')}, "
        f"verdict {result.fact('verdict')}, run {result.fact('run_id')}, "
        f"signed by {result.key_fingerprint} ({result.signing_mode}, {pinned})"
    )
    if checklist:  # a rollback record is decided by no checklist
        print(f"  checklist: {checklist.get('uri', '?')} sha256:{result.checklist_sha256}")
    if result.signing_mode == DEV_SIGNED:
        print("  note: dev-signed: integrity only, not a release signature")
    if not result.key_pinned:
        print(
            "WARNING: the signer is NOT pinned: this bundle was checked only against the key it "
            f"carries ({PUBLIC_KEY}), so anyone could have signed it; pass --key with the "
            "release public key to check who signed",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(result.spark, indent=2))
    if args.require_go:
        refusals = result.go_refusals()
        for reason in refusals:
            print(f"REFUSED {bundle}: --require-go: {reason}", file=sys.stderr)
        if refusals:
            return 1
    return 0


def decide(args: argparse.Namespace) -> int:
    from pytest_spark.decide import decide_bundle, hold

    public = None
    if args.key:
        try:
            public = Path(args.key).read_bytes()
        except OSError as exc:
            decision = hold(f"--key {args.key}: {exc.strerror or exc}")
            print("\n".join(decision.lines()))
            return decision.exit_code
    else:
        print(
            "WARNING: no --key: the bundle is checked only against the key it carries, so "
            "anyone could have signed it; pass --key with the release public key",
            file=sys.stderr,
        )
    decision = decide_bundle(Path(args.bundle), public, release=args.release, stage=args.stage)
    print("\n".join(decision.lines()))
    return decision.exit_code


class _HoldingParser(argparse.ArgumentParser):
    """``decide``'s parser: a usage error is a hold (exit 1), as argparse's usage exit (2)
    would read as rollback to a controller that acts on the exit code."""

    def error(self, message: str) -> NoReturn:
        from pytest_spark.decide import HOLD

        print(f"{HOLD}\n{self.prog}: {message}")
        self.print_usage(sys.stderr)
        self.exit(1)


def add_decide_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="the canary stage's bundle, e.g. reports/v1.4.0/<run-id>")
    parser.add_argument("--key", help="the release public key (PEM) that must have signed it")
    parser.add_argument("--release", help="hold unless it is signed for this release")
    parser.add_argument(
        "--stage", type=int, help="hold unless it is signed for this stage (percent), e.g. 25"
    )
    parser.set_defaults(func=decide)


def keygen(args: argparse.Namespace) -> int:
    from pytest_spark.signing import generate_key_pem

    private_path = Path(args.out)
    public_path = private_path.with_suffix(".pub.pem")
    if private_path.exists() and not args.force:
        print(f"spark-gate keygen: {private_path} exists; pass --force", file=sys.stderr)
        return 2
    private, public = generate_key_pem()
    private_path.touch(mode=0o600)
    private_path.write_bytes(private)
    public_path.write_bytes(public)
    print(f"private key: {private_path} (keep it secret)\npublic key:  {public_path}")
    return 0


ROLLBACK_DESCRIPTION = (
    "Move the release's traffic back to the previous release: pre-checks, a snapshot before, "
    "the switch, confirmation, a snapshot after, a notification and a signed record in "
    "<evidence dir>/<release>/rollback-<UTC>/. Exit 0 only when every step passed within "
    "5 minutes. --dry-run does everything but the switch."
)


def rollback(args: argparse.Namespace) -> int:
    import re

    from pytest_spark.rollback import Deployment, Rollback, RollbackRequest
    from pytest_spark.signing import SigningKeyError, load_signing_key

    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", args.reason):
        print(f"spark-gate rollback: --reason {args.reason!r}: one word such as "
              "p95_breach or t02_5xx", file=sys.stderr)  # fmt: skip
        return 2
    try:
        target = _rollback_target(args.spark_target)
        key = load_signing_key(args.signing_key, Path.cwd())
    except (LookupError, SigningKeyError) as exc:
        print(f"spark-gate rollback: {exc}", file=sys.stderr)
        return 2
    ops_dir = Path(args.ops_dir or target.endpoints.get("ops_dir") or "ops")
    request = RollbackRequest(args.release, args.reason, args.stage, args.to, args.dry_run)
    run = Rollback(request, Deployment.of(target), ops_dir, Path(args.evidence_dir), key,
                   say=print).run()  # fmt: skip
    print(run.text(), end="")
    if run.record_dir is not None:
        print(f"record: {run.record_dir}")
    return 0 if run.ok else 1


def _rollback_target(spec: str | None) -> Target:
    """The target file's deployment, or the sandbox `spark-gate sandbox up` left running."""
    import pytest

    from pytest_spark.config import load_target

    if spec:
        try:
            return load_target(spec, Path.cwd())
        except pytest.UsageError as exc:
            raise LookupError(str(exc)) from None
    import importlib

    from pytest_spark.config import SANDBOX, Target
    from pytest_spark.targets import PROVIDERS

    # The sandbox's provider, named like the plugin names it: the core never imports it.
    try:
        provider = importlib.import_module(PROVIDERS[SANDBOX][1])
    except ImportError:  # a gate installed for staging only has no sandbox
        found = None
    else:
        found = provider.running_target()
    if not isinstance(found, Target):
        raise LookupError(
            "no target: pass --spark-target FILE, or start the sandbox with `spark-gate sandbox up`"
        )
    return found


def release_notes(args: argparse.Namespace) -> int:
    import datetime as dt

    from pytest_spark.canary_plan import load_plan
    from pytest_spark.release_notes import ReleaseNotesError, render

    public = Path(args.key).read_bytes() if args.key else None
    release_dir = Path(args.bundles) / args.release
    ops_dir = Path(args.ops_dir)
    try:
        text = render(release_dir, ops_dir, load_plan(ops_dir), public, dt.date.today())
    except ReleaseNotesError as exc:
        for problem in exc.problems:
            print(f"spark-gate release-notes: {problem}", file=sys.stderr)
        print(f"no release notes written: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else release_dir / f"RELEASE-NOTES-{args.release}.md"
    out.write_text(text, encoding="utf-8")
    print(f"release notes: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spark-gate", description="Spark release gate: evidence bundles and the sandbox"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "verify", help="check a bundle's signature, every file's digest and its signed facts"
    )
    p.add_argument("bundle", help="the bundle directory, e.g. reports/v1.4.0/<run-id>")
    p.add_argument("--key", help="the release public key (PEM) the bundle must be signed with")
    p.add_argument(
        "--release", help="refuse the bundle unless it is signed for this release, e.g. v1.4.0"
    )
    p.add_argument(
        "--require-go",
        action="store_true",
        help="exit non-zero unless the signed verdict is GO, signed by --key with a release "
        "key (not dev-signed)",
    )
    p.add_argument(
        "--checklist",
        help="refuse the bundle unless it was decided with this checklist file (by sha256), "
        "e.g. ops/checklist.toml",
    )
    p.add_argument("--json", action="store_true", help="also print the signed verdict")
    p.set_defaults(func=verify)
    p = sub.add_parser("decide", help=DECIDE_HELP, description=DECIDE_DESCRIPTION)
    add_decide_arguments(p)
    p = sub.add_parser(
        "rollback", help="roll a release back to the previous one, with signed evidence",
        description=ROLLBACK_DESCRIPTION,
    )  # fmt: skip
    p.add_argument("--release", required=True, help="the release rolled back, e.g. v1.4.0")
    p.add_argument("--reason", required=True, help="one word: p95_breach, t02_5xx, drill ...")
    p.add_argument("--stage", type=int, required=True, help="the canary stage (percent), e.g. 25")
    p.add_argument("--to", help="the previous version (default: what the stable track serves)")
    p.add_argument("--dry-run", action="store_true", help="everything but the switch")
    p.add_argument("--spark-target", help="target TOML file (default: the running sandbox)")
    p.add_argument("--ops-dir", help="the ops artefacts (default: the target's, or ops/)")
    p.add_argument("--evidence-dir", default="reports", help="where the record goes")
    p.add_argument("--signing-key", help="PEM file or env:VAR (default: an ephemeral dev key)")
    p.set_defaults(func=rollback)
    p = sub.add_parser(
        "release-notes", help="render the release notes from the bundles that verify",
        description="Render ops/release-notes-template.md from the release's verified bundles "
        "and rollback records; write nothing (exit 1) when anything does not verify, a stage "
        "is missing without a rollback, or a remaining risk has no owner or is overdue.",
    )  # fmt: skip
    p.add_argument("--release", required=True, help="the release, e.g. v1.4.0")
    p.add_argument("--bundles", default="reports", help="the evidence dir holding <release>/")
    p.add_argument("--key", help="the release public key (PEM) every bundle must be signed with")
    p.add_argument("--ops-dir", default="ops", help="the plan, template and risks (default ops/)")
    p.add_argument("--out", help="where to write (default <bundles>/<release>/RELEASE-NOTES-*.md)")
    p.set_defaults(func=release_notes)
    p = sub.add_parser("keygen", help="create an ed25519 signing key pair")
    p.add_argument("out", help="private key file to write; the public key goes beside it")
    p.add_argument("--force", action="store_true", help="overwrite an existing key")
    p.set_defaults(func=keygen)
    # Other packages add their commands through an entry point (the embedded sandbox adds
    # `spark-gate sandbox ...`), so a gate installed for staging needs none of them.
    for command in entry_points(group=COMMANDS_ENTRY_POINT):
        command.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["decide"]:
        # Parsed on its own so that its usage errors exit 1 (hold), never argparse's 2.
        parser = _HoldingParser(prog="spark-gate decide", description=DECIDE_DESCRIPTION)
        add_decide_arguments(parser)
        args = parser.parse_args(argv[1:])
    else:
        args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
