"""``sandbox up|status|down``: a sandbox that outlives the command, for working by hand.

``register(subparsers)`` adds the ``sandbox`` command to an argparse sub-parser set; the gate's
``spark-gate`` console script calls it, and ``python -m spark_sandbox`` runs it alone. The
parsed namespace carries ``func`` (``Callable[[argparse.Namespace], int]``)::

    spark-gate sandbox up [--defect NAME]... [--run-root DIR] [--foreground]
    spark-gate sandbox status
    spark-gate sandbox down

The state file lives in ``$SPARK_SANDBOX_STATE_DIR`` (default: this user's sandbox home,
``<temp dir>/spark-sandbox-<uid>``), so every command finds the sandbox from any directory.
SIGTERM (how CI cancels a job) stops a starting or foreground sandbox as Ctrl-C does. Exit
codes: 0 ok, 1 failure with a message on stderr. DSN passwords and the fault proxy's token
are never printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from spark_sandbox import sandbox as orchestrator
from spark_sandbox.defects import DEFECTS
from spark_sandbox.services.process import ServiceStartError

ENDPOINT_FIELDS = (
    "api_url", "web_url", "third_party_origin", "toxiproxy_url", "prometheus_url",
    "alertmanager_url", "alert_sink_url", "ntp_server", "postgres_dsn", "app_dsn",
    "listen_dsn", "pgbouncer_admin_dsn", "migrations_dir", "ops_dir", "run_dir",
    "artifact_path", "sbom_path", "provenance_path",
)  # fmt: skip
# A foreground sandbox checks this often that every service still runs.
WATCH_SECONDS = 1.0


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
    up.add_argument(
        "--foreground",
        action="store_true",
        help="keep the sandbox attached to this command until Ctrl-C or SIGTERM, then stop it "
        "(for CI jobs and terminals that should own it)",
    )
    up.set_defaults(func=sandbox_up)
    status = commands.add_parser("status", help="show each service and whether it is up")
    status.set_defaults(func=sandbox_status)
    down = commands.add_parser("down", help="stop every service and remove the run dir")
    down.set_defaults(func=sandbox_down)
    return parser


def sandbox_up(args: argparse.Namespace) -> int:
    running = orchestrator.find_running(report=warn)
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
        with orchestrator.sigterm_as_interrupt():
            try:
                endpoints = sandbox.start()
                # By hand, "up" should mean the dashboards already have data to show.
                sandbox.await_first_scrapes()
                if args.foreground:
                    return run_in_foreground(sandbox, endpoints.to_dict())
                state_path = sandbox.detach()
            except (ServiceStartError, OSError, ValueError) as exc:
                sandbox.stop()
                return fail(orchestrator.redact(str(exc)))
            except BaseException:
                sandbox.stop()  # Ctrl-C or SIGTERM: a sandbox nobody can find must not run on
                raise
    except KeyboardInterrupt as exc:
        return fail(f"interrupted ({exc or 'Ctrl-C'}); every service was stopped")
    print_endpoints(endpoints.to_dict())
    print(f"state: {state_path}")
    return 0


def run_in_foreground(sandbox: orchestrator.Sandbox, endpoints: dict[str, Any]) -> int:
    """Serve until interrupted (the caller stops the sandbox) or until a service exits."""
    state_path = sandbox.record_state()
    print_endpoints(endpoints)
    print(f"state: {state_path}")
    print("running in the foreground: Ctrl-C or SIGTERM stops every service", flush=True)
    try:
        while not (exited := sandbox.exited_services()):
            time.sleep(WATCH_SECONDS)
    except KeyboardInterrupt as exc:  # the way a foreground sandbox is meant to end
        sandbox.stop()
        print(f"{exc or 'interrupted'}: stopped every service", flush=True)
        return 0
    sandbox.stop()
    return fail(f"{', '.join(exited)} exited on its own; stopped the sandbox")


def sandbox_status(args: argparse.Namespace) -> int:
    run = orchestrator.recorded_run(report=warn)
    if run is None:
        return fail("no sandbox is running (no usable state file); start one with `sandbox up`")
    status = run.record.services_running()
    pids = run.state.get("pids", {})
    width = max(map(len, status), default=0)
    for name, up in status.items():
        print(f"{name:<{width}}  {'up' if up else 'DOWN'}  pid {pids.get(name, '?')}")
    print_endpoints(run.state.get("endpoints", {}))
    print(f"state: {run.state_path}")
    if not status or not all(status.values()):
        down = ", ".join(name for name, up in status.items() if not up)
        return fail(f"sandbox is degraded: {down} not running; `sandbox down` cleans it up")
    return 0


def sandbox_down(args: argparse.Namespace) -> int:
    run = orchestrator.recorded_run(report=warn)
    if run is None:
        # Like any "down": the wanted end state already holds, so a script may call it freely.
        print("no sandbox is running (no usable state file): nothing to stop")
        return 0
    for removed in sweep_chaos_toxics(run.state.get("endpoints", {})):
        print(f"removed leftover chaos toxic {removed}")
    run.tear_down(report=warn)
    print(f"stopped sandbox {run.record.run_dir}")
    return 0


def sweep_chaos_toxics(endpoints: dict[str, Any]) -> list[str]:
    """Remove the ``spark-chaos-`` toxics a killed chaos run left on the fault proxy, and say
    which: the proxy goes down with the sandbox, but a fault nobody reports is a fault that
    will be left behind on a real Toxiproxy one day."""
    from pytest_spark.probes.chaos import sweep_leftovers
    from pytest_spark.probes.toxiproxy import ToxiproxyClient, ToxiproxyError

    url = endpoints.get("toxiproxy_url")
    if not url:
        return []
    try:
        with ToxiproxyClient(url, timeout=2.0, token=endpoints.get("toxiproxy_token")) as client:
            return sweep_leftovers(client)
    except ToxiproxyError as exc:
        warn(f"could not look for leftover chaos toxics on the fault proxy: {exc}")
        return []


def print_endpoints(endpoints: dict[str, Any]) -> None:
    for name in ENDPOINT_FIELDS:
        if name in endpoints:
            print(f"{name}: {orchestrator.redact(str(endpoints[name]))}")
    if endpoints.get("toxiproxy_token"):
        print("toxiproxy_token: *** (endpoints.toxiproxy_token in the state file, owner-only)")
    print(f"defects: {', '.join(endpoints.get('defects', [])) or '(none)'}")


def warn(message: str) -> None:
    print(f"spark sandbox: {message}", file=sys.stderr)


def fail(message: str) -> int:
    warn(message)
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
