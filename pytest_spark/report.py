"""How the verdict reads: the HTML sign-off section, the terminal table, the header line."""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence

from pytest_spark.gate import SATISFIED, Verdict, severity_rank

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
        '<p id="spark-headline"><b>{why}</b></p>'
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
        why=e(headline(verdict)),
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


# "B5     FAILED          ": where a reason starts, and where its wrapped lines go on.
REASON_COLUMN = 23


def terminal_lines(verdict: Verdict, width: int = 100) -> list[str]:
    """The item table and blockers for the terminal summary (the final line is separate).

    A reason is wrapped, never cut: the part cut off is often the sub-check that failed."""
    reason_width = max(20, width - REASON_COLUMN - 1)
    lines = [f"{'item':<6} {'status':<15} reason"]
    for r in verdict.items.values():
        wrapped = textwrap.wrap(r.reason, reason_width, break_on_hyphens=False) or [""]
        lines.append(f"{r.id:<6} {r.status:<15} {wrapped[0]}")
        lines.extend(" " * REASON_COLUMN + more for more in wrapped[1:])
    for blocker in verdict.blockers:
        lines.append(f"blocker: {blocker}")
    for w in verdict.waivers:
        lines.append(f"waiver: {w['item']} {w['ticket']} approved by {w['approver']}")
    lines.extend(textwrap.wrap(headline(verdict), max(40, width), break_on_hyphens=False))
    return lines


def headline(verdict: Verdict) -> str:
    """The verdict in one line: "NO-GO: 1 item FAILED (B5); 21 items MISSING (G04, T01–T14)"."""
    unsatisfied: dict[str, list[str]] = {}
    for r in verdict.items.values():
        if r.status not in SATISFIED:
            unsatisfied.setdefault(r.status, []).append(r.id)
    ranked = sorted(unsatisfied.items(), key=lambda kv: severity_rank(kv[0]))
    parts = [f"{_count(len(ids))} {status} ({id_ranges(ids)})" for status, ids in ranked]
    if verdict.blockers:
        parts.append(f"{len(verdict.blockers)} blocker(s)")
    if not parts:
        return f"{verdict.verdict}: {_count(len(verdict.items))} satisfied"
    return f"{verdict.verdict}: " + "; ".join(parts)


def id_ranges(ids: Iterable[str]) -> str:
    """``T01, T02, T03, G04`` -> ``T01–T03, G04``: runs of consecutive numbers of one prefix."""
    runs: list[list[tuple[str, int, str]]] = []
    for item_id in ids:
        match = re.fullmatch(r"([A-Za-z]+)(\d+)", item_id)
        key = (match.group(1), int(match.group(2)), item_id) if match else (item_id, -1, item_id)
        last = runs[-1][-1] if runs else None
        if last and match and last[0] == key[0] and last[1] + 1 == key[1]:
            runs[-1].append(key)
        else:
            runs.append([key])
    shown = [
        ", ".join(k[2] for k in run) if len(run) < 3 else f"{run[0][2]}–{run[-1][2]}"
        for run in runs
    ]
    return ", ".join(shown)


def _count(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def final_line(verdict: Verdict) -> str:
    return f"SPARK GATE {verdict.gate}: {verdict.verdict}"
