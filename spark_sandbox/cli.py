"""``sandbox up|status|down``: a sandbox that outlives the command, for working by hand.

``register(subparsers)`` adds the ``sandbox`` command to an argparse sub-parser set; the gate's
``spark-gate`` console script calls it, and ``python -m spark_sandbox`` runs it alone. The
parsed namespace carries ``func`` (``Callable[[argparse.Namespace], int]``)::

    spark-gate sandbox up [--defect NAME]... [--run-root DIR]
    spark-gate sandbox status
    spark-gate sandbox down

The state file lives in ``$SPARK_SANDBOX_STATE_DIR`` (default ``.spark/`` here). Exit codes:
0 ok, 1 failure with a message on stderr. DSN passwords are never printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from spark_sandbox import sandbox as orchestrator
from spark_sandbox.defects import DEFECTS
from spark_sandbox.services.process import ServiceStartError

ENDPOINT_FIELDS = (
    "api_url", "web_url", "third_party_origin", "toxiproxy_url", "prometheus_url",
    "alertmanager_url", "alert_sink_url", "ntp_server", "postgres_dsn", "app_dsn",
    "listen_dsn", "pgbouncer_admin_dsn", "migrations_dir", "ops_dir", "run_dir",
)  # fmt: skip


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``sandbox`` with ``up``, ``status`` and ``down`` to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sandbox",
        help="start, inspect or stop the embedded sandbox",
        description="The embedded sandbox as a long-running deployment on loopback.",
    )
    commands = parser.add_subparsers(dest="sandbox_command", metavar="COMMAND", required=True)
    up = commands.add_parser("up", help="start every service and leave it running")
    up.add_argument(
        "--defect",
        action="append",
        default=[],
        metavar="NAME",
        help=f"seed a named defect (repeatable): {', '.join(sorted(DEFECTS))}",
    )
    up.add_argument("--run-root", type=Path, default=None, metavar="DIR", help="run dir parent")
    up.set_defaults(func=sandbox_up)
    status = commands.add_parser("status", help="show each service and whether it is up")
    status.set_defaults(func=sandbox_status)
    down = commands.add_parser("down", help="stop every service and remove the run dir")
    down.set_defaults(func=sandbox_down)
    return parser


def sandbox_up(args: argparse.Namespace) -> int:
    running = orchestrator.find_running()
    if running is not None:
        return fail(
            f"a sandbox is already running (run dir {running.run_dir}); "
            "stop it first with `sandbox down`"
        )
    try:
        sandbox = orchestrator.Sandbox(
            run_root=args.run_root,
            defects=args.defect,
            progress=lambda line: print(line, flush=True),
        )
    except ValueError as exc:  # an unknown defect name
        return fail(str(exc))
    try:
        endpoints = sandbox.start()
        # By hand, "up" should mean the dashboards already have data to show.
        sandbox.await_first_scrapes()
    except (ServiceStartError, OSError, ValueError) as exc:
        sandbox.stop()
        return fail(orchestrator.redact(str(exc)))
    try:
        state_path = sandbox.detach()
    except BaseException:
        sandbox.stop()  # a sandbox nobody can find again must not keep running
        raise
    print_endpoints(endpoints.to_dict())
    print(f"state: {state_path}")
    return 0


def sandbox_status(args: argparse.Namespace) -> int:
    state = orchestrator.read_state()
    if state is None:
        return fail("no sandbox is running (no state file); start one with `sandbox up`")
    status = orchestrator.service_status(state)
    pids = state.get("pids", {})
    width = max(map(len, status), default=0)
    for name, up in status.items():
        print(f"{name:<{width}}  {'up' if up else 'DOWN'}  pid {pids.get(name, '?')}")
    print_endpoints(state.get("endpoints", {}))
    if not status or not all(status.values()):
        down = ", ".join(name for name, up in status.items() if not up)
        return fail(f"sandbox is degraded: {down} not running; `sandbox down` cleans it up")
    return 0


def sandbox_down(args: argparse.Namespace) -> int:
    state = orchestrator.read_state()
    if state is None:
        return fail("no sandbox is running (no state file)")
    orchestrator.stop_recorded()
    print(f"stopped sandbox {state.get('run_dir', '(unknown run dir)')}")
    return 0


def print_endpoints(endpoints: dict[str, Any]) -> None:
    for name in ENDPOINT_FIELDS:
        if name in endpoints:
            print(f"{name}: {orchestrator.redact(str(endpoints[name]))}")
    print(f"defects: {', '.join(endpoints.get('defects', [])) or '(none)'}")


def fail(message: str) -> int:
    print(f"spark sandbox: {message}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """``python -m spark_sandbox [sandbox] up|status|down``."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] in ("up", "status", "down"):
        args_in.insert(0, "sandbox")
    parser = argparse.ArgumentParser(prog="python -m spark_sandbox")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(args_in)
    return int(args.func(args))
