"""The licence policy (``ops/license-policy.toml``) and each SBOM component graded by it.

SPDX licence expressions (``AND``, ``OR``, ``WITH``, parentheses) are parsed by
``license_expression`` with the SPDX licence list, so a known id is matched whatever its case
(``mit`` is ``MIT``); package URLs by ``packageurl``.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from license_expression import (
    AND,
    OR,
    ExpressionError,
    LicenseSymbol,
    LicenseWithExceptionSymbol,
    Licensing,
    get_spdx_licensing,
)
from packageurl import PackageURL

from pytest_spark.ops import OpsFileError, parse_ops
from pytest_spark.probes.supply_chain.files import SupplyChainError


@dataclass(frozen=True)
class PolicyTable:
    allow: tuple[str, ...]
    deny: tuple[str, ...] = ()
    uninformative: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyFile:
    """The shape of ``ops/license-policy.toml``; any other table or key is an error."""

    policy: PolicyTable
    classifiers: dict[str, str] = field(default_factory=dict)
    reviewed: dict[str, str] = field(default_factory=dict)


@functools.cache
def _spdx() -> Licensing:
    return get_spdx_licensing()


def parse_expression(expression: str) -> Any:
    """An SPDX expression as a tree: a licence id (``str``, ``"A WITH B"`` kept whole) or
    ``("AND"|"OR", [operands])``; ``AND`` binds tighter than ``OR``. A known id is written
    as the SPDX list spells it; a malformed expression raises SupplyChainError."""
    try:
        parsed = _spdx().parse(expression, validate=False, strict=True)
    except ExpressionError as exc:
        raise SupplyChainError(f"licence expression {expression!r}: {exc}") from None
    if parsed is None:
        raise SupplyChainError(f"licence expression {expression!r} is empty")
    return _tree(parsed, expression)


def _tree(node: Any, expression: str) -> Any:
    if isinstance(node, LicenseWithExceptionSymbol):
        exception = _key(node.exception_symbol, expression)
        return f"{_key(node.license_symbol, expression)} WITH {exception}"
    if isinstance(node, LicenseSymbol):
        return _key(node, expression)
    if isinstance(node, AND | OR):
        operands = [_tree(a, expression) for a in node.args]
        return ("AND" if isinstance(node, AND) else "OR", operands)
    raise SupplyChainError(f"licence expression {expression!r}: cannot read {node!r}")


def _key(symbol: LicenseSymbol, expression: str) -> str:
    # The library allows spaces in a key ("MIT MIT" is one); an SPDX id has none.
    if not symbol.key or any(c.isspace() for c in symbol.key):
        raise SupplyChainError(
            f"licence expression {expression!r}: {symbol.key!r} is not an SPDX licence id"
        )
    return str(symbol.key)


def licence_ids(tree: Any) -> Iterator[str]:
    if isinstance(tree, str):
        yield tree
    else:
        for part in tree[1]:
            yield from licence_ids(part)


@dataclass(frozen=True)
class LicencePolicy:
    """``ops/license-policy.toml``: which SPDX licences a release may ship."""

    allow: frozenset[str]
    deny: frozenset[str]
    classifiers: Mapping[str, str]  # trove classifier -> SPDX id it names exactly
    uninformative: frozenset[str]  # names that say nothing (e.g. "License :: OSI Approved")
    reviewed: Mapping[str, str]  # purl without version -> SPDX expression, after review

    def verdict(self, expression: str) -> bool | None:
        """True allowed, False denied, None unknown (a licence the policy does not name)."""

        def judge(tree: Any) -> bool | None:
            if isinstance(tree, str):
                if tree in self.allow:
                    return True
                return False if tree in self.deny or tree.split(" WITH ")[0] in self.deny else None
            results = [judge(part) for part in tree[1]]
            if tree[0] == "OR":
                return True if True in results else (None if None in results else False)
            return False if False in results else (None if None in results else True)

        return judge(parse_expression(expression))


def load_policy(path: Path) -> LicencePolicy:
    """Read and check the policy: a malformed file, an unknown table or key, an id both
    allowed and denied, or an unreadable expression is an error naming the file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SupplyChainError(f"licence policy {path}: {exc}") from None
    return policy_from_mapping(raw, str(path))


