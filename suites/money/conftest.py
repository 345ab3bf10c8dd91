"""Money-rule fixtures: settings from ``ops/money.toml``, the listed instruments, reaching the
target, and Hypothesis properties run against the live API with a fixed seed and a bounded
number of orders."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, reject, seed, settings
from hypothesis import strategies as st

from pytest_spark.config import Target
from pytest_spark.evidence.records import CheckEvidence
from pytest_spark.probes import money, orders

SETTINGS_FILE = Path(__file__).resolve().parents[2] / "ops" / "money.toml"

Case = TypeVar("Case", bound=Hashable)
UNREACHABLE = (OSError, psycopg.OperationalError, httpx.HTTPError)


@pytest.fixture(scope="session")
def money_settings() -> dict[str, dict[str, Any]]:
    """``money_settings["M1"]["commission_examples"]``, ``money_settings["hypothesis"]["seed"]``."""
    return orders.load_settings(SETTINGS_FILE)


@pytest.fixture
def api_client(money_settings: dict[str, dict[str, Any]]) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=float(money_settings["market"]["http_timeout_s"])) as client:
        yield client


@pytest.fixture
def instruments(
    reach: Callable[..., AbstractContextManager[list[str]]],
    spark_target: Target,
    api_client: httpx.Client,
    money_settings: dict[str, dict[str, Any]],
) -> list[money.Instrument]:
    """The listed symbols with base price and tick as ``GET /api/market/{symbol}`` reports."""
    listed = spark_target.endpoints.get("market_symbols", "")
    symbols = [s.strip() for s in listed.split(",") if s.strip()] or list(
        money_settings["market"]["symbols"]
    )
    with reach("api_url") as [api_url]:
        return [money.read_instrument(api_client, api_url, symbol) for symbol in symbols]


@dataclass
class PropertyResult(Generic[Case]):
    """What a property saw: each distinct failing case with its finding, and the minimal one
    Hypothesis shrank to (the last failing case it replayed)."""

    examples: int
    findings: dict[Case, str] = field(default_factory=dict)
    minimal: Case | None = None
    orders_placed: int = 0

    def failure(self, describe: Callable[[Case], str]) -> str:
        if self.minimal is None:
            return ""
        return f"minimal failing case {describe(self.minimal)}: {self.findings[self.minimal]}"


@dataclass
class PropertyRunner:
    """Runs ``check(case)`` for cases drawn from a strategy, reproducibly (fixed seed, example
    count from ``ops/money.toml``) and boundedly (each new case costs orders from a budget; a
    case seen before is answered from memory, so shrinking never asks the target twice)."""

    seed: int
    seed_from_command_line: bool
    max_orders: int
    nodeid: str
    evidence: CheckEvidence

    def __call__(
        self,
        strategy: st.SearchStrategy[Case],
        check: Callable[[Case], str | None],
        *,
        examples: int,
        cost: Callable[[Case], int] = lambda _: 1,
        describe: Callable[[Case], str] = repr,
    ) -> PropertyResult[Case]:
        budget = orders.OrderBudget(self.max_orders)
        failing: list[Case] = []
        unreachable: list[Exception] = []

        @settings(
            max_examples=examples,
            database=None,  # nothing written into the checkout; the seed is the reproduction
            deadline=None,  # a network round trip is not a slow test
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
        )
        @seed(self.seed)
        @given(strategy)
        def holds(case: Case) -> None:
            if unreachable:
                reject()
            try:
                finding = budget.run(case, cost(case), lambda: check(case))
            except orders.BudgetSpent:
                reject()
            except UNREACHABLE as exc:
                # The target is down, not wrong: stop asking, and fail naming the endpoint.
                unreachable.append(exc)
                reject()
            if finding is not None:
                failing.append(case)
                raise AssertionError(finding)

        try:
            holds()
        except AssertionError:
            pass  # recorded in failing and the budget's findings; the test asserts on them
        except Exception:
            if not unreachable:
                raise
        if unreachable:
            raise unreachable[0]
        result: PropertyResult[Case] = PropertyResult(
            examples=len(budget.results),
            findings=cast(dict[Case, str], budget.findings()),
            minimal=failing[-1] if failing else None,
            orders_placed=budget.placed,
        )
        origin = "--hypothesis-seed" if self.seed_from_command_line else "ops/money.toml"
        self.evidence.note(
            f"Hypothesis seed {self.seed} ({origin}), {examples} examples requested, "
            f"{result.examples} distinct cases run, {result.orders_placed} orders placed "
            f"(budget {self.max_orders}); reproduce: pytest '{self.nodeid}' -m money "
            f"--hypothesis-seed={self.seed}"
        )
        if result.minimal is not None:
            self.evidence.attach(
                "minimal_failing_case",
                f"{describe(result.minimal)}\n{result.findings[result.minimal]}\n",
            )
        if result.findings:
            self.evidence.attach(
                "failing_cases",
                "".join(f"{describe(c)}: {f}\n" for c, f in result.findings.items()),
            )
        return result


@pytest.fixture
def run_property(
    request: pytest.FixtureRequest,
    money_settings: dict[str, dict[str, Any]],
    spark_evidence: CheckEvidence,
) -> PropertyRunner:
    """``run_property(strategy, check, examples=N)``; the seed is ``--hypothesis-seed`` when
    given, else ``[hypothesis] seed`` of ``ops/money.toml``."""
    given_seed = request.config.getoption("hypothesis_seed", default=None)
    return PropertyRunner(
        seed=int(given_seed if given_seed is not None else money_settings["hypothesis"]["seed"]),
        seed_from_command_line=given_seed is not None,
        max_orders=int(money_settings["hypothesis"]["max_orders_per_property"]),
        nodeid=request.node.nodeid,
        evidence=spark_evidence,
    )
