"""One frozen SparkConfig per run, resolved once: CLI > env > ini > target file > defaults.

Secrets never live here: a target file names the *environment variables* that hold them
(``[secrets]``), and code asks ``Target.secret(name)`` at the moment it connects.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SANDBOX = "sandbox"
DEPLOYMENT = "deployment"
TARGET_TABLES = frozenset({"target", "endpoints", "secrets", "settings", "chaos"})
# [chaos] of a target file: the opt-in a non-loopback target needs before any fault is injected.
CHAOS_KEYS = {"chaos_allowed": bool, "proxies": list}
RELEASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# name -> (CLI flag, env var, ini key, help, default); ini keys are "spark_" + name.
OPTIONS: dict[str, tuple[str, str, str, str | None]] = {
    "target": (
        "--spark-target",
        "SPARK_TARGET",
        "'sandbox' (the embedded sandbox, default) or a target TOML file, e.g. "
        "targets/example-staging.toml",
        SANDBOX,
    ),
    "release": ("--spark-release", "SPARK_RELEASE", "release being gated, e.g. v1.4.0", "dev"),
    "gate": (
        "--spark-gate",
        "SPARK_GATE",
        "pin the gate (go_nogo, contract, chaos, canary, ...): the run is refused unless -m "
        "names this gate, so a CI job cannot be pointed at another gate by editing -m",
        None,
    ),
    "evidence_dir": (
        "--spark-evidence-dir",
        "SPARK_EVIDENCE_DIR",
        "where bundles go: <dir>/<release>/<run-id>/",
        "reports",
    ),
    "signing_key": (
        "--spark-signing-key",
        "SPARK_SIGNING_KEY",
        "ed25519 private key: a PEM file path, or env:VAR for a PEM held in environment "
        "variable VAR; without one the bundle is dev-signed with a throw-away key",
        None,
    ),
    "checklist": ("--spark-checklist", "SPARK_CHECKLIST", "checklist registry file", None),
    "waivers": ("--spark-waivers", "SPARK_WAIVERS", "waivers file", None),
    "stage": (
        "--spark-stage",
        "SPARK_STAGE",
        "canary stage in percent of traffic, one of the stages of ops/canary-plan.toml "
        "(1, 5, 25, 50, 100)",
        None,
    ),
    "stage_since": (
        "--spark-stage-since",
        "SPARK_STAGE_SINCE",
        "when the canary stage started: UTC ISO 8601 (2026-11-29T10:15:00Z) or Unix seconds; "
        "the stage's window ends now and must lie inside it",
        None,
    ),
}
# Options a target file may default under [settings] (the target itself cannot be one).
TARGET_SETTINGS = frozenset(OPTIONS) - {"target"}
DEFAULT_CHECKLIST = "ops/checklist.toml"
DEFAULT_WAIVERS = "ops/waivers.toml"


class TargetConfigError(LookupError):
    """A check needs an endpoint or secret that the target does not provide."""


@dataclass(frozen=True)
class Target:
    """What the suites measure: endpoints, secret env names, and facts about the target."""

    name: str
    kind: str
    path: Path | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, object] = field(default_factory=dict)
    # Credentials a target provider created (the sandbox's passwords and tokens), by key:
    # a check reaches them with require() like any endpoint, and the run redacts them.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    # [chaos]: ``chaos_allowed`` (bool) and ``proxies`` (the Toxiproxy proxies the chaos gate
    # may put faults on); a non-loopback target without both is refused before any traffic.
    chaos: Mapping[str, object] = field(default_factory=dict)

    @property
    def is_sandbox(self) -> bool:
        return self.kind == SANDBOX

    @property
    def conditions(self) -> frozenset[str]:
        """Facts that make conditional checklist items required (``required_when``)."""
        return frozenset(
            name.removesuffix("_url") for name, value in self.endpoints.items() if value
        )

    def require(self, key: str) -> str:
        """An endpoint or a secret the check needs; a missing one fails the check (NO-GO).

        The error names the key and where to set it, since "unreachable" is not a pass.
        """
        if self.endpoints.get(key):
            return self.endpoints[key]
        if self.secrets.get(key):
            return self.secrets[key]
        var = self.secret_env.get(key)
        if var and os.environ.get(var):
            return os.environ[var]
        where = f"target file {self.path}" if self.path else f"target {self.name}"
        if var:
            raise TargetConfigError(
                f"{key}: environment variable {var} (named in [secrets] of {where}) is not set"
            )
        raise TargetConfigError(
            f"{key}: not configured; add it under [endpoints] (or [secrets] for a credential) "
            f"in {where}"
        )

    def secret_values(self) -> list[str]:
        """Values of every secret the target names or holds, for redaction; unset ones are
        skipped."""
        named = [os.environ[var] for var in self.secret_env.values() if os.environ.get(var)]
        return named + [value for value in self.secrets.values() if value]


@dataclass(frozen=True)
class SparkConfig:
    rootdir: Path
    target: Target
    release: str
    gate: str | None
    evidence_dir: Path
    signing_key: str | None
    checklist_path: Path
    # Named by an option, variable, ini key or target setting: a missing file is then a typo.
    checklist_explicit: bool
    waivers_path: Path
    stage: int | None
    # Unix seconds when the canary stage started (--spark-stage-since); None when not given.
    stage_since: float | None = None


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("spark", "Spark release gate")
    for name, (flag, env, help_text, default) in OPTIONS.items():
        group.addoption(flag, dest=f"spark_{name}", default=None, help=f"{help_text} [env {env}]")
        # No ini default: an unset ini key must let the target file's [settings] through.
        parser.addini(f"spark_{name}", f"{help_text} (default: {default})", type="string")


def resolve(config: pytest.Config, gates: Mapping[str, str] | None = None) -> SparkConfig:
    """Build the SparkConfig; every problem is a UsageError naming the option and the fix."""
    rootdir = Path(config.rootpath)

    def pick(name: str) -> str | None:
        _, env, _, _ = OPTIONS[name]
        cli = config.getoption(f"spark_{name}")
        if cli is not None:
            return str(cli)
        if os.environ.get(env):
            return os.environ[env]
        ini = config.getini(f"spark_{name}")
        return str(ini) if ini not in (None, "") else None

    target = load_target(pick("target") or SANDBOX, rootdir)

    def setting(name: str) -> str | None:
        value = pick(name)
        if value is None and name in target.settings:
            value = str(target.settings[name])
        return value if value is not None else OPTIONS[name][3]

    release = setting("release") or "dev"
    if not RELEASE_NAME.match(release):
        raise pytest.UsageError(
            f"--spark-release {release!r}: use letters, digits, '.', '_' and '-' only "
            "(it names files in the evidence bundle)"
        )
    stage = _stage(setting("stage"), target, rootdir)
    since_text = setting("stage_since")
    stage_since = _instant(since_text) if since_text is not None else None
    if stage_since is not None and stage is None:
        raise pytest.UsageError("--spark-stage-since needs --spark-stage: which stage began then?")
    return SparkConfig(
        rootdir=rootdir,
        target=target,
        release=release,
        gate=setting("gate"),
        evidence_dir=_path(rootdir, setting("evidence_dir") or "reports"),
        signing_key=setting("signing_key"),
        checklist_path=_path(rootdir, setting("checklist") or DEFAULT_CHECKLIST),
        checklist_explicit=setting("checklist") is not None,
        waivers_path=_path(rootdir, setting("waivers") or DEFAULT_WAIVERS),
        stage=stage,
        stage_since=stage_since,
    )


def _stage(text: str | None, target: Target, rootdir: Path) -> int | None:
    """The canary stage, checked against the plan's stages (``canary-plan.toml`` in the
    target's ``ops_dir``, else the repository's ``ops/``)."""
    if text is None:
        return None
    from pytest_spark.canary_plan import PLAN_FILE, load_plan
    from pytest_spark.ops import OpsFileError

    ops_dir = _path(rootdir, target.endpoints.get("ops_dir") or "ops")
    try:
        percents = load_plan(ops_dir).percents
    except OpsFileError as exc:
        raise pytest.UsageError(
            f"--spark-stage {text}: the canary plan cannot be read: {exc}"
        ) from None
    if not text.isdigit() or int(text) not in percents:
        raise pytest.UsageError(
            f"--spark-stage {text!r}: a canary stage is one of "
            + ", ".join(map(str, percents))
            + f" (the stages of {ops_dir / PLAN_FILE})"
        )
    return int(text)


def _instant(text: str) -> float:
    """Unix seconds from ``2026-11-29T10:15:00Z`` (UTC, an offset allowed) or ``1796..``."""
    import datetime as dt

    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise pytest.UsageError(
            f"--spark-stage-since {text!r}: give UTC ISO 8601 with its zone "
            "(2026-11-29T10:15:00Z) or Unix seconds"
        )
    return when.timestamp()


def _path(rootdir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else rootdir / path


def load_target(value: str, rootdir: Path) -> Target:
    """``sandbox`` or a TOML target file -> Target (a bad file is a UsageError)."""
    if value == SANDBOX:
        return Target(name=SANDBOX, kind=SANDBOX)
    path = _path(rootdir, value)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise pytest.UsageError(
            f"--spark-target {value}: no such file; pass 'sandbox' or a target TOML file "
            "(see targets/example-staging.toml)"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise pytest.UsageError(f"--spark-target {value}: cannot read {path}: {exc}") from None
    unknown = set(raw) - TARGET_TABLES
    if unknown:
        raise pytest.UsageError(
            f"{path}: unknown table(s) {sorted(unknown)}; a target file has "
            + ", ".join(f"[{t}]" for t in sorted(TARGET_TABLES))
        )
    meta = raw.get("target", {})
    endpoints = raw.get("endpoints", {})
    secrets = raw.get("secrets", {})
    settings = raw.get("settings", {})
    for table, content in (("target", meta), ("endpoints", endpoints), ("secrets", secrets)):
        if not isinstance(content, dict):
            raise pytest.UsageError(f"{path}: [{table}] must be a table")
        bad = [k for k, v in content.items() if not isinstance(v, str)]
        if bad:
            raise pytest.UsageError(f"{path}: [{table}] values must be strings: {bad}")
    if set(meta) - {"name", "kind"}:
        raise pytest.UsageError(
            f"{path}: [target] takes name and kind; unknown: {sorted(set(meta) - {'name', 'kind'})}"
        )
    if not isinstance(settings, dict) or set(settings) - TARGET_SETTINGS:
        unknown_settings = (
            sorted(set(settings) - TARGET_SETTINGS) if isinstance(settings, dict) else []
        )
        raise pytest.UsageError(
            f"{path}: [settings] {unknown_settings} unknown; it takes {sorted(TARGET_SETTINGS)}"
        )
    chaos = _chaos_table(raw.get("chaos", {}), path)
    leaked = [k for k in endpoints if re.search(r"://[^/@:]+:[^/@]+@", endpoints[k])]
    if leaked:
        raise pytest.UsageError(
            f"{path}: [endpoints] {leaked} carry a password; put the URL in an environment "
            "variable and name that variable under [secrets]"
        )
    kind = meta.get("kind", DEPLOYMENT)
    if kind not in (SANDBOX, DEPLOYMENT):
        raise pytest.UsageError(
            f"{path}: [target] kind = {kind!r}; use {DEPLOYMENT!r} (a real deployment) or "
            f"{SANDBOX!r} (the embedded sandbox)"
        )
    if kind == SANDBOX and (endpoints or secrets):
        # The embedded sandbox brings its own endpoints: a file that names others would be
        # measured as the sandbox (and dev-signed) while it claims to be something else.
        raise pytest.UsageError(
            f"{path}: kind = 'sandbox' with [endpoints]/[secrets]: the embedded sandbox "
            "discovers its own; set kind = 'deployment' to measure these endpoints"
        )
    return Target(
        name=str(meta.get("name", path.stem)),
        kind=str(kind),
        path=path,
        endpoints=dict(endpoints),
        secret_env=dict(secrets),
        settings=dict(settings),
        chaos=chaos,
    )


def _chaos_table(chaos: object, path: Path) -> dict[str, object]:
    """``[chaos]``: ``chaos_allowed = true`` and ``proxies = ["spark_db", ...]``, or nothing."""
    if not isinstance(chaos, dict):
        raise pytest.UsageError(f"{path}: [chaos] must be a table")
    for key, value in chaos.items():
        kind = CHAOS_KEYS.get(key)
        if kind is None:
            raise pytest.UsageError(
                f"{path}: [chaos] {key!r} unknown; it takes chaos_allowed (true/false) and "
                "proxies (the Toxiproxy proxy names the chaos gate may fault)"
            )
        if not isinstance(value, kind) or (
            isinstance(value, list) and not all(isinstance(v, str) for v in value)
        ):
            wanted = "true or false" if kind is bool else "a list of proxy names"
            raise pytest.UsageError(f"{path}: [chaos] {key} must be {wanted}")
    return dict(chaos)
