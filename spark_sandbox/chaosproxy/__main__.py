"""``python -m spark_sandbox.chaosproxy --host 127.0.0.1 --port P [--config FILE]``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spark_sandbox.chaosproxy.server import run

TOKEN_ENV = "SPARK_CHAOSPROXY_TOKEN"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spark_sandbox.chaosproxy",
        description="TCP fault proxy speaking the Toxiproxy 2.x REST API (loopback only).",
        epilog=f"Set {TOKEN_ENV} to require `Authorization: Bearer <token>` on every route but "
        "/health and /metrics (an environment variable, so the token never shows in ps).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address of the REST API")
    parser.add_argument("--port", type=int, required=True, help="port of the REST API")
    parser.add_argument(
        "--config",
        type=Path,
        help="JSON list of proxies to create at start-up, like toxiproxy-server -config",
    )
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow the API and proxies to bind or forward beyond loopback",
    )
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV) or None
    return run(args.host, args.port, args.config, args.allow_non_loopback, token)


if __name__ == "__main__":
    sys.exit(main())
