"""The one redaction helper that everything writing a file or the terminal goes through.

Known secret values (read from the environment variables a target names) are replaced
wherever they appear; on top, patterns catch the common carriers of credentials so that a
secret nobody declared still does not reach the bundle: passwords in URLs and libpq conninfo
strings, bearer tokens, token-like query parameters and chat/webhook URLs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words and digits

# (pattern, replacement, literals): a pattern runs only when one of its literals occurs in the
# lower-cased text, so large files (report.html) pay for the patterns that can match at all.
PATTERNS: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = (
    # scheme://user:password@host -> scheme://user:***@host (anchored on the "://" literal)
    (re.compile(r"(?P<head>://[^\s/:@]*:)[^\s@/]+(?=@)"), r"\g<head>***", ("://",)),
    # libpq conninfo and similar key=value strings
    (
        re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)('[^']*'|\S+)", re.I),
        r"\g<head>***",
        ("passw", "pwd"),
    ),
    (re.compile(r"(?P<head>\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.I), r"\g<head>***", ("bearer",)),
    (
        re.compile(
            r"(?P<head>[?&](?:token|access_token|api_key|apikey|key|secret|signature|sig)=)"
            r"[^&\s\"']+",
            re.I,
        ),
        r"\g<head>***",
        ("token=", "key=", "secret=", "sig=", "signature="),
    ),
    # Slack/Teams/Discord style webhook URLs carry their secret in the path.
    (
        re.compile(
            r"https?://(?:hooks\.slack\.com|[a-z0-9.-]*webhook[a-z0-9.-]*|discord(?:app)?\.com"
            r"/api/webhooks)[^\s\"'<>]*",
            re.I,
        ),
        "<webhook-url redacted>",
        ("hooks.slack", "webhook", "discord"),
    ),
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
        "<private key redacted>",
        ("private key-----",),
    ),
)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._ordered: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self._secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)
        self._ordered = sorted(self._secrets, key=len, reverse=True)

    def text(self, text: str) -> str:
        # Longest first, so a secret that contains another is masked whole.
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        lower = text.lower()
        for pattern, replacement, literals in PATTERNS:
            if any(literal in lower for literal in literals):
                text = pattern.sub(replacement, text)
        return text

    def value(self, value: object) -> object:
        """Redact every string inside a JSON-like value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def contains_secret(self, text: str) -> bool:
        return self.text(text) != text
