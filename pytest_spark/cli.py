"""spark-gate: verify a bundle, make a signing key, drive the embedded sandbox."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def verify(args: argparse.Namespace) -> int:
    from pytest_spark.signing import DEV_SIGNED, verify_bundle

    bundle = Path(args.bundle)
    if not bundle.is_dir():
        print(f"spark-gate verify: {bundle} is not a directory", file=sys.stderr)
        return 2
    public = None
    if args.key:
        try:
            public = Path(args.key).read_bytes()
        except OSError as exc:
            print(f"spark-gate verify: --key {args.key}: {exc.strerror}", file=sys.stderr)
            return 2
    result = verify_bundle(bundle, public)
    if not result.ok:
        for problem in result.problems:
            print(f"FAIL {bundle}: {problem}", file=sys.stderr)
        return 1
    predicate = result.statement.get("predicate", {})
    spark = predicate.get("spark", {}) if isinstance(predicate, dict) else {}
    verdict = spark.get("verdict", "?") if isinstance(spark, dict) else "?"
    gate = spark.get("gate", "?") if isinstance(spark, dict) else "?"
    notes = []
    if result.signing_mode == DEV_SIGNED:
        notes.append("dev-signed: integrity only, not a release signature")
    if not result.key_pinned:
        notes.append("key not pinned: pass --key to check who signed")
    print(
        f"OK {bundle}: gate {gate} verdict {verdict}, signed by {result.key_fingerprint}"
        + "".join(f"\n  note: {n}" for n in notes)
    )
    if args.json:
        print(json.dumps(spark, indent=2))
    return 0


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
    p = sub.add_parser("verify", help="check a bundle's signature and every file's digest")
    p.add_argument("bundle", help="the bundle directory, e.g. reports/v1.4.0/<run-id>")
    p.add_argument("--key", help="the release public key (PEM) the bundle must be signed with")
    p.add_argument("--json", action="store_true", help="also print the signed verdict")
    p.set_defaults(func=verify)
    p = sub.add_parser("keygen", help="create an ed25519 signing key pair")
    p.add_argument("out", help="private key file to write; the public key goes beside it")
    p.add_argument("--force", action="store_true", help="overwrite an existing key")
    p.set_defaults(func=keygen)
    try:
        from spark_sandbox.cli import register
    except ImportError:  # the sandbox package is optional for a gate against staging
        pass
    else:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
