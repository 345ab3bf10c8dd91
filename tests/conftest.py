"""Shared by the project's own tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "solo: runs alone on the machine, after the parallel tests (`make test`): it judges "
        "latency, which other workers' load would move",
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` keep an ``xdist_group`` on one worker under pytest 9.

    pytest-xdist 3.8 marks a grouped test by appending ``@group`` to ``item._nodeid``, which
    pytest 9 no longer reads (a node's id is ``item._id``), so every group was silently spread
    over the workers: the canary rollout and the rollback drill were each built once per
    worker, concurrently. This does what xdist meant to, through the attribute pytest reads;
    it does nothing once the id already carries the group (a fixed xdist).
    """
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # an older pytest, where xdist's own suffix works
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix):
            item._id = coerce_node_id(item.nodeid + suffix)
