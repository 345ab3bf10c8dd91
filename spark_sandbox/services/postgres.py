"""PostgreSQL 15 for the sandbox: a fresh cluster per run, WAL-archived, on a free loopback port.

Call::

    proc, pg = start_postgres(run_dir)          # initdb + start + role spark_app + database spark
    try:
        apply_migrations(pg.app_dsn(), migrations_dir)
        ...
    finally:
        proc.stop()

``run_dir`` must be reachable by the ``postgres`` user (PostgreSQL refuses to run as root);
pytest's ``tmp_path`` lives under a 0700 directory, so use :func:`postgres_run_dir` there.
Set ``SPARK_PG_BIN`` to use another PostgreSQL 15 installation.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from spark_sandbox.services.ports import free_port
from spark_sandbox.services.process import ServiceProcess, ServiceStartError, run_as, tail

PG_BIN = Path(os.environ.get("SPARK_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVICE_USER = "postgres"
HOST = "127.0.0.1"
APP_USER = "spark_app"
# A fixed sandbox secret: the gate must redact it wherever a DSN is shown, so it has to exist.
APP_PASSWORD = "spark-app-sandbox-secret"
DATABASE = "spark"
# Stopped after every client of it (tier 0) and after PgBouncer (tier 1), which holds its
# server connections.
DATABASE_STOP_TIER = 2
# A unix socket path longer than this does not fit in sockaddr_un (108 bytes with the NUL).
UNIX_SOCKET_PATH_MAX = 100


@dataclass(frozen=True)
class Postgres:
    """Where the sandbox database listens and who may log in."""

    host: str
    port: int
    superuser: str
    data_dir: Path
    wal_archive: Path
    app_user: str = APP_USER
    app_password: str = APP_PASSWORD
    database: str = DATABASE
    # Made fresh for each cluster: over TCP the superuser, like everyone, needs a password.
    superuser_password: str = field(default="", repr=False)

    def dsn(self, dbname: str = DATABASE, user: str | None = None) -> str:
        """libpq conninfo with the role's password (the superuser's or the app role's)."""
        user = user or self.superuser
        parts = [f"host={self.host}", f"port={self.port}", f"dbname={dbname}", f"user={user}"]
        if user == self.app_user:
            parts.append(f"password={self.app_password}")
        elif user == self.superuser and self.superuser_password:
            parts.append(f"password={self.superuser_password}")
        return " ".join(parts)

    def app_dsn(self, dbname: str = DATABASE) -> str:
        """Direct (not pooled) conninfo of the application role, owner of database ``spark``."""
        return self.dsn(dbname, self.app_user)


class PostgresProcess(ServiceProcess):
    """The postmaster, stopped with a *fast* shutdown.

    SIGTERM is PostgreSQL's *smart* shutdown, which waits for every client to leave; a sandbox
    with an idle-in-transaction session (the ``long_running_query`` defect) would then always
    hit the SIGKILL fallback and leave shared memory and a stale pidfile behind.
    """

    stop_signal = signal.SIGINT

    def stop(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGINT)
                proc.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        super().stop(timeout)


def postgres_run_dir(prefix: str = "spark-sandbox-") -> Path:
    """A fresh directory under the system temp dir that the ``postgres`` user can reach."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    chown_to_service_user(path)
    return path


def chown_to_service_user(path: Path) -> None:
    """Give ``path`` to the ``postgres`` user when running as root (initdb refuses root)."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SERVICE_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def require_service_user_access(directory: Path) -> None:
    """Fail early and clearly when ``postgres`` cannot write ``directory``.

    Owning the directory is not enough: every parent must be searchable by ``postgres``, and
    pytest's ``tmp_path`` sits under a 0700 root-owned directory.
    """
    if os.geteuid() != 0:
        return
    argv = ["test", "-w", str(directory)]
    result = subprocess.run(argv, check=False, timeout=10, **run_as(SERVICE_USER))
    if result.returncode != 0:
        raise ServiceStartError(
            "postgres",
            argv,
            f"the {SERVICE_USER!r} user cannot write {directory}: a parent directory is not "
            f"searchable by it; start from a run dir made by postgres_run_dir()",
            "",
        )


def socket_dir_or_off(directory: Path, port: int) -> str:
    """The run dir for unix sockets, or '' (no socket) when its path would be too long."""
    socket_path = directory / f".s.PGSQL.{port}"
    return str(directory) if len(str(socket_path)) <= UNIX_SOCKET_PATH_MAX else ""


def start_postgres(
    run_dir: Path, *, ready_timeout: float = 15.0, archive_to: Path | None = None
) -> tuple[ServiceProcess, Postgres]:
    """initdb a cluster in ``run_dir/postgres``, start it, create ``spark_app`` and ``spark``.

    WAL is archived into ``run_dir/wal_archive``, unless ``archive_to`` names another folder
    for the archive_command (one that is not there makes every archive attempt fail).
    ``run_dir/pitr`` is left empty for restore drills' scratch clusters."""
    base = run_dir / "postgres"
    data_dir = base / "data"
    wal_archive = wal_archive_dir(run_dir)
    for directory in (run_dir, base, wal_archive, pitr_scratch_dir(run_dir)):
        directory.mkdir(parents=True, exist_ok=True)
        chown_to_service_user(directory)
    require_service_user_access(base)
    log_path = run_dir / "logs" / "postgres.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    superuser_password = secrets.token_urlsafe(24)
    initdb(data_dir, log_path, superuser_password)

    port = free_port(HOST)
    write_server_config(
        data_dir,
        port=port,
        socket_dir=socket_dir_or_off(base, port),
        wal_archive=archive_to or wal_archive,
    )
    pg = Postgres(
        HOST, port, SERVICE_USER, data_dir, wal_archive, superuser_password=superuser_password
    )
    proc = PostgresProcess(
        "postgres",
        [str(PG_BIN / "postgres"), "-D", str(data_dir)],
        log_path=log_path,
        ready=lambda: accepts_queries(pg),
        ready_timeout=ready_timeout,
        user=SERVICE_USER,
        stop_tier=DATABASE_STOP_TIER,
    )
    proc.start()
    try:
        create_app_role_and_database(pg)
    except BaseException:
        proc.stop()
        raise
    return proc, pg


