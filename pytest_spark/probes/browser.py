"""B5 browser I/O: load the web page in Debian's Chromium through Playwright and record what a
user's browser sees: the document's headers, every request the page makes, whether it ended up
cross-origin isolated, and the CSP violations its own ``securitypolicyviolation`` listener saw.

``playwright install`` downloads browsers and cannot run here: the Chromium of the Debian
package is launched instead (``$SPARK_CHROMIUM`` overrides which binary). Not imported by
``pytest_spark.plugin`` (loading the plugin must not import Playwright).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Browser, Error, Page, Request, Response, sync_playwright

from pytest_spark.probes.csp_allowlist import PageRequest

CHROMIUM_ENV = "SPARK_CHROMIUM"
# Without these a headless Chromium in a container without user namespaces or a GPU fails to
# start, and background services (updates, sync, QUIC probing) would make requests of their own.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
# What the page's own script (static/app.js) collects: the listener must be same-origin code,
# an inline one would be blocked by the very policy it watches.
VIOLATIONS_JS = "() => (window.sparkCspViolations || []).map(v => ({...v}))"
WIDGET_MARK_JS = "() => document.documentElement.dataset.thirdPartyWidget || null"


class BrowserProbeError(RuntimeError):
    """Chromium could not be found or started, or the page could not be loaded."""


def chromium_executable() -> str:
    """``$SPARK_CHROMIUM``, else the ``chromium`` of the Debian package on PATH."""
    chosen = os.environ.get(CHROMIUM_ENV) or shutil.which("chromium")
    if not chosen:
        raise BrowserProbeError(
            "no Chromium: install Debian's package (apt-get install chromium) or set "
            f"{CHROMIUM_ENV} to the browser binary; `playwright install` cannot be used here"
        )
    return chosen


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium for the session; closed (and the Playwright driver stopped) after."""
    executable = chromium_executable()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
            )
        except Error as exc:
            raise BrowserProbeError(f"Chromium {executable} did not start: {exc}") from exc
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageVisit:
    """What one load of the page showed in the browser."""

    url: str
    status: int
    headers: dict[str, str]
    # Every Content-Security-Policy field of the document: the policies the browser enforced.
    csp: tuple[str, ...]
    cross_origin_isolated: bool
    requests: list[PageRequest] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    third_party_widget: str | None = None
    user_agent: str = ""


def visit(browser: Browser, url: str, timeout_s: float, settle_s: float) -> PageVisit:
    """Load ``url`` in a fresh context, wait for ``load`` plus ``settle_s`` (violations and
    late subresources arrive after it), and read what the page saw."""
    context = browser.new_context()
    try:
        page = context.new_page()
        requests: list[PageRequest] = []
        failed: list[str] = []
        page.on("request", lambda r: requests.append(PageRequest(r.url, r.resource_type)))
        page.on("requestfailed", lambda r: failed.append(_failure(r)))
        # WebSockets are not `request` events, yet they are origins the page talks to.
        page.on("websocket", lambda ws: requests.append(PageRequest(ws.url, "websocket")))
        try:
            response = page.goto(url, wait_until="load", timeout=timeout_s * 1000)
        except Error as exc:
            raise BrowserProbeError(f"Chromium could not load {url}: {exc.message}") from exc
        if response is None:
            raise BrowserProbeError(f"Chromium got no response for {url}")
        try:
            page.wait_for_timeout(settle_s * 1000)
            return _seen(page, response, url, requests, failed)
        except Error as exc:
            raise BrowserProbeError(
                f"Chromium could not read the page {url}: {exc.message}"
            ) from exc
    finally:
        context.close()


def _seen(
    page: Page, response: Response, url: str, requests: list[PageRequest], failed: list[str]
) -> PageVisit:
    return PageVisit(
        url=url,
        status=response.status,
        headers={k.lower(): v for k, v in response.all_headers().items()},
        csp=tuple(response.header_values("content-security-policy")),
        cross_origin_isolated=bool(page.evaluate("() => window.crossOriginIsolated")),
        requests=list(requests),
        failed_requests=list(failed),
        violations=list(page.evaluate(VIOLATIONS_JS)),
        third_party_widget=page.evaluate(WIDGET_MARK_JS),
        user_agent=str(page.evaluate("() => navigator.userAgent")),
    )


def _failure(request: Request) -> str:
    return f"{request.resource_type} {request.url}: {request.failure or 'failed'}"