def policy_from_mapping(raw: Mapping[str, Any], source: str = "licence policy") -> LicencePolicy:
    try:
        doc = parse_ops(raw, PolicyFile, source)
    except OpsFileError as exc:
        raise SupplyChainError(str(exc)) from None
    allow, deny = _ids(doc.policy.allow, source, "allow"), _ids(doc.policy.deny, source, "deny")
    if not allow:
        raise SupplyChainError(f"{source}: [policy] allow is empty: nothing could ship")
    both = allow & deny
    if both:
        raise SupplyChainError(f"{source}: {sorted(both)} are both allowed and denied")
    for where, mapping in (("classifiers", doc.classifiers), ("reviewed", doc.reviewed)):
        for key, expression in mapping.items():
            try:
                parse_expression(expression)
            except SupplyChainError as exc:
                raise SupplyChainError(f"{source}: [{where}] {key!r}: {exc}") from None
    return LicencePolicy(
        allow=allow,
        deny=deny,
        classifiers=doc.classifiers,
        uninformative=frozenset(doc.policy.uninformative),
        reviewed=doc.reviewed,
    )


def _ids(listed: tuple[str, ...], source: str, key: str) -> frozenset[str]:
    """Each listed licence as the parser spells it, so that ``mit`` in an SBOM meets ``MIT``."""
    found = set()
    for entry in listed:
        tree = parse_expression(entry)
        if not isinstance(tree, str):
            raise SupplyChainError(
                f"{source}: [policy] {key} entry {entry!r} is an expression; list single ids"
            )
        found.add(tree)
    return frozenset(found)


@dataclass(frozen=True)
class LicenceFinding:
    component: str  # name@version
    purl: str
    status: str  # "denied" | "unknown"
    detail: str


def declared_licences(component: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(SPDX expressions or ids, free-text names) a CycloneDX component declares."""
    expressions, names = [], []
    for entry in component.get("licenses", []) or []:
        if not isinstance(entry, Mapping):
            continue
        if entry.get("expression"):
            expressions.append(str(entry["expression"]))
        licence = entry.get("license")
        if isinstance(licence, Mapping):
            if licence.get("id"):
                expressions.append(str(licence["id"]))
            elif licence.get("name"):
                names.append(str(licence["name"]))
    return expressions, names


def purl_without_version(purl: str) -> str:
    """``pkg:pypi/jinja2@3.1.4?x=y`` -> ``pkg:pypi/jinja2``, as the policy's [reviewed] keys
    name packages; a purl that does not parse is kept as it is (it matches no review)."""
    try:
        parsed = PackageURL.from_string(purl)
    except ValueError:
        return purl
    return str(PackageURL(type=parsed.type, namespace=parsed.namespace, name=parsed.name))


def grade_component(component: Mapping[str, Any], policy: LicencePolicy) -> LicenceFinding | None:
    """None when every licence the component declares is allowed; otherwise why not.

    Every declared entry counts (a component declaring MIT and a GPL classifier ships GPL
    code too); names the policy calls uninformative are skipped; a reviewed entry replaces
    what the metadata declares."""
    name = f"{component.get('name')}@{component.get('version')}"
    purl = str(component.get("purl", ""))
    reviewed = policy.reviewed.get(purl_without_version(purl))
    if reviewed is not None:
        expressions, unresolved = [reviewed], list[str]()
    else:
        expressions, names = declared_licences(component)
        unresolved = []
        for text in names:
            if text in policy.classifiers:
                expressions.append(policy.classifiers[text])
            elif text not in policy.uninformative:
                unresolved.append(text)
    if unresolved or not expressions:
        said = ", ".join(repr(n) for n in unresolved) or "no licence"
        return LicenceFinding(
            name,
            purl,
            "unknown",
            f"declares {said}; map it in [classifiers] or review it under [reviewed]",
        )
    verdicts = {e: policy.verdict(e) for e in expressions}
    denied = [e for e, v in verdicts.items() if v is False]
    if denied:
        return LicenceFinding(name, purl, "denied", f"licence {' + '.join(denied)} is denied")
    unknown = [e for e, v in verdicts.items() if v is None]
    if unknown:
        return LicenceFinding(
            name, purl, "unknown", f"licence {' + '.join(unknown)} is not in the policy"
        )
    return None
