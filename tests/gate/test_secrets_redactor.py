"""The Redactor's encoded forms, the log record factory and shape-keeping report masking."""

from __future__ import annotations

import html
import json
import logging
import sys
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import markupsafe
import pytest

from pytest_spark.evidence.redact import MASK, Redactor
from pytest_spark.secrecy import RedactingLogRecords, mask_within, redact_report

SECRETS = [
    "h4rdPfx\"<&\\ğ%'>sfxW9Zq",  # every escaped character, with plain ends
    "Žluťoučký-kůň-🐎-pw",  # non-ASCII only (JSON \uXXXX incl. a surrogate pair)
    "line1\nline2\ttab-pw",  # characters XML attributes write as &#10; and &#09;
    "\"<&>'",  # no plain character at all: no anchor to pre-screen on
]


def _element(text: str, encoding: str) -> str:
    element = ET.Element("testcase", message=text)
    element.text = text
    written = ET.tostring(element, encoding=encoding)
    return written if isinstance(written, str) else written.decode(encoding)


SERIALISERS: dict[str, Callable[[str], str]] = {
    "json": json.dumps,
    "json-utf8": lambda s: json.dumps(s, ensure_ascii=False),
    "html-quote": lambda s: html.escape(s, quote=True),
    "html-text": lambda s: html.escape(s, quote=False),
    "jinja-autoescape": lambda s: str(markupsafe.escape(s)),
    # pytest-html 4.2: escaped log text, in JSON, in an autoescaped data-jsonblob attribute
    "pytest-html-log": lambda s: str(markupsafe.escape(json.dumps({"log": [html.escape(s)]}))),
    "pytest-html-cell": lambda s: str(markupsafe.escape(json.dumps({"cell": s}))),
    "junitxml-utf8": lambda s: _element(s, "unicode"),
    "etree-us-ascii": lambda s: _element(s, "us-ascii"),
    "url-query": lambda s: "https://x.example/?a=" + urllib.parse.quote(s, safe=""),
    "url-form": lambda s: "a=" + urllib.parse.quote_plus(s),
    "repr": repr,
    "repr-in-json": lambda s: json.dumps(f"assert {s!r} == 'x'"),
}


@pytest.mark.parametrize("secret", SECRETS, ids=["escaped", "non-ascii", "whitespace", "no-anchor"])
@pytest.mark.parametrize("serialise", list(SERIALISERS.values()), ids=list(SERIALISERS))
def test_every_encoded_form_is_masked(secret: str, serialise: Callable[[str], str]) -> None:
    # The whole encoded secret, and nothing around it, becomes the mask: what the file would
    # hold had the mask been serialised in the secret's place.
    placeholder = "Q9placeholderQ9"  # plain: every serialiser writes it as it is
    expected = serialise(f"before {placeholder} after").replace(placeholder, MASK)
    assert Redactor([secret]).text(serialise(f"before {secret} after")) == expected


def test_masking_keeps_json_and_xml_well_formed() -> None:
    secret = SECRETS[0]
    redactor = Redactor([secret])
    assert json.loads(redactor.text(json.dumps({"k": f"x {secret} y"}))) == {"k": "x *** y"}
    element = ET.fromstring(redactor.text(_element(f"x {secret} y", "unicode")))
    assert element.get("message") == "x *** y" and element.text == "x *** y"


def test_longest_first_and_percent_decoded_forms() -> None:
    redactor = Redactor(["abcd1234", "abcd1234-and-more", "p%40ss-word"])
    assert redactor.text("abcd1234-and-more / abcd1234") == "*** / ***"
    assert redactor.text("password p@ss-word") == "password ***"


def test_ordinary_text_is_left_alone() -> None:
    redactor = Redactor(SECRETS)
    text = 'plain "quoted" <b>&amp; 100% h4rdPfx but not the rest'
    assert redactor.text(text) == text


def test_a_secret_added_later_is_masked_by_the_same_object() -> None:
    redactor = Redactor()
    redactor.add(["sandbox-pw-1234"])
    assert redactor.text(json.dumps("sandbox-pw-1234")) == '"***"'


# -- logging ----------------------------------------------------------------------------------


@pytest.fixture
def masking_factory() -> Iterator[RedactingLogRecords]:
    factory = RedactingLogRecords.install(Redactor(["tok_live_51HxQv9aZ", SECRETS[0]]))
    yield factory
    factory.uninstall()


