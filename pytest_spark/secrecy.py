"""Keeping the run's secrets out of everything pytest and its plugins print or write.

Invariant: while a gate is in play, text that came from a test, a library or the environment
is masked by the run's one Redactor at the point where it enters pytest's own data (a
report, a log record, a warning, the session metadata, a parametrize id, a report header
line), before anything renders or serialises it. Every consumer then receives the same
masked text: the terminal, ``--log-file``, junitxml, pytest-html, the bundle and, under
pytest-xdist, the wire from a worker to the controller (the guard runs on workers too, so a
report is masked before it is sent). The after-the-fact scrub of report.html and junit.xml
(``Bundle.redact_in_place``) is a second line, not the first.
"""

from __future__ import annotations

import contextlib
import linecache
import logging
import warnings
from collections.abc import Callable, Generator
from typing import Any

import pytest

from pytest_spark.evidence.redact import Redactor

# pytest-html extras whose content is text (images and videos are base64 data).
TEXT_EXTRAS = frozenset({"text", "json", "url", "html"})


def redact_report(report: pytest.TestReport | pytest.CollectReport, redactor: Redactor) -> None:
    """Mask secrets in everything a test or collection report carries, keeping its shapes.

    The shapes are part of the contract with the report's readers: the terminal folds skips
    by their ``(path, lineno, reason)`` tuple and junitxml asserts it is one (a string there
    is an INTERNALERROR, and the skipped test would be left recorded as passed); the short
    summary, junitxml's ``message`` and xdist's serialisation read the fields of an exception
    repr. So a tuple stays a tuple, a string a string, and an exception repr is masked field
    by field; only if a secret still shows in its rendering (one split across lines) is it
    replaced by its masked text.
    """
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):
        report.longrepr = tuple(  # type: ignore[assignment]
            redactor.text(part) if isinstance(part, str) else part for part in longrepr
        )
    elif isinstance(longrepr, str):
        report.longrepr = redactor.text(longrepr)
    elif longrepr is not None:
        rendered = str(longrepr)
        if redactor.contains_secret(rendered):
            mask_within(longrepr, redactor)
            rendered = str(longrepr)
            if redactor.contains_secret(rendered):
                report.longrepr = redactor.text(rendered)
    if report.sections:
        report.sections = [
            (redactor.text(title), redactor.text(body)) for title, body in report.sections
        ]
    properties = getattr(report, "user_properties", None)
    if properties:
        report.user_properties = [  # type: ignore[union-attr]
            (name, _masked_property(value, redactor)) for name, value in properties
        ]
    wasxfail = getattr(report, "wasxfail", None)
    if isinstance(wasxfail, str):
        report.wasxfail = redactor.text(wasxfail)  # type: ignore[union-attr]
    redact_extras(report, redactor)
    # The gate's own spark_* attributes are left as they are: they only travel to the
    # controller, and the bundle masks them as it serialises them.


def redact_extras(report: pytest.TestReport | pytest.CollectReport, redactor: Redactor) -> None:
    """Mask pytest-html extras: text extras are embedded base64-encoded, out of a scrub's reach."""
    for extra in getattr(report, "extras", None) or ():
        if not isinstance(extra, dict) or extra.get("format_type") not in TEXT_EXTRAS:
            continue
        content = extra.get("content")
        if isinstance(content, bytes):
            with contextlib.suppress(UnicodeDecodeError):
                extra["content"] = redactor.text(content.decode("utf-8")).encode("utf-8")
        else:
            extra["content"] = redactor.value(content)
        if isinstance(extra.get("name"), str):
            extra["name"] = redactor.text(extra["name"])


def _masked_property(value: object, redactor: Redactor) -> object:
    if isinstance(value, str):
        return redactor.text(value)
    shown = str(value)  # what junitxml writes
    return redactor.text(shown) if redactor.contains_secret(shown) else value


