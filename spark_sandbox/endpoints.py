"""The endpoints contract: where each part of one running sandbox answers.

This is everything a client of the sandbox may rely on (the gate's target provider, the
``sandbox up`` state file, the benchmarks): plain values, no handle on the processes. The DSNs
carry their passwords, which are also listed by :meth:`Endpoints.secrets`, so that whoever
prints or stores an endpoint knows what to mask (:func:`redact` does it for DSN passwords).

Fields: ``api_url`` (the API behind the fault proxy: the canary track, this release),
``web_url`` (its web page), ``stable_api_url`` (the stable track, the previous release: the
same API without this release's defects, reached directly; its page is ``stable_web_url``),
``third_party_origin``, ``toxiproxy_url``, ``prometheus_url``, ``alertmanager_url``,
``alert_sink_url``, ``ntp_server`` (``host:port``), ``postgres_dsn`` (superuser, direct),
``app_dsn`` (what the API uses: fault proxy -> PgBouncer transaction pool), ``listen_dsn``
(PgBouncer session pool), ``pgbouncer_admin_dsn``, ``migrations_dir``, ``ops_dir`` (the ops
artefacts this deployment serves), ``run_dir``, ``defects``, ``pids`` (service name -> pid;
each service leads its own process group), the release it ships as a build pipeline would
name it (``artifact_path``, ``sbom_path``, ``provenance_path``), and its credentials
(``passwords`` by key, ``toxiproxy_token``: the fault proxy's per-run bearer token), and
``rollback_upstream`` (where a rollback points the fault proxy's ``spark_api``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
# The `track` target label of the API's two scrape targets (job spark-api): the canary track
# is ``api_url``, the stable track ``stable_api_url``.
CANARY_TRACK = "canary"
STABLE_TRACK = "stable"
PATH_FIELDS = (
    "migrations_dir",
    "ops_dir",
    "run_dir",
    "artifact_path",
    "sbom_path",
    "provenance_path",
)


@dataclass(frozen=True)
class Endpoints:
    """Where each part of one running sandbox answers, and what it releases."""

    api_url: str
    web_url: str
    stable_api_url: str
    third_party_origin: str
    toxiproxy_url: str
    prometheus_url: str
    alertmanager_url: str
    alert_sink_url: str
    ntp_server: str
    postgres_dsn: str
    app_dsn: str
    listen_dsn: str
    pgbouncer_admin_dsn: str
    migrations_dir: Path
    ops_dir: Path
    run_dir: Path
    artifact_path: Path
    sbom_path: Path
    provenance_path: Path
    defects: tuple[str, ...] = ()
    pids: Mapping[str, int] = field(default_factory=dict)
    # Every password a DSN above embeds, by key ("postgres_password", ...): a DSN may be shown
    # only where these are masked. Kept out of repr() like the token.
    passwords: Mapping[str, str] = field(default_factory=dict, repr=False)
    toxiproxy_token: str = field(default="", repr=False)
    # host:port the deployer's rollback points the fault proxy's spark_api at: the stable
    # track, which serves the previous release.
    rollback_upstream: str = ""

    @property
    def stable_web_url(self) -> str:
        return f"{self.stable_api_url}/"

    @property
    def oncall_readback_url(self) -> str:
        """Where the on-call receiver's notifications are read back (G07): the alert sink's
        ``GET /alerts``, since the sandbox points every receiver's webhook at the sink."""
        return f"{self.alert_sink_url}/alerts"

    @property
    def rollback_webhook_url(self) -> str:
        """Where a rollback's Slack-compatible notification goes: the alert sink's message log
        (``GET /messages`` reads it back)."""
        return f"{self.alert_sink_url}/messages"

    def secrets(self) -> dict[str, str]:
        """The credentials this sandbox created, by key: what a gate run must redact."""
        return {**self.passwords, "toxiproxy_token": self.toxiproxy_token}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: paths as strings, defects as a list."""
        data = asdict(self)
        for name in PATH_FIELDS:
            data[name] = str(data[name])
        data["defects"] = list(self.defects)
        data["pids"] = dict(self.pids)
        data["passwords"] = dict(self.passwords)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoints:
        """The inverse of :meth:`to_dict`; a KeyError or TypeError when a field is missing."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in PATH_FIELDS:
            values[name] = Path(values[name])
        values["defects"] = tuple(values.get("defects", ()))
        values["pids"] = {str(k): int(v) for k, v in values.get("pids", {}).items()}
        values["passwords"] = {str(k): str(v) for k, v in values.get("passwords", {}).items()}
        return cls(**values)


def redact(text: str) -> str:
    """``text`` with every DSN password replaced: conninfo ``password=`` and URL userinfo."""
    text = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text)
    return re.sub(r"(://[^/:@\s]+:)[^@\s]+@", r"\1***@", text)
