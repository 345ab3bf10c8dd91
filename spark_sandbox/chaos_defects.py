"""The seeded defects of the chaos scenarios (C1–C6), part of the registry in
:mod:`spark_sandbox.defects`.

Each one is harmless while nothing fails (every other gate passes with it) and breaks its
scenario's hypothesis only once the scenario's fault is active: what a chaos scenario exists
to find.
"""

from __future__ import annotations

from spark_sandbox.defect_kinds import AppDefect, Defect, OutboxDefect, breaks_of

CHAOS_DEFECTS: tuple[Defect, ...] = (
    # C1: under DB latency no connection frees up within the acquire timeout, or the order
    # transaction overruns its deadline; the API answers such a database timeout 500 without
    # Retry-After, so clients neither back off nor know that a retry is safe.
    AppDefect(
        name="db_timeout_answers_500",
        description="a database timeout is answered 500 instead of 503 with Retry-After",
        breaks=breaks_of(C1={"hypothesis_findings"}),
    ),
    # C4: while the consumer is unreachable the publisher marks each event published and
    # moves on: the backlog looks drained, and the outage's orders never reach the ledger.
    OutboxDefect(
        name="publisher_drops_events_in_outage",
        description="the publisher marks an event published when the consumer is unreachable",
        breaks=breaks_of(C4={"hypothesis_findings"}),
    ),
)