def mask_within(obj: Any, redactor: Redactor, seen: set[int] | None = None) -> Any:
    """Mask every string inside a terminal repr (pytest's ``ReprEntry``, ``ReprFileLocation``
    and the like), in place where the containers allow; returns the masked object."""
    if isinstance(obj, str):
        return redactor.text(obj)
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return obj
    if isinstance(obj, tuple):
        parts = [mask_within(part, redactor, seen) for part in obj]
        return type(obj)(*parts) if hasattr(obj, "_fields") else tuple(parts)
    if isinstance(obj, list):
        seen.add(id(obj))
        obj[:] = [mask_within(part, redactor, seen) for part in obj]
    elif isinstance(obj, dict):
        seen.add(id(obj))
        for key, value in obj.items():
            obj[key] = mask_within(value, redactor, seen)
    elif hasattr(obj, "toterminal") and hasattr(obj, "__dict__"):
        seen.add(id(obj))
        for name, value in list(vars(obj).items()):
            # A frozen repr keeps its text; the caller's re-check falls back to a string.
            with contextlib.suppress(AttributeError):
                setattr(obj, name, mask_within(value, redactor, seen))
    return obj


class RedactingLogRecords:
    """A log record factory that masks a record's text as the record is made.

    A factory rather than a handler or filter: pytest's logging plugin adds and removes its
    handlers (live logging, ``--log-file``, the per-phase capture behind the "Captured log"
    sections and ``caplog``) around every test phase, and their classes are private, so
    there is nothing stable to attach to; a library's own handler would bypass them anyway.
    Every record is made by the factory before any handler sees it.

    A record whose rendered message holds a secret gets the masked text as ``msg`` and no
    ``args``; other records are left as made, so ``caplog`` assertions on ``args`` still hold.
    """

    def __init__(self, redactor: Redactor, previous: Callable[..., logging.LogRecord]) -> None:
        self.redactor = redactor
        self.previous = previous
        self.active = True

    @classmethod
    def install(cls, redactor: Redactor) -> RedactingLogRecords:
        factory = cls(redactor, logging.getLogRecordFactory())
        logging.setLogRecordFactory(factory)
        return factory

    def uninstall(self) -> None:
        # Another factory may have wrapped this one since: then this one only stops masking.
        self.active = False
        if logging.getLogRecordFactory() is self:
            logging.setLogRecordFactory(self.previous)

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if self.active:
            self.mask(record)
        return record

    def mask(self, record: logging.LogRecord) -> None:
        redactor = self.redactor
        try:
            message = record.getMessage()
        except Exception:
            # A bad format is logging's own error to report at emit time; it prints the msg
            # and args, so those are masked and the mismatch is left for it to find.
            if isinstance(record.msg, str):
                record.msg = redactor.text(record.msg)
            record.args = _masked_args(record.args, redactor)
        else:
            masked = redactor.text(message)
            if masked != message:
                record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            # Rendered here as logging.Formatter would, so no handler renders it unmasked.
            rendered = logging.Formatter().formatException(record.exc_info)
            masked = redactor.text(rendered)
            if masked != rendered:
                record.exc_text = masked
        elif record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)


def _masked_args(args: Any, redactor: Redactor) -> Any:
    if isinstance(args, tuple):
        return tuple(redactor.text(a) if isinstance(a, str) else a for a in args)
    if isinstance(args, dict):
        return {k: redactor.text(v) if isinstance(v, str) else v for k, v in args.items()}
    return args


