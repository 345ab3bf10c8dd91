"""The one redaction helper that everything writing a file or the terminal goes through.

Known secret values (read from the environment variables a target names) are replaced
wherever they appear; on top, patterns catch the common carriers of credentials so that a
secret nobody declared still does not reach the bundle: passwords in URLs and libpq conninfo
strings, bearer tokens, token-like query parameters and chat/webhook URLs.

Invariant: ``Redactor.text(t)`` contains no known secret, neither as it is nor in any of the
encodings that pytest and its plugins put text through on the way to a file or the terminal
(JSON string escaping with or without ``ensure_ascii``, HTML/XML character references with
or without quotes, Python's ``repr``, junitxml's ``#xNN`` for control characters, and
percent-encoding as in URLs), nor in any stack of up to three of them: pytest-html writes a
log as HTML-escaped text inside JSON inside an HTML attribute. Code that serialises redacts
the object first (``Redactor.value``); matching the encoded forms is for files that other
plugins write, which can only be scrubbed after the fact.
"""

from __future__ import annotations

import functools
import html
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words and digits
SHORT_TEXT = 256
SHORT_TEXTS_KEPT = 4096

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

# Characters that no encoding below changes: a run of them in a secret is in every encoded
# form of it, so one substring search tells whether any form can be in a text at all.
PLAIN = re.compile(r"[A-Za-z0-9_.~-]+")


def _python_repr(quote: str) -> Callable[[str], str]:
    def encode(text: str) -> str:
        out = []
        for char in text:
            if char == "\\" or char == quote:
                out.append("\\" + char)
            elif char.isprintable():
                out.append(char)
            else:
                out.append(repr(char)[1:-1])
        return "".join(out)

    return encode


def _replace_each(table: dict[str, str]) -> Callable[[str], str]:
    return lambda text: "".join(table.get(char, char) for char in text)


def _junit_control(text: str) -> str:
    # junitxml writes characters that XML 1.0 forbids as "#xNN"
    return "".join(f"#x{ord(c):02X}" if ord(c) < 0x20 and c not in "\t\n\r" else c for c in text)


def _lower_percent(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(text, safe=""))


def _upper_unicode_escape(text: str) -> str:
    return re.sub(r"\\u[0-9a-f]{4}", lambda m: "\\u" + m.group(0)[2:].upper(), text)


# Every encoding is applied character by character (a homomorphism on strings), which is what
# lets a secret's encoded forms be matched by one pattern built from its characters' forms.
ENCODINGS: tuple[Callable[[str], str], ...] = (
    lambda text: json.dumps(text)[1:-1],  # ensure_ascii: "\u015f"
    lambda text: _upper_unicode_escape(json.dumps(text)[1:-1]),  # "\u015F"
    lambda text: json.dumps(text, ensure_ascii=False)[1:-1],
    # JSON made safe for HTML (Jinja's tojson, Go's encoding/json)
    _replace_each(
        {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "'": "\\u0027", '"': '\\"', "\\": "\\\\"}
    ),
    lambda text: html.escape(text, quote=True),  # &quot; &#x27;
    lambda text: html.escape(text, quote=False),
    # MarkupSafe (Jinja's autoescape): &#34; &#39;
    _replace_each({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"}),
    # ElementTree attributes (junitxml)
    _replace_each(
        {
            "&": "&amp;",
            "<": "&lt;",
            ">": "&gt;",
            '"': "&quot;",
            "\n": "&#10;",
            "\r": "&#13;",
            "\t": "&#09;",
        }
    ),
    _replace_each({"'": "&apos;", '"': "&quot;", "&": "&amp;", "<": "&lt;", ">": "&gt;"}),
    _junit_control,
    # non-ASCII as numeric character references (ElementTree writing us-ascii)
    lambda text: text.encode("ascii", "xmlcharrefreplace").decode(),
    lambda text: "".join(c if c.isascii() else f"&#x{ord(c):x};" for c in text),
    lambda text: urllib.parse.quote(text, safe=""),
    _lower_percent,
    urllib.parse.quote_plus,
    _python_repr("'"),
    _python_repr(""),
)
ENCODING_DEPTH = 3


@functools.lru_cache(maxsize=1024)
def encoded_forms(char: str) -> tuple[str, ...]:
    """Every form of one character under up to ``ENCODING_DEPTH`` stacked encodings."""
    forms = {char}
    layer = {char}
    for _ in range(ENCODING_DEPTH):
        layer = {encode(form) for form in layer for encode in ENCODINGS} - forms
        forms |= layer
    return tuple(sorted(forms, key=lambda form: (-len(form), form)))


@dataclass(frozen=True)
class _Secret:
    value: str
    anchor: str  # in every encoded form; "" when the secret has no plain run
    pattern: re.Pattern[str] | None  # None: no character of it is ever encoded


def _compile(secret: str) -> _Secret:
    if PLAIN.fullmatch(secret):
        return _Secret(secret, secret, None)
    parts = []
    for char in secret:
        forms = encoded_forms(char)
        if len(forms) == 1:
            parts.append(re.escape(char))
        else:
            # Longest first, so "&amp;amp;" is taken whole rather than as "&" + "amp;amp;".
            parts.append("(?:" + "|".join(re.escape(f) for f in forms) + ")")
    anchor = max(PLAIN.findall(secret), key=len, default="")
    return _Secret(secret, anchor, re.compile("".join(parts)))


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: dict[str, _Secret] = {}
        self._ordered: tuple[_Secret, ...] = ()
        # Short texts repeat (dict keys, units, outcomes, nodeids in every phase's report):
        # their masked form is kept, and forgotten whenever a secret is added.
        self._short: dict[str, str] = {}
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Learn more secrets (the sandbox adds its passwords once it has started)."""
        fresh = {}
        for secret in secrets:
            # A secret that is itself percent-encoded (a password in a DSN) is also masked
            # as the library that decodes it will print it.
            for value in {secret, urllib.parse.unquote(secret or "")}:
                if len(value) >= MIN_SECRET_LENGTH and value not in self._secrets:
                    fresh[value] = _compile(value)
        if fresh:
            merged = {**self._secrets, **fresh}
            # Longest first, so a secret that contains another is masked whole. Swapped in
            # one assignment: a logging thread may be redacting while the sandbox adds.
            self._ordered = tuple(sorted(merged.values(), key=lambda s: len(s.value), reverse=True))
            self._secrets = merged
            self._short = {}

    def text(self, text: str) -> str:
        if len(text) > SHORT_TEXT:
            return self._mask(text)
        short = self._short
        masked = short.get(text)
        if masked is None:
            masked = self._mask(text)
            if len(short) >= SHORT_TEXTS_KEPT:
                short.clear()
            short[text] = masked
        return masked

    def _mask(self, text: str) -> str:
        absent: set[str] = set()
        for secret in self._ordered:
            # The anchor is a plain substring of every encoded form, so its absence rules
            # the secret out with one fast search. Masking never creates an anchor (MASK
            # is not plain), so an absent anchor stays absent for the rest of this text.
            if secret.anchor in absent:
                continue
            if secret.anchor not in text:
                absent.add(secret.anchor)
                continue
            if secret.pattern is None:
                text = text.replace(secret.value, MASK)
            else:
                text = secret.pattern.sub(MASK, text)
        lower = text.lower()
        for pattern, replacement, literals in PATTERNS:
            for literal in literals:
                if literal in lower:
                    text = pattern.sub(replacement, text)
                    break
        return text

    def value(self, value: object) -> object:
        """Redact every string inside a JSON-like value (before it is serialised)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def contains_secret(self, text: str) -> bool:
        return self.text(text) != text