def _record(msg: object, *args: object) -> logging.LogRecord:
    return logging.getLogger("spark.test").makeRecord(
        "spark.test", logging.INFO, __file__, 1, msg, args, None
    )


def test_a_record_with_a_secret_is_rendered_and_masked(
    masking_factory: RedactingLogRecords,
) -> None:
    record = _record("token %s for %r", "tok_live_51HxQv9aZ", SECRETS[0])
    assert (record.msg, record.args) == ("token *** for '***'", ())
    assert record.getMessage() == "token *** for '***'"


def test_a_record_without_a_secret_keeps_its_args(masking_factory: RedactingLogRecords) -> None:
    record = _record("offset %d ms", 12)
    assert (record.msg, record.args) == ("offset %d ms", (12,))


def test_a_bad_format_is_left_for_logging_to_report(masking_factory: RedactingLogRecords) -> None:
    record = _record("token %s %s", "tok_live_51HxQv9aZ")
    assert record.args == ("***",)
    with pytest.raises(TypeError):
        record.getMessage()


def test_exception_text_and_stack_are_masked(masking_factory: RedactingLogRecords) -> None:
    try:
        raise ConnectionError("refused tok_live_51HxQv9aZ")
    except ConnectionError:
        record = logging.getLogger("spark.test").makeRecord(
            "spark.test",
            logging.ERROR,
            __file__,
            1,
            "down",
            (),
            sys.exc_info(),
            sinfo="Stack (most recent call last):\n  tok_live_51HxQv9aZ",
        )
    formatted = logging.Formatter().format(record)
    assert "tok_live_51HxQv9aZ" not in formatted and "ConnectionError: refused ***" in formatted


def test_uninstall_restores_or_steps_aside() -> None:
    original = logging.getLogRecordFactory()
    factory = RedactingLogRecords.install(Redactor(["tok_live_51HxQv9aZ"]))
    factory.uninstall()
    assert logging.getLogRecordFactory() is original
    factory = RedactingLogRecords.install(Redactor(["tok_live_51HxQv9aZ"]))

    def wrapping(*args: object, **kwargs: object) -> logging.LogRecord:
        return factory(*args, **kwargs)

    logging.setLogRecordFactory(wrapping)  # another library wrapped ours meanwhile
    try:
        factory.uninstall()
        assert logging.getLogRecordFactory() is wrapping
        assert _record("tok_live_51HxQv9aZ").msg == "tok_live_51HxQv9aZ"
    finally:
        logging.setLogRecordFactory(original)


# -- reports ----------------------------------------------------------------------------------


def _report(longrepr: Any) -> pytest.TestReport:
    return pytest.TestReport(
        "t.py::test",
        ("t.py", 1, "test"),
        {},
        "skipped",
        longrepr,
        "call",
        sections=[("Captured stdout call", "tok_live_51HxQv9aZ")],
        user_properties=[("token", "tok_live_51HxQv9aZ"), ("n", 3)],
    )


def test_a_skip_stays_a_tuple() -> None:
    report = _report(("t.py", 3, "Skipped: no route with tok_live_51HxQv9aZ"))
    redact_report(report, Redactor(["tok_live_51HxQv9aZ"]))
    assert report.longrepr == ("t.py", 3, "Skipped: no route with ***")
    assert report.sections == [("Captured stdout call", "***")]
    assert report.user_properties == [("token", "***"), ("n", 3)]


def test_an_exception_repr_keeps_its_type_and_crash_message() -> None:
    with pytest.raises(ConnectionError) as excinfo:
        raise ConnectionError("refused tok_live_51HxQv9aZ")
    longrepr = excinfo.getrepr(showlocals=True)
    report = _report(longrepr)
    redact_report(report, Redactor(["tok_live_51HxQv9aZ"]))
    assert report.longrepr is longrepr
    assert longrepr.reprcrash is not None
    assert longrepr.reprcrash.message == "ConnectionError: refused ***"
    assert "tok_live_51HxQv9aZ" not in str(longrepr)


def test_a_repr_without_the_secret_is_not_touched() -> None:
    with pytest.raises(ValueError) as excinfo:
        raise ValueError("plain")
    longrepr = excinfo.getrepr()
    before = str(longrepr)
    assert mask_within(longrepr, Redactor(["tok_live_51HxQv9aZ"])) is longrepr
    assert str(longrepr) == before
