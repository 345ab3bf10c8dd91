"""G07 Alert delivery: a synthetic page reaches the on-call receiver end to end within 30 s.

B8 judges the alerting as it is configured (burn-rate rules loaded, nothing silenced, every
release alert routed to a receiver with an integration); G07 sends one page through it. A
synthetic alert labelled ``severity="page"`` and a unique ``gate_run`` is posted to
Alertmanager (``alertmanager_url``), and the notifications the on-call receiver got are read
back (``oncall_readback_url``) until one carries that ``gate_run`` under the on-call
receiver's name. The page is resolved whatever happened, and the evidence notes whether the
resolved notification followed.

On a real deployment this pages whoever is on call: the page says it is synthetic and
resolves itself within seconds (``docs/alert-delivery.md``).
"""

from __future__ import annotations

import time

import pytest

from pytest_spark import CheckEvidence, Reach
from pytest_spark.probes import alertmanager
from pytest_spark.probes.alertmanager import Notification, SyntheticAlert
from pytest_spark.probes.waiting import Deadline, Waited, wait_until
from suites.limits import Limits

pytestmark = pytest.mark.go_nogo("G07")


def _await_notification(
    readback_url: str,
    page: SyntheticAlert,
    receiver: str,
    status: str,
    deadline: Deadline,
    pause_s: float,
) -> Waited[list[Notification]]:
    return wait_until(
        deadline,
        f"a {status} notification of gate_run {page.gate_run} via {receiver}",
        lambda _: alertmanager.fetch_notifications(readback_url),
        lambda got: alertmanager.delivered_to(got, page.gate_run, receiver, status) is not None,
        pause_s=pause_s,
    )


def test_synthetic_page_reaches_the_on_call_receiver(
    reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    g07 = limits.g07
    receiver = g07.oncall_receiver
    page = alertmanager.synthetic_page()
    with reach("alertmanager_url", "oncall_readback_url") as [am_url, readback_url]:
        posted = time.monotonic()
        # Made after `posted`, so a page that never arrives measures at least the limit: the
        # check then fails on the elapsed time, not on a value standing in for "never".
        deadline = Deadline.after(g07.alert_delivery_s)
        alertmanager.fire(am_url, page)
        try:
            waited = _await_notification(
                readback_url, page, receiver, "firing", deadline, g07.readback_poll_s
            )
            seconds = time.monotonic() - posted
            config = alertmanager.fetch_config(am_url)
        finally:
            alertmanager.resolve(am_url, page)
        resolved = (
            _await_notification(
                readback_url,
                page,
                receiver,
                "resolved",
                Deadline.after(g07.resolved_wait_s),
                g07.readback_poll_s,
            )
            if waited.done
            else None
        )
    [routes] = alertmanager.describe_routes(config, {page.labels["alertname"]: page.labels})
    seen = "; ".join(n.describe() for n in alertmanager.of_run(waited.value, page.gate_run))
    spark_evidence.note(
        f"posted {dict(page.labels)} to {am_url}/api/v2/alerts; routing there: {routes}; "
        f"read back from {readback_url}: {waited.describe()}; this page's notifications: "
        f"{seen or 'none'}"
    )
    spark_evidence.note(
        "resolved (endsAt now): "
        + (
            resolved.describe()
            if resolved is not None
            else "no resolved notification awaited, since the page itself never arrived"
        )
    )
    spark_evidence.check(
        "alert_delivery_s",
        round(seconds, 3),
        limit=g07.alert_delivery_s,
        unit="s",
        why=f"the synthetic page (gate_run {page.gate_run}) did not reach the on-call receiver "
        f"{receiver} within {g07.alert_delivery_s:g} s: the read-back got {seen or 'nothing'}; "
        f"Alertmanager routes it {routes} — check that receiver's integration (webhook URL, "
        "credentials) and Alertmanager's log for failed notifications: a page that reaches "
        "nobody is an outage nobody hears of",
    )
