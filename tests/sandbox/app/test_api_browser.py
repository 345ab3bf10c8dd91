"""The page in a real Chromium: cross-origin isolated, third-party assets load, CSP reports."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_harness import Api, exported, wait_until

from spark_sandbox.services.ports import free_port
from spark_sandbox.services.process import ServiceProcess

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]  # fmt: skip


@pytest.fixture(scope="module")
def third_party_origin(log_dir: Path) -> Iterator[str]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "uvicorn", "spark_sandbox.app.thirdparty:app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip
    server = ServiceProcess(
        "third-party",
        argv,
        log_path=log_dir / f"third-party-{port}.log",
        ready=lambda: httpx.get(f"{origin}/health", timeout=1).status_code == 200,
    )
    server.start()
    try:
        yield origin
    finally:
        server.stop()


@contextlib.contextmanager
def open_page(api: Api) -> Iterator[Any]:
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.goto(api.base_url + "/")
            yield page
        finally:
            browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_page_is_isolated_loads_its_third_party_and_sees_violations(
    api_factory: Callable[..., Api], third_party_origin: str
) -> None:
    api = api_factory(extra_env={"SPARK_THIRD_PARTY_ORIGIN": third_party_origin})
    with open_page(api) as page:
        # page.evaluate goes through DevTools, so the page's CSP (no eval) does not stop it.
        wait_until(
            lambda: page.evaluate("document.querySelectorAll('#prices tbody tr').length") == 8,
            timeout=10,
            what="WebSocket prices in the table",
        )
        assert page.evaluate("crossOriginIsolated") is True
        assert page.evaluate("document.documentElement.dataset.thirdPartyWidget") == "loaded"
        assert page.evaluate("document.querySelector('footer img').naturalWidth") == 88
        assert page.evaluate("window.sparkCspViolations") == []
        # An inline script is exactly what the policy forbids: it must be blocked and seen.
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.inlineRan = true'; document.body.appendChild(s); }"
        )
        assert page.evaluate("window.inlineRan === undefined") is True
        violations = page.evaluate("window.sparkCspViolations")
    # The report itself goes out through the Reporting API (report-to wins over report-uri in
    # Chromium), which batches delivery; POST /csp-report is tested directly instead.
    assert violations == [
        {"blockedURI": "inline", "effectiveDirective": "script-src-elem", "disposition": "enforce"}
    ]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_the_inline_script_defect_sends_one_report_per_page_load(
    api_factory: Callable[..., Api],
) -> None:
    """S6 counts violation reports over a 15 s window: each load of the canary's page must
    reach the collector from a real browser within it, one report per load."""
    api = api_factory(defects=("inline_script_csp",))
    loads = 2

    def reports() -> float:
        with api.client() as client:
            page = client.get("/metrics").text
        return exported(page, "spark_csp_violations_total", directive="script-src-elem")

    before = reports()
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            for _ in range(loads):
                context = browser.new_context()
                page = context.new_page()
                page.goto(api.base_url + "/", wait_until="load")
                assert page.evaluate("window.sparkBoot === undefined") is True  # blocked
                context.close()
            wait_until(lambda: reports() >= before + loads, timeout=10, what="a report per load")
        finally:
            browser.close()
    time.sleep(0.5)  # a second report per load would have arrived by now
    assert reports() == before + loads
