"""PgBouncer 1.18 in front of the sandbox PostgreSQL: a transaction pool and a session pool.

Call::

    proc, bouncer = start_pgbouncer(run_dir, pg, pool_modes={"spark": "session", ...})
    bouncer.dsn("spark")          # app pool (transaction mode): prepare_threshold=None
    bouncer.dsn("spark_listen")   # LISTEN/NOTIFY pool (session mode)
    bouncer.admin_dsn()           # console: autocommit=True, prepare_threshold=None

``pool_modes`` default to the healthy ones (``HEALTHY_POOL_MODES``); the ``pgbouncer`` layer
defects of :mod:`spark_sandbox.defects` change them in the start's blueprint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from spark_sandbox.services.ports import free_port
from spark_sandbox.services.postgres import (
    HOST,
    SERVICE_USER,
    Postgres,
    chown_to_service_user,
    socket_dir_or_off,
)
from spark_sandbox.services.process import ServiceProcess

PGBOUNCER_BIN = "pgbouncer"
APP_POOL = "spark"
LISTEN_POOL = "spark_listen"
HEALTHY_POOL_MODES = {APP_POOL: "transaction", LISTEN_POOL: "session"}
ADMIN_USER = "spark_admin"
STATS_USER = "spark_stats"
# Fixed sandbox secrets, present so that every DSN the gate prints has something to redact.
ADMIN_PASSWORD = "spark-admin-sandbox-secret"
STATS_PASSWORD = "spark-stats-sandbox-secret"
DEFAULT_POOL_SIZE = 20
# Stopped after its clients, before PostgreSQL (see DATABASE_STOP_TIER).
POOLER_STOP_TIER = 1


@dataclass(frozen=True)
class PgBouncer:
    """Where PgBouncer listens, its pools' modes and the users of its console."""

    host: str
    port: int
    config_path: Path
    pool_modes: dict[str, str]
    app_user: str
    app_password: str
    admin_user: str = ADMIN_USER
    admin_password: str = ADMIN_PASSWORD
    stats_user: str = STATS_USER
    stats_password: str = STATS_PASSWORD

    def dsn(self, dbname: str = APP_POOL) -> str:
        """The app role's conninfo to one pool (``spark`` or ``spark_listen``)."""
        return (
            f"host={self.host} port={self.port} dbname={dbname} "
            f"user={self.app_user} password={self.app_password}"
        )

    def admin_dsn(self) -> str:
        """The admin console (``SHOW``, ``PAUSE``, ``RELOAD``)."""
        return (
            f"host={self.host} port={self.port} dbname=pgbouncer "
            f"user={self.admin_user} password={self.admin_password}"
        )

    def stats_dsn(self) -> str:
        """The console as the read-only stats user (what an exporter should use)."""
        return (
            f"host={self.host} port={self.port} dbname=pgbouncer "
            f"user={self.stats_user} password={self.stats_password}"
        )


def render_config(
    pg: Postgres,
    *,
    port: int,
    pool_modes: dict[str, str],
    auth_file: Path,
    pidfile: Path,
    socket_dir: str,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> str:
    """pgbouncer.ini text: both pools point at the same database, only the pool mode differs."""
    databases = "\n".join(
        f"{pool} = host={pg.host} port={pg.port} dbname={pg.database} pool_mode={mode}"
        for pool, mode in pool_modes.items()
    )
    return f"""\
[databases]
{databases}

[pgbouncer]
listen_addr = {HOST}
listen_port = {port}
unix_socket_dir = {socket_dir}
auth_type = scram-sha-256
auth_file = {auth_file}
admin_users = {ADMIN_USER}
stats_users = {STATS_USER}
pidfile = {pidfile}
pool_mode = session
default_pool_size = {pool_size}
max_client_conn = 200
; psycopg and JDBC clients send these; without this PgBouncer rejects the login
ignore_startup_parameters = extra_float_digits,options
server_login_retry = 1
log_connections = 0
log_disconnections = 0
"""


def render_userlist(pg: Postgres) -> str:
    """Plain-text secrets: PgBouncer then answers SCRAM itself and logs in to PostgreSQL."""
    users = {pg.app_user: pg.app_password, ADMIN_USER: ADMIN_PASSWORD, STATS_USER: STATS_PASSWORD}
    return "".join(f'"{user}" "{password}"\n' for user, password in users.items())


def write_secret_file(path: Path, text: str) -> None:
    """Plain-text passwords: 0600 and owned by the service user, the only reader it needs."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    chown_to_service_user(path)


def console_answers(bouncer: PgBouncer) -> bool:
    """Readiness: PgBouncer itself answers ``SHOW VERSION`` on its TCP port.

    An open port is not enough: when the port is taken PgBouncer only warns "cannot listen"
    and stays up on its unix socket, while the squatter accepts the TCP connection.
    """
    import psycopg

    with psycopg.connect(
        bouncer.stats_dsn(), autocommit=True, prepare_threshold=None, connect_timeout=1
    ) as conn:
        row = conn.execute("SHOW VERSION").fetchone()
    return row is not None and "PgBouncer" in str(row[0])


def start_pgbouncer(
    run_dir: Path,
    pg: Postgres,
    *,
    pool_modes: Mapping[str, str] = HEALTHY_POOL_MODES,
    pool_size: int = DEFAULT_POOL_SIZE,
    ready_timeout: float = 10.0,
) -> tuple[ServiceProcess, PgBouncer]:
    """Write the config into ``run_dir/pgbouncer`` and run PgBouncer in the foreground.

    Not ``-d``: the daemonising form exits 0 even when start-up fails, so readiness would be
    guessed; in the foreground an early exit is seen at once and reported with the log.
    """
    base = run_dir / "pgbouncer"
    base.mkdir(parents=True, exist_ok=True)
    chown_to_service_user(base)
    port = free_port(HOST)
    pool_modes = dict(pool_modes)
    auth_file = base / "userlist.txt"
    write_secret_file(auth_file, render_userlist(pg))
    config_path = base / "pgbouncer.ini"
    config_path.write_text(
        render_config(
            pg,
            port=port,
            pool_modes=pool_modes,
            auth_file=auth_file,
            pidfile=base / "pgbouncer.pid",
            socket_dir=socket_dir_or_off(base, port),
            pool_size=pool_size,
        )
    )
    bouncer = PgBouncer(
        HOST, port, config_path, pool_modes, app_user=pg.app_user, app_password=pg.app_password
    )
    proc = ServiceProcess(
        "pgbouncer",
        [PGBOUNCER_BIN, str(config_path)],
        log_path=run_dir / "logs" / "pgbouncer.log",
        ready=lambda: console_answers(bouncer),
        ready_timeout=ready_timeout,
        user=SERVICE_USER,
        stop_tier=POOLER_STOP_TIER,
    )
    proc.start()
    return proc, bouncer
