"""The web page with its security headers, and the CSP violation report collector."""

from __future__ import annotations

import html
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from spark_sandbox.app import metrics
from spark_sandbox.app.context import AppContext
from spark_sandbox.app.problems import Problem

MAX_REPORT_BYTES = 64 * 1024
KNOWN_DIRECTIVES = frozenset(
    {
        "default-src", "script-src", "script-src-elem", "script-src-attr", "style-src",
        "style-src-elem", "style-src-attr", "img-src", "connect-src", "font-src", "object-src",
        "media-src", "frame-src", "child-src", "worker-src", "manifest-src", "base-uri",
        "form-action", "frame-ancestors", "require-trusted-types-for", "trusted-types",
    }
)  # fmt: skip
# Every directive's series exists at 0 from start-up: T04 reads the counter, and a rule over
# a series that appears only with the first violation cannot be checked before it (nor fire).
for _directive in (*KNOWN_DIRECTIVES, "other"):
    metrics.CSP_VIOLATIONS.labels(directive=_directive)


def third_party_origins(ctx: AppContext) -> list[str]:
    """Origins the page loads scripts and assets from, in the order the page uses them."""
    origins = [ctx.settings.third_party_origin] if ctx.settings.third_party_origin else []
    if ctx.defect("unlisted_third_party") and ctx.settings.unlisted_origin:
        origins.append(ctx.settings.unlisted_origin)
    return origins


def content_security_policy(ctx: AppContext) -> str:
    origins = third_party_origins(ctx)
    script_src = ["'self'", *origins]
    img_src = ["'self'", *origins]
    if ctx.defect("unsafe_inline_csp"):
        script_src.append("'unsafe-inline'")
    directives = [
        "default-src 'self'",
        f"script-src {' '.join(script_src)}",
        "style-src 'self'",
        f"img-src {' '.join(img_src)}",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "report-uri /csp-report",
        "report-to csp-endpoint",
    ]
    if ctx.defect("inline_script_csp"):
        # Chromium batches Reporting API (report-to) deliveries for minutes and then ignores
        # report-uri; without report-to it POSTs each violation to report-uri at once, so the
        # blocked inline script of every page load is counted within a stage's window.
        directives.remove("report-to csp-endpoint")
    return "; ".join(directives)


def page_headers(ctx: AppContext, request: Request) -> dict[str, str]:
    # Reporting-Endpoints takes an absolute URL; the Host the browser used is the one to name
    # (behind the fault proxy that is the proxy's address, not the API's own port).
    endpoint = str(request.url.replace(path="/csp-report", query="", fragment=""))
    headers = {
        "Content-Security-Policy": content_security_policy(ctx),
        "Reporting-Endpoints": f'csp-endpoint="{endpoint}"',
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Embedder-Policy": "require-corp",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }
    if ctx.defect("no_coep"):
        del headers["Cross-Origin-Embedder-Policy"]
    return headers


# The inline_script_csp defect: a boot script written into the page, which script-src 'self'
# blocks (one violation per page load).
INLINE_BOOT_SCRIPT = "<script>window.sparkBoot = {track: 'canary'};</script>"


def render_page(ctx: AppContext, request: Request) -> Response:
    scripts = ['<script src="/static/app.js" defer></script>']
    if ctx.defect("inline_script_csp"):
        scripts.append(INLINE_BOOT_SCRIPT)
    assets = []
    for origin in third_party_origins(ctx):
        src = html.escape(origin, quote=True)
        scripts.append(f'<script src="{src}/widget.js" crossorigin="anonymous" defer></script>')
        assets.append(
            f'<img src="{src}/badge.svg" alt="market data partner" width="88" '
            'height="31" crossorigin="anonymous">'
        )
    script_tags = "\n".join(scripts)
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Spark: BIST equities</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/app.css">
{script_tags}
</head>
<body>
<header><h1>Spark</h1><span id="isolation">checking isolation…</span></header>
<main>
<table id="prices"><thead><tr><th>Symbol</th><th>Last</th><th>Time</th></tr></thead>
<tbody></tbody></table>
<p id="violations">CSP violations: <span id="violation-count">0</span></p>
</main>
<footer>{"".join(assets)}</footer>
</body>
</html>
"""
    return Response(body, media_type="text/html", headers=page_headers(ctx, request))


async def receive_csp_report(ctx: AppContext, request: Request) -> Response:
    if ctx.defect("csp_report_500"):
        return Response("internal error", status_code=500, media_type="text/plain")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if len(raw) > MAX_REPORT_BYTES:
        raise Problem(413, "csp_report_too_large", f"a CSP report is at most {MAX_REPORT_BYTES} B")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise Problem(400, "csp_report_malformed", "the report body is not JSON") from None
    if media_type == "application/csp-report":
        directives = [_legacy_report_directive(doc)]
    elif media_type == "application/reports+json":
        directives = _reporting_api_directives(doc)
    else:
        raise Problem(
            415,
            "csp_report_unsupported_type",
            "send application/csp-report (report-uri) or application/reports+json (report-to)",
        )
    for directive in directives:
        metrics.CSP_VIOLATIONS.labels(directive=directive).inc()
    return Response(status_code=204)


def _legacy_report_directive(doc: Any) -> str:
    report = doc.get("csp-report") if isinstance(doc, dict) else None
    if not isinstance(report, dict) or not isinstance(report.get("document-uri"), str):
        raise Problem(
            400,
            "csp_report_malformed",
            'expected {"csp-report": {"document-uri": …, "effective-directive": …}}',
        )
    directive = report.get("effective-directive") or report.get("violated-directive") or ""
    return _directive_label(directive)


def _reporting_api_directives(doc: Any) -> list[str]:
    if not isinstance(doc, list) or not doc:
        raise Problem(400, "csp_report_malformed", "expected a non-empty JSON array of reports")
    directives = []
    for report in doc:
        if not isinstance(report, dict) or report.get("type") != "csp-violation":
            raise Problem(400, "csp_report_malformed", 'each report needs type "csp-violation"')
        body = report.get("body")
        if not isinstance(body, dict) or not isinstance(body.get("documentURL"), str):
            raise Problem(400, "csp_report_malformed", "each report needs a body with documentURL")
        directives.append(_directive_label(body.get("effectiveDirective") or ""))
    return directives


def _directive_label(value: object) -> str:
    # Label values come from clients: keep the series count bounded.
    name = str(value).split(" ")[0].strip().lower()
    return name if name in KNOWN_DIRECTIVES else "other"