def wal_archive_dir(run_dir: Path) -> Path:
    """Where the sandbox's archive_command puts WAL segments (a restore's restore_command)."""
    return run_dir / "wal_archive"


def pitr_scratch_dir(run_dir: Path) -> Path:
    """Where a point-in-time restore drill may put its scratch cluster (the service user's)."""
    return run_dir / "pitr"


def initdb(data_dir: Path, log_path: Path, superuser_password: str) -> None:
    """Create the cluster with the superuser's password set; ``--no-sync`` because a sandbox
    cluster never outlives its run. The password goes through a 0600 file of the service user
    that is deleted at once (initdb reads it from no other place but a terminal)."""
    pwfile = data_dir.parent / f".initdb-pw-{secrets.token_hex(4)}"
    argv = [
        str(PG_BIN / "initdb"),
        "-D", str(data_dir),
        "-U", SERVICE_USER,
        "-E", "UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
        "--auth-local=peer",
        "--auth-host=scram-sha-256",
        f"--pwfile={pwfile}",
    ]  # fmt: skip
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(superuser_password + "\n")
    chown_to_service_user(pwfile)
    with open(log_path, "ab") as log:
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
                **run_as(SERVICE_USER),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceStartError("postgres", argv, f"initdb: {exc}", tail(log_path)) from exc
        finally:
            pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise ServiceStartError(
            "postgres", argv, f"initdb exited with code {result.returncode}", tail(log_path)
        )


def write_server_config(data_dir: Path, *, port: int, socket_dir: str, wal_archive: Path) -> None:
    """Loopback only, WAL archived for the PITR drill, durability traded for start-up speed."""
    archive_to = f"{wal_archive}/%f"
    settings = {
        "listen_addresses": HOST,
        "port": str(port),
        "unix_socket_directories": socket_dir,
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": f'test ! -f "{archive_to}" && cp %p "{archive_to}"',
        # The cluster is thrown away after the run and a crash means a fresh initdb, so the
        # flushes that protect against power loss buy nothing here and cost seconds.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "shared_buffers": "32MB",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        "log_min_messages": "warning",
    }
    lines = [f"{key} = '{value}'" for key, value in settings.items()]
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.write("\n# spark sandbox\n" + "\n".join(lines) + "\n")
    # Over TCP every role, the superuser too, proves a password: any local process can reach
    # 127.0.0.1. On the unix socket the postgres OS user is let in as itself (peer), which
    # pg_basebackup needs for a point-in-time restore drill, replication included.
    (data_dir / "pg_hba.conf").write_text(
        "local all         postgres peer\n"
        "local replication postgres peer\n"
        "local all         all      scram-sha-256\n"
        "host  all         all      127.0.0.1/32 scram-sha-256\n"
        "host  replication postgres 127.0.0.1/32 scram-sha-256\n"
    )


def accepts_queries(pg: Postgres) -> bool:
    import psycopg

    with psycopg.connect(pg.dsn("postgres"), connect_timeout=2) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def create_app_role_and_database(pg: Postgres) -> None:
    """``spark_app`` owns ``spark``, so migrations run as the app role own what they create."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(pg.dsn("postgres"), autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(pg.app_user), sql.Literal(pg.app_password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(pg.database), sql.Identifier(pg.app_user)
            )
        )
    # Tables a superuser creates (a migration run with the superuser DSN) stay usable by the app.
    with psycopg.connect(pg.dsn(pg.database), autocommit=True, connect_timeout=5) as conn:
        for objects in ("TABLES", "SEQUENCES"):
            conn.execute(
                sql.SQL(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT ALL ON {} TO {}"
                ).format(
                    sql.Identifier(pg.superuser), sql.SQL(objects), sql.Identifier(pg.app_user)
                )
            )


def take_base_backup(pg: Postgres, run_dir: Path) -> Path:
    """The deployment's base backup, as a nightly job would take it: ``pg_basebackup`` into
    ``run_dir/base_backup`` with its WAL streamed alongside (self-contained). Finishing it
    leaves a backup history file in ``pg_wal``, which is how G04 sees that a backup exists."""
    dest = run_dir / "base_backup"
    argv = [
        str(PG_BIN / "pg_basebackup"),
        "-D", str(dest),
        "-X", "stream",
        "-c", "fast",
        "--no-sync",
        "-l", "spark sandbox base backup",
        "-h", pg.host,
        "-p", str(pg.port),
        "-U", pg.superuser,
        "-w",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = pg.superuser_password
    log_path = run_dir / "logs" / "postgres.log"
    with open(log_path, "ab") as log:
        try:
            result = subprocess.run(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
                cwd="/",
                **run_as(SERVICE_USER),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceStartError("base_backup", argv, str(exc), tail(log_path)) from exc
    if result.returncode != 0:
        raise ServiceStartError(
            "base_backup", argv, f"pg_basebackup exited with {result.returncode}", tail(log_path)
        )
    return dest


def remove_run_dir(run_dir: Path) -> None:
    """Delete a stopped sandbox's run dir (cluster, archive, logs)."""
    shutil.rmtree(run_dir, ignore_errors=True)
