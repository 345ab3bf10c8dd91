"""M3 Money is a decimal string in JSON and ``numeric`` in the database, never a float.

Drawn orders across every band: each money field of the order answer, the order read back and
the account's positions must be a plain decimal string at its scale (I-JSON, RFC 7493) equal to
what the database stored; no money column may be ``real``/``double precision``; and the API's
own precision-error counter (rollback trigger T14) must stay at zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st

from pytest_spark import CheckEvidence, Reach
from pytest_spark.probes import money, orders, prometheus
from pytest_spark.probes.postgres import Postgres
from pytest_spark.probes.spark_api import PRECISION_ERRORS, SparkApi, Ticket, new_account, new_key
from suites.limits import Limits

pytestmark = pytest.mark.money("M3")

# Scale of each money field on the wire (docs/reference-api.md).
ORDER_SCALES = {"price": 2, "commission": 2}
POSITION_SCALES = {"average_price": 4, "realised_pnl": 2}
MARKET_SCALES = {"base_price": 2, "last_price": 2, "tick": 2}


def drawn_tickets(instrument: money.Instrument) -> st.SearchStrategy[tuple[str, str, int, Any]]:
    prices = money.aligned_prices_near(instrument.base_price, instrument.band, 10_000)
    return st.tuples(
        st.just(instrument.symbol),
        st.sampled_from(["buy", "sell"]),
        st.integers(1, 300),
        st.sampled_from(prices),
    )


def wire_findings(where: str, document: Any, scales: dict[str, int]) -> list[str]:
    """JSON numbers in money fields anywhere in the document, and each listed field's format."""
    found = [f"{where} {path} is a JSON number" for path in money.money_numbers(document)]
    for name, places in scales.items():
        if isinstance(document, dict) and document.get(name) is not None:
            signed = name == "realised_pnl"
            finding = orders.scale_finding(f"{where} {name}", document[name], places, signed=signed)
            if finding:
                found.append(finding)
    return found


def test_order_money_is_a_decimal_string_equal_to_the_database(
    reach: Reach,
    spark_api: SparkApi,
    instruments: list[money.Instrument],
    run_property: Callable[..., Any],
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    account = new_account("m3-wire")
    with (
        reach("api_url", "postgres_dsn") as [_, dsn],
        Postgres(dsn, limits.market.db_connect_timeout_s) as db,
    ):
        market_findings = [
            finding
            for i in instruments
            for finding in wire_findings(
                f"GET /api/market/{i.symbol}", spark_api.market(i.symbol), MARKET_SCALES
            )
        ]

        def check(case: tuple[str, str, int, Any]) -> str | None:
            ticket = Ticket(account, *case)
            reply = spark_api.submit(ticket, new_key())
            if reply.status != 201:
                return f"{ticket.describe()} answered {reply.describe()}, expected 201"
            found = wire_findings("POST /api/orders", reply.body, ORDER_SCALES)
            read_back = spark_api.order(reply.field("id"))
            found += wire_findings("GET /api/orders/{id}", read_back, ORDER_SCALES)
            stored = db.order_amounts(int(reply.field("id")))
            sent = (reply.field("price"), reply.field("commission"))
            if stored is None or tuple(map(str, sent)) != stored:
                found.append(f"the API answered price, commission {sent}, the database {stored}")
            positions = spark_api.positions(account)
            found += [
                f
                for p in positions
                for f in wire_findings("GET /api/positions", p, POSITION_SCALES)
            ]
            booked = db.position_amounts(account)
            for p in positions:
                shown = (p.get("average_price"), p.get("realised_pnl"))
                if tuple(map(str, shown)) != booked.get(str(p.get("symbol"))):
                    found.append(
                        f"{p.get('symbol')} position: the API shows average, P&L {shown}, the "
                        f"database {booked.get(str(p.get('symbol')))}"
                    )
            return "; ".join(found) or None

        result = run_property(
            st.sampled_from(instruments).flatmap(drawn_tickets),
            check,
            examples=limits.m3.wire_examples,
            describe=lambda c: f"{c[1]} {c[2]} {c[0]} @ {c[3]}",
        )
    total = len(result.findings) + len(market_findings)
    spark_evidence.check(
        "wire_findings",
        total,
        limit=limits.m3.wire_findings,
        unit="documents",
        why=f"{total} answers carry money that is not a decimal string at its scale equal to "
        "the database's numeric, so clients parse amounts through floats: "
        + "; ".join(market_findings[:4])
        + f" {result.failure(lambda c: f'{c[1]} {c[2]} {c[0]} @ {c[3]}')} "
        "(see attachment failing_cases)",
    )


def test_money_columns_are_numeric(
    reach: Reach, spark_evidence: CheckEvidence, limits: Limits
) -> None:
    with (
        reach("postgres_dsn") as [dsn],
        Postgres(dsn, limits.market.db_connect_timeout_s) as db,
    ):
        columns = db.application_columns()
    money_columns = [c for c in columns if orders.is_money_column(c.name)]
    spark_evidence.attach("m3_money_columns", "".join(f"{c.describe()}\n" for c in money_columns))
    if not money_columns:
        spark_evidence.inconclusive(
            "no money column found in information_schema.columns: check that postgres_dsn "
            "points at the application database"
        )
    floats = orders.float_money_columns(columns)
    spark_evidence.check(
        "float_money_columns",
        len(floats),
        limit=limits.m3.float_money_columns,
        unit="columns",
        why=f"{len(floats)} of {len(money_columns)} money columns are binary floating point, "
        "which loses cents: "
        + ", ".join(c.describe() for c in floats)
        + "; migrate them to numeric(p, s) (see attachment m3_money_columns)",
    )


def test_decimal_precision_errors_stay_zero(
    reach: Reach,
    spark_api: SparkApi,
    spark_evidence: CheckEvidence,
    limits: Limits,
) -> None:
    with reach("api_url"):
        errors = prometheus.exposition_total(spark_api.metrics(), PRECISION_ERRORS)
    if errors is None:
        spark_evidence.inconclusive(
            f"{PRECISION_ERRORS} is not exported by {spark_api.base_url}/metrics "
            "(docs/metrics-contract.md): nothing was measured"
        )
    spark_evidence.check(
        "decimal_precision_errors",
        errors,
        limit=limits.m3.decimal_precision_errors,
        unit="errors",
        why=f"{PRECISION_ERRORS} is {errors} on {spark_api.base_url}/metrics (rollback "
        "trigger T14): money code rounded beyond a scale or met a float; the label site names "
        "where",
    )
