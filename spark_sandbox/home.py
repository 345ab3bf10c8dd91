"""The sandbox home, its key, and the sealed JSON files a later start may act on.

The home is ``<temp dir>/spark-sandbox-<uid>``: the same from every working directory, and
reachable by the ``postgres`` user (``$XDG_RUNTIME_DIR`` is 0700, so PostgreSQL could not run
below it). It is the default run root and state dir, and holds the release cache.

Every run record and state file carries an HMAC made with this user's key
(``<home>/sandbox.key``, 0600, created on first use). A file without it (damaged,
hand-written, another user's) names nothing that is stopped or removed, and the refusal is
reported. Files are read only when they are regular, single-link files of this user, never
through a symlink.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from spark_sandbox.services.process import ServiceStartError

KEY_FILE = "sandbox.key"
KEY_BYTES = 32
# A run record or state file is a few kB; anything far larger is not one of ours.
MAX_RECORD_BYTES = 1 << 20

log = logging.getLogger("spark_sandbox")

Report = Callable[[str], None]


def warn(line: str) -> None:
    """The default report: a warning on the ``spark_sandbox`` logger (stderr when unconfigured)."""
    log.warning("spark sandbox: %s", line)


class NotOurs(Exception):
    """A run dir, run record or state file this project cannot vouch for; the message says why."""


class RunDirGone(NotOurs):
    """A state file of ours whose run dir no longer exists (removed by hand, or a reboot)."""


def home_dir() -> Path:
    """``<temp dir>/spark-sandbox-<uid>``: this user's sandbox home, from any directory."""
    return Path(tempfile.gettempdir()) / f"spark-sandbox-{os.geteuid()}"


def sandbox_home() -> Path:
    """:func:`home_dir`, created 0755 when missing. The temp dir is shared, so a home that is a
    symlink, belongs to someone else or is writable by others is refused, not used."""
    home = home_dir()
    with contextlib.suppress(FileExistsError):
        home.mkdir(mode=0o755)
    info = home.lstat()
    if (
        stat.S_ISLNK(info.st_mode)
        or not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.geteuid()
        or info.st_mode & 0o022
    ):
        raise ServiceStartError(
            "sandbox",
            [],
            f"{home} is not a directory of uid {os.geteuid()} that only it may write (someone "
            "else may have created it); remove it, or set TMPDIR to another temp dir",
            "",
        )
    if stat.S_IMODE(info.st_mode) != 0o755:
        home.chmod(0o755)  # made under umask 077: the postgres user could not reach its runs
    return home


def run_key() -> bytes:
    """This user's key for run records and state files, made on first use (0600)."""
    path = sandbox_home() / KEY_FILE
    if not os.path.lexists(path):
        draft = path.with_name(f".{KEY_FILE}.{os.getpid()}.{threading.get_ident()}")
        draft.unlink(missing_ok=True)  # left by a killed start that had this pid
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(KEY_BYTES))
        try:
            os.link(draft, path)  # never replaces a key another start made meanwhile
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise _bad_key(path, exc.strerror or str(exc)) from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        key = handle.read(KEY_BYTES + 1)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise _bad_key(path, "not a 0600 file of this user")
    if len(key) != KEY_BYTES:
        raise _bad_key(path, f"{len(key)} bytes, not {KEY_BYTES}")
    return key


def _bad_key(path: Path, why: str) -> ServiceStartError:
    return ServiceStartError(
        "sandbox",
        [],
        f"the sandbox key {path} cannot be used ({why}); remove it, then remove leftover run "
        f"dirs in {path.parent} by hand (they can no longer be verified)",
        "",
    )


def seal(document: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """``document`` with its HMAC-SHA256 under ``key`` in ``"mac"``."""
    body = {k: v for k, v in document.items() if k != "mac"}
    return {**body, "mac": _mac(body, key)}


def unseal(document: Any, key: bytes, what: str) -> dict[str, Any]:
    """``document`` without its MAC, if the MAC is right; NotOurs otherwise."""
    if not isinstance(document, dict):
        raise NotOurs(f"{what} is not a JSON object")
    body = {k: v for k, v in document.items() if k != "mac"}
    mac = document.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(body, key)):
        raise NotOurs(
            f"{what} does not carry this user's sandbox MAC (damaged, hand-written, or "
            "written with another key)"
        )
    return body


def _mac(body: Mapping[str, Any], key: bytes) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


# -- files ------------------------------------------------------------------------------------


def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Write to a temp name and rename, so readers never see half a file; owner-only, because
    the state holds the sandbox's DSNs with their passwords."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a killed writer with this pid: O_EXCL would refuse it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_owned_json(path: Path, what: str) -> Any:
    """JSON from a regular file of this user with a single link, never through a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise NotOurs(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise NotOurs(f"{what} {path} cannot be opened safely ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
            raise NotOurs(f"{what} {path} is not a regular, single-link file of this user")
        raw = handle.read(MAX_RECORD_BYTES + 1)
    if len(raw) > MAX_RECORD_BYTES:
        raise NotOurs(f"{what} {path} is larger than {MAX_RECORD_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError:
        raise NotOurs(f"{what} {path} is not JSON") from None
