"""Money-rule fixtures: Hypothesis properties run against the live API with a fixed seed and a
bounded number of orders (settings from ``[hypothesis]`` of ``ops/money.toml``)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, reject, seed, settings
from hypothesis import strategies as st

from pytest_spark import CheckEvidence
from pytest_spark.probes import orders
from suites.limits import Limits

Case = TypeVar("Case", bound=Hashable)
UNREACHABLE = (OSError, psycopg.OperationalError, httpx.HTTPError)


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
    request: pytest.FixtureRequest, limits: Limits, spark_evidence: CheckEvidence
) -> PropertyRunner:
    """``run_property(strategy, check, examples=N)``; the seed is ``--hypothesis-seed`` when
    given, else ``[hypothesis] seed`` of ``ops/money.toml``."""
    given_seed = request.config.getoption("hypothesis_seed", default=None)
    return PropertyRunner(
        seed=int(given_seed if given_seed is not None else limits.hypothesis.seed),
        seed_from_command_line=given_seed is not None,
        max_orders=limits.hypothesis.max_orders_per_property,
        nodeid=request.node.nodeid,
        evidence=spark_evidence,
    )
