"""The feature-flag document that GET /api/flags serves, read from a TOML file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

# The flags the two flag defects touch: the first flag loses its default, the first risky
# flag is switched on for everyone.
IMPLICIT_DEFAULT_DEFECT = "implicit_flag_default"
RISKY_ON_DEFECT = "risky_flag_on"


def load_flags(path: Path, defects: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``{"version", "flags": [{"name", "default", "risky", "rollout_percent", …}]}``."""
    with path.open("rb") as fh:
        doc = tomllib.load(fh)
    flags = [{"name": name, **spec} for name, spec in doc.get("flags", {}).items()]
    if IMPLICIT_DEFAULT_DEFECT in defects and flags:
        flags[0].pop("default", None)
    if RISKY_ON_DEFECT in defects:
        risky = next((f for f in flags if f.get("risky")), None)
        if risky is not None:
            risky["default"] = True
            risky["rollout_percent"] = 100
    return {"version": doc.get("version", 1), "source": path.name, "flags": flags}
