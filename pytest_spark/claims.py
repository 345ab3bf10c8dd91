"""The claim vocabulary: which marker claims which family of checklist items.

A test claims items with the marker of their family, ``@pytest.mark.blind_spot("B3")``,
``@pytest.mark.money("M1")``. The same name is also the family's gate marker, which the
plugin adds to every test the registry says a gate needs, so ``-m blind_spot`` selects the
blind-spot gate: one name, one meaning (the items of that family and the gate that decides
them). A marker that names an item of another family (``money("B3")``) is a usage error.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_spark.checklist import Checklist

# marker -> (id prefix of its family, what it claims); registered by the plugin at configure.
FAMILIES: dict[str, tuple[str, str]] = {
    "blind_spot": ("B", "blind-spot items B1–B9"),
    "go_nogo": ("G", "GO/NO-GO checklist items G01–G10"),
    "money": ("M", "decimal money items M1–M4"),
    "contract": ("K", "consumer contract items K1–K3"),
    "rollback": ("T", "rollback trigger items T01–T14"),
    "canary": ("S", "canary stage metrics S1–S6 and stage integrity S7"),
    "chaos": ("C", "chaos scenarios C1–C6"),
}
CLAIM_MARKERS = frozenset(FAMILIES)


def marker_lines() -> list[str]:
    """``--markers`` text: each family's marker once, with both of its uses."""
    return [
        f"{name}(*ids): claims {what}, e.g. {name}('{prefix}1'); as `-m {name}`, selects its gate"
        for name, (prefix, what) in FAMILIES.items()
    ]


@functools.cache
def family_of(item_id: str) -> str | None:
    """The marker whose family the id belongs to (by its letters), or None."""
    letters = item_id.rstrip("0123456789")
    return next((name for name, (prefix, _) in FAMILIES.items() if prefix == letters), None)


def claimed_items(item: pytest.Item, checklist: Checklist) -> tuple[str, ...]:
    """Item ids a test claims through its markers; an unknown id, or an id of another
    family than the marker's, is a usage error that names the marker to use."""
    ids: list[str] = []
    for marker in item.iter_markers():  # one walk of the node chain, not one per marker name
        name = marker.name
        if name not in CLAIM_MARKERS:
            continue
        for arg in marker.args:
            for item_id in [arg] if isinstance(arg, str) else list(arg):
                if item_id not in checklist.items:
                    raise pytest.UsageError(
                        f"{item.nodeid}: @pytest.mark.{name}({item_id!r}) names an item "
                        f"that is not in {checklist.path}; known ids look like "
                        f"{', '.join(list(checklist.items)[:4])}, ..."
                    )
                family = family_of(item_id)
                if family != name:
                    raise pytest.UsageError(
                        f"{item.nodeid}: @pytest.mark.{name}({item_id!r}): {name} claims "
                        f"{FAMILIES[name][1]}; claim {item_id} with "
                        f"@pytest.mark.{family}({item_id!r})"
                    )
                if item_id not in ids:
                    ids.append(item_id)
    return tuple(ids)
