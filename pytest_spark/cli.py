"""spark-gate: verify a bundle, decide a canary stage from one, make a signing key, drive the
embedded sandbox."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import NoReturn

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
        f"signed by {result.key_fingerprint} ({result.signing_mode}, {pinned})\n"
        f"  checklist: {checklist.get('uri', '?')} sha256:{result.checklist_sha256}"
    )
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
