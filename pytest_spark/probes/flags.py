"""B7 feature flags: validate the flag document, grade defaults and risky flags, compare the
served document with the declared one, and time the flag service.

The document shape (what ``GET /api/flags`` serves, and ``ops/flags.toml`` declares as
``[flags.<name>]`` tables)::

    {"version": 1, "flags": [{"name": "margin_trading", "default": false, "risky": true,
                              "rollout_percent": 0, "description": "…", "owner": "risk"}]}

Pure logic, and the read of the declared file; the service is fetched (and timed) by
:meth:`pytest_spark.probes.spark_api.SparkApi.fetch_flags` into a :class:`FlagFetch`.
"""

from __future__ import annotations

import statistics
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

# Fields a served flag must carry, with their types; a missing ``default`` is the very defect
# B7 exists for (a client then falls back to whatever its SDK assumes).
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "default": bool,
    "risky": bool,
}
OPTIONAL_FIELDS: dict[str, type | tuple[type, ...]] = {
    "rollout_percent": (int, float),
    "description": str,
    "owner": str,
}
# Keys of a declared [flags.<name>] table (its name is the table's).
FLAG_KEYS = ("default", "risky", "rollout_percent", "description", "owner")
# Fields whose served value must equal the declared one: they decide who gets the feature.
BEHAVIOUR_FIELDS = ("default", "risky", "rollout_percent")


@dataclass(frozen=True)
class FlagFinding:
    flag: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.flag}: {self.detail}"


def document_problems(doc: Any) -> list[str]:
    """Why ``doc`` is not a valid flag document (empty when it is). Only the shape is judged
    here; a missing or non-boolean ``default`` is graded by :func:`implicit_defaults`."""
    if not isinstance(doc, Mapping):
        return [f"the document is a JSON {type(doc).__name__}, not an object"]
    problems = []
    if not isinstance(doc.get("version"), int) or isinstance(doc.get("version"), bool):
        problems.append("version is missing or not an integer")
    flags = doc.get("flags")
    if not isinstance(flags, list):
        return [*problems, "flags is missing or not a list"]
    seen: set[str] = set()
    for index, flag in enumerate(flags):
        if not isinstance(flag, Mapping):
            problems.append(f"flags[{index}] is not an object")
            continue
        name = flag.get("name")
        label = name if isinstance(name, str) else f"flags[{index}]"
        if not isinstance(name, str) or not name:
            problems.append(f"{label}: name is missing or not a string")
        elif name in seen:
            problems.append(f"{label}: served twice")
        else:
            seen.add(name)
        for key, kind in {**REQUIRED_FIELDS, **OPTIONAL_FIELDS}.items():
            if key == "default" or key not in flag:
                continue
            value = flag[key]
            if isinstance(value, bool) and kind is not bool:
                problems.append(f"{label}: {key} = {value!r} is a boolean")
            elif not isinstance(value, kind):
                problems.append(f"{label}: {key} = {value!r} has the wrong type")
        if "risky" not in flag:
            problems.append(f"{label}: risky is missing (every flag is classified)")
        rollout = flag.get("rollout_percent")
        if _is_number(rollout) and not 0 <= rollout <= 100:
            problems.append(f"{label}: rollout_percent = {rollout} is outside 0..100")
    return problems


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def declared_document(path: Path) -> dict[str, Any]:
    """``ops/flags.toml`` in the served shape: ``[flags.<name>]`` tables become a list."""
    with path.open("rb") as handle:
        raw = tomllib.load(handle)
    _refuse_unknown(path, "the top level", raw, {"version", "flags"})
    tables = raw.get("flags", {})
    for name, spec in tables.items() if isinstance(tables, Mapping) else ():
        if isinstance(spec, Mapping):
            _refuse_unknown(path, f"[flags.{name}]", spec, set(FLAG_KEYS))
    flags = [{"name": name, **spec} for name, spec in tables.items() if isinstance(spec, Mapping)]
    return {"version": raw.get("version"), "flags": flags}


def _refuse_unknown(path: Path, where: str, table: Mapping[str, Any], known: set[str]) -> None:
    """A misspelt key (``defualt``) would be read as a flag without it; name it instead.
    Missing or mistyped known keys stay findings of the checks, not load errors."""
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {', '.join(unknown)} in {where}, which takes "
            f"{', '.join(sorted(known))}"
        )


def flags_by_name(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        str(flag["name"]): flag
        for flag in doc.get("flags", [])
        if isinstance(flag, Mapping) and isinstance(flag.get("name"), str)
    }


def implicit_defaults(doc: Mapping[str, Any]) -> list[FlagFinding]:
    """Flags without an explicit boolean ``default``."""
    findings = []
    for name, flag in flags_by_name(doc).items():
        if "default" not in flag:
            findings.append(FlagFinding(name, "implicit_default", "no default"))
        elif not isinstance(flag["default"], bool):
            findings.append(
                FlagFinding(name, "implicit_default", f"default {flag['default']!r} not a boolean")
            )
    return findings


def risky_flags_on(doc: Mapping[str, Any], first_stage_percent: float) -> list[FlagFinding]:
    """Risky flags that do not start off: on by default, or rolled out beyond the first
    canary stage. A risky flag must be raised stage by stage with the canary."""
    findings = []
    for name, flag in flags_by_name(doc).items():
        if flag.get("risky") is not True:
            continue
        rollout = flag.get("rollout_percent")
        if flag.get("default") is True:
            findings.append(FlagFinding(name, "risky_on", "risky but on by default"))
        elif flag.get("default") is not False:
            # Without a default the SDK decides; a risky flag must say "off" itself.
            findings.append(FlagFinding(name, "risky_on", "risky without an explicit off"))
        if _is_number(rollout) and rollout > first_stage_percent:
            findings.append(
                FlagFinding(
                    name,
                    "risky_on",
                    f"risky but rolled out to {rollout:g} % (> first canary stage "
                    f"{first_stage_percent:g} %)",
                )
            )
    return findings


def drift(served: Mapping[str, Any], declared: Mapping[str, Any]) -> list[FlagFinding]:
    """How the served document differs from the declared source of truth: flags missing or
    unknown, and flags whose default, risk or rollout differ."""
    served_flags, declared_flags = flags_by_name(served), flags_by_name(declared)
    findings = [
        FlagFinding(name, "not_served", "declared in flags.toml but not served")
        for name in sorted(declared_flags.keys() - served_flags.keys())
    ]
    findings += [
        FlagFinding(name, "undeclared", "served but not declared in flags.toml")
        for name in sorted(served_flags.keys() - declared_flags.keys())
    ]
    for name in sorted(served_flags.keys() & declared_flags.keys()):
        for key in BEHAVIOUR_FIELDS:
            have = served_flags[name].get(key, "<absent>")
            want = declared_flags[name].get(key, "<absent>")
            if have != want or type(have) is not type(want):
                findings.append(
                    FlagFinding(name, "differs", f"{key} served {have!r}, declared {want!r}")
                )
    return findings


def describe(findings: Sequence[FlagFinding]) -> str:
    return "; ".join(str(f) for f in findings)


# --- I/O ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagFetch:
    """One GET of the flag service, timed from request to a fully read body."""

    status: int
    latency_ms: float
    content_type: str
    document: Any
    error: str = ""


def median_latency_ms(fetches: Sequence[FlagFetch]) -> float:
    return statistics.median(f.latency_ms for f in fetches)