class SecretGuard:
    """The plugin that holds a gate run's Redactor and masks text where it enters pytest.

    It keeps a reference to the run's Redactor, not a copy: the sandbox adds its passwords to
    that object once it has started. Registered (controller and xdist workers alike) only
    while a gate with a bundle is in play.
    """

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._records: RedactingLogRecords | None = None

    # -- the session ------------------------------------------------------------------------

    def pytest_configure(self, config: pytest.Config) -> None:
        # Replayed when the guard is registered during pytest_configure (a historic hook):
        # pytest-metadata, also tryfirst, may already have gathered its metadata by then.
        if self._records is None:
            self._records = RedactingLogRecords.install(self.redactor)
        metadata = _session_metadata(config)
        if metadata is not None:
            self.pytest_metadata(metadata, config)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._records is not None:
            self._records.uninstall()
            self._records = None

    @pytest.hookimpl(optionalhook=True)
    def pytest_metadata(self, metadata: dict[str, Any], config: pytest.Config) -> None:
        """pytest-metadata's values (``--metadata``, CI variables): the ``-v`` header and
        pytest-html's Environment table print them. Masked in place: an xdist worker hands
        this very dict to the controller."""
        for key in list(metadata):
            masked_key = self.redactor.text(key) if isinstance(key, str) else key
            value = self.redactor.value(metadata[key])
            if masked_key != key:
                del metadata[key]
            metadata[masked_key] = value

    # -- what the terminal prints around the tests ------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_report_header(self) -> Generator[None, list[Any], list[Any]]:
        return self._masked_lines((yield))

    @pytest.hookimpl(wrapper=True)
    def pytest_report_collectionfinish(self) -> Generator[None, list[Any], list[Any]]:
        return self._masked_lines((yield))

    def _masked_lines(self, results: list[Any]) -> list[Any]:
        return [
            self.redactor.text(r) if isinstance(r, str) else [self.redactor.text(x) for x in r]
            for r in results
        ]

    @pytest.hookimpl(tryfirst=True)
    def pytest_make_parametrize_id(
        self, config: pytest.Config, val: object, argname: str
    ) -> str | None:
        # A string parameter becomes part of the test id, which is in every line and file.
        if isinstance(val, str) and self.redactor.contains_secret(val):
            return self.redactor.text(val)
        return None

    # -- reports ----------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report = yield
        redact_report(report, self.redactor)
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # pytest-html attaches extras in its own tryfirst makereport wrapper, i.e. after the
        # GateRun masked the report; this runs before any reader (and xdist's sender).
        redact_extras(report, self.redactor)

    @pytest.hookimpl(tryfirst=True)
    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage) -> None:
        """The terminal's warnings summary renders ``str(message)`` and the source line
        (``line``, or read from ``filename:lineno``); xdist sends the same fields."""
        message = warning_message.message
        text = str(message)
        masked = self.redactor.text(text)
        if masked != text:
            warning_message.message = _masked_warning(message, masked)
        line = warning_message.line
        if line is None and warning_message.filename:
            line = linecache.getline(warning_message.filename, warning_message.lineno)
        if line and self.redactor.contains_secret(line):
            warning_message.line = self.redactor.text(line)

    @pytest.hookimpl(tryfirst=True)
    def pytest_internalerror(self, excrepr: object) -> None:
        mask_within(excrepr, self.redactor)

    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # pytest.exit(msg) and KeyboardInterrupt: the terminal prints the message last.
        value = excinfo.value
        text = str(value)
        masked = self.redactor.text(text)
        if masked != text:
            value.args = (masked,)
            if isinstance(getattr(value, "msg", None), str):
                value.msg = masked  # type: ignore[attr-defined]


def _masked_warning(message: Warning | str, masked: str) -> Warning | str:
    if isinstance(message, str):
        return masked
    category = type(message)
    try:
        # Same class, no instance attributes: xdist rebuilds a warning from its class and
        # args, and a custom attribute could carry the secret along.
        replacement = category.__new__(category)
        replacement.args = (masked,)
        if str(replacement) == masked:
            return replacement
    except Exception:
        pass
    return UserWarning(masked)


def _session_metadata(config: pytest.Config) -> dict[str, Any] | None:
    try:
        from pytest_metadata.plugin import metadata_key
    except ImportError:
        return None
    return config.stash.get(metadata_key, None)
