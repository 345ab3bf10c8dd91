"""How the verdict reads: the HTML sign-off section, the terminal table, the header line."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from pytest_spark.gate import Verdict

STATUS_COLOURS = {
    "PASSED": "#1a7f37",
    "WAIVED": "#9a6700",
    "NOT-REQUIRED": "#57606a",
}
NOT_PASSED_COLOUR = "#cf222e"


def signoff_html(
    verdict: Verdict,
    *,
    target: str,
    run_id: str,
    signing: Mapping[str, str],
    evidence_files: Sequence[str],
    reproduce: str,
) -> str:
    """The sign-off section placed at the top of report.html."""
    e = html.escape
    colour = STATUS_COLOURS["PASSED"] if verdict.go else NOT_PASSED_COLOUR
    rows = "".join(
        f"<tr><td>{e(r.id)}</td><td>{e(r.title)}</td>"
        f'<td style="color:{STATUS_COLOURS.get(r.status, NOT_PASSED_COLOUR)};font-weight:bold">'
        f"{e(r.status)}</td><td>{e(r.reason)}</td></tr>"
        for r in verdict.items.values()
    )
    blockers = "".join(f"<li>{e(b)}</li>" for b in verdict.blockers) or "<li>none</li>"
    waivers = (
        "".join(
            f"<li>{e(w['item'])}: {e(w['reason'])} (ticket {e(w['ticket'])}, "
            f"by {e(w['author'])}, approved by {e(w['approver'])}, expires {e(w['expires'])})</li>"
            for w in verdict.waivers
        )
        or "<li>none</li>"
    )
    files = "".join(f"<li><code>{e(f)}</code></li>" for f in evidence_files)
    return (
        '<section id="spark-signoff" style="border:2px solid {c};padding:8px;margin:8px 0">'
        '<h2 style="color:{c}">Spark release gate: {v}</h2>'
        "<p>gate <b>{g}</b> · release <b>{rel}</b> · target <b>{t}</b> · run <code>{run}</code></p>"
        "<p>signed {mode} · key <code>{fp}</code> · verify with "
        "<code>spark-gate verify &lt;bundle&gt;</code></p>"
        "<p>reproduce: <code>{repro}</code></p>"
        '<table class="spark-items" border="1" cellpadding="3" style="border-collapse:collapse">'
        "<tr><th>item</th><th>title</th><th>status</th><th>reason</th></tr>{rows}</table>"
        "<h3>Blockers</h3><ul>{blockers}</ul><h3>Waivers</h3><ul>{waivers}</ul>"
        "<h3>Evidence files</h3><ul>{files}</ul></section>"
    ).format(
        c=colour,
        v=e(verdict.verdict),
        g=e(verdict.gate),
        rel=e(verdict.release),
        t=e(target),
        run=e(run_id),
        mode=e(signing.get("mode", "")),
        fp=e(signing.get("key_fingerprint", "")),
        repro=e(reproduce),
        rows=rows,
        blockers=blockers,
        waivers=waivers,
        files=files,
    )


def terminal_lines(verdict: Verdict, width: int = 100) -> list[str]:
    """The item table and blockers for the terminal summary (the final line is separate)."""
    reason_width = max(20, width - 28)
    lines = [f"{'item':<6} {'status':<15} reason"]
    for r in verdict.items.values():
        reason = r.reason if len(r.reason) <= reason_width else r.reason[: reason_width - 1] + "…"
        lines.append(f"{r.id:<6} {r.status:<15} {reason}")
    for blocker in verdict.blockers:
        lines.append(f"blocker: {blocker}")
    for w in verdict.waivers:
        lines.append(f"waiver: {w['item']} {w['ticket']} approved by {w['approver']}")
    return lines


def final_line(verdict: Verdict) -> str:
    return f"SPARK GATE {verdict.gate}: {verdict.verdict}"
