"""The evidence bundle on disk: atomic, redacted writes (its text files: ``ritual.py``).

Every file is written to a temporary name and renamed, so a reader never sees half a file;
the signature (signing.py) is written last, which is what makes a bundle complete.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from pytest_spark.evidence.redact import Redactor


def new_run_id(now: dt.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class CheckRecord:
    """One test as the bundle tells it (a line of checks.jsonl)."""

    nodeid: str
    items: tuple[str, ...]
    outcome: str = "passed"
    duration: float = 0.0
    message: str = ""
    call_ran: bool = False  # its body ran (the call phase), not only setup and teardown
    evidence: dict[str, object] = field(default_factory=dict)

    def to_json(self, bundle: Path) -> dict[str, object]:
        evidence = dict(self.evidence)
        attachments = evidence.get("attachments", {})
        if isinstance(attachments, dict):
            evidence["attachments"] = {
                name: _relative(Path(str(path)), bundle) for name, path in attachments.items()
            }
        return {
            "nodeid": self.nodeid,
            "items": list(self.items),
            "outcome": self.outcome,
            "duration_s": round(self.duration, 6),
            "call_ran": self.call_ran,
            "message": self.message,
            **evidence,
        }


def _relative(path: Path, bundle: Path) -> str:
    try:
        return path.resolve().relative_to(bundle.resolve()).as_posix()
    except ValueError:
        return path.name


class Bundle:
    def __init__(self, root: Path, redactor: Redactor) -> None:
        self.root = root
        self.redactor = redactor
        # Read by every test's evidence: a path built once, not once per test.
        self.attachments_dir = root / "attachments"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, self.redactor.text(text).encode())

    def write_json(self, name: str, value: object) -> Path:
        text = json.dumps(self.redactor.value(value), indent=2, sort_keys=False) + "\n"
        return self.write_bytes(name, text.encode())

    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path

    def redact_in_place(self, name: str) -> None:
        """Scrub a file another plugin wrote (report.html, junit.xml) before it is signed.

        Those plugins escape what they embed (pytest-html: HTML-escaped JSON in an attribute;
        junitxml: XML entities), and the Redactor matches each secret's escaped forms too.
        Everything this bundle writes itself is masked before it is serialised instead.
        """
        path = self.root / name
        if path.exists():
            self.write_bytes(name, self.redactor.text(path.read_text("utf-8")).encode())

    def adopt(self, source: Path, name: str) -> None:
        """Copy a file written elsewhere (a user-chosen --html/--junitxml path) into the bundle.

        The source is scrubbed where it stands as well: a user-chosen report is a file of
        this run like the bundle's copy, and is read (and archived by CI) just the same.
        """
        if not source.exists():
            return
        text = source.read_text("utf-8")
        redacted = self.redactor.text(text)
        if redacted != text:
            tmp = source.with_name(f".tmp-{source.name}")
            tmp.write_bytes(redacted.encode())
            os.replace(tmp, source)
        self.write_bytes(name, redacted.encode())
