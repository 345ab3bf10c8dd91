"""Reading the supply-chain inputs: JSON documents and artefact digests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class SupplyChainError(RuntimeError):
    """An SBOM, policy or provenance input that cannot be used at all."""


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SupplyChainError(f"{what} {path}: {exc}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artefact_digests(paths: Iterable[Path]) -> dict[str, str]:
    """File name -> sha256 of each artefact file (a directory counts file by file)."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return {p.name: sha256_file(p) for p in files}
