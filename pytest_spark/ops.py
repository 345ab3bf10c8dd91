"""Typed reading of the release's TOML files in ``ops/`` (thresholds, settings, policies).

A file is read into a schema: a frozen dataclass per table, whose fields say the type of each
key. Anything the schema does not describe is an error naming the file, the table and the key
(a misspelt threshold must never fall back to a default nobody chose), and so is a missing key
or a value of the wrong type. Supported field types::

    float, int, str, bool          a number is never a bool; an int is a float, not vice versa
    tuple[str, ...], tuple[float, ...]
    SomeTable                      a nested frozen dataclass: a [table]
    tuple[SomeTable, ...]          an array of tables: [[table]]
    dict[str, SomeTable | scalar]  a table of tables or values under keys chosen by the file

A field's TOML key is its name unless ``field(metadata=ops_key("B1"))`` names another; a field
with a default may be left out of the file. Pure: no import beyond the standard library.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class OpsFileError(ValueError):
    """An ops file that cannot be used as its schema describes; names the file and the key."""


def ops_key(name: str) -> dict[str, str]:
    """Field metadata: read this field from the TOML key ``name`` (a checklist id such as
    ``B1``): ``b1: B1Limits = field(metadata=ops_key("B1"))``."""
    return {"ops_key": name}


def load_ops(path: Path, schema: type[T]) -> T:
    """``path`` read into ``schema``; a broken file raises :class:`OpsFileError` naming it."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except OSError as exc:
        raise OpsFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise OpsFileError(f"{path}: not valid TOML: {exc}") from None
    return parse_ops(raw, schema, str(path))


def parse_ops(raw: Mapping[str, Any], schema: type[T], source: str) -> T:
    """An already parsed TOML document (or any mapping) read into ``schema``."""
    return _table(raw, schema, source, ())


Where = tuple[str, ...]  # the keys from the top of the file down to a value


def _table(raw: object, schema: type[T], source: str, where: Where) -> T:
    if not isinstance(raw, Mapping):
        raise OpsFileError(f"{source}: {_table_name(where)} must be a table, not {_shown(raw)}")
    hints = typing.get_type_hints(schema)
    specs = {f.metadata.get("ops_key", f.name): f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in set(raw) - set(specs))
    if unknown:
        raise OpsFileError(
            f"{source}: unknown key{'s' if len(unknown) > 1 else ''} "
            + ", ".join(_key((*where, k)) for k in unknown)
            + f"; {_table_name(where)} takes {', '.join(sorted(specs))} (misspelt? rename or "
            "remove it)"
        )
    values: dict[str, Any] = {}
    for key, spec in specs.items():
        if key in raw:
            values[spec.name] = _value(raw[key], hints[spec.name], source, (*where, key))
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise OpsFileError(
                f"{source}: {_key((*where, key))} is missing; add it to {_table_name(where)}"
            )
    return schema(**values)


def _value(raw: object, kind: Any, source: str, where: Where) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return _table(raw, kind, source, where)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(raw, list):
            raise OpsFileError(f"{source}: {_key(where)} must be an array, not {_shown(raw)}")
        return tuple(
            _value(item, args[0], source, (*where, f"#{n}")) for n, item in enumerate(raw, 1)
        )
    if origin is dict and len(args) == 2:
        if not isinstance(raw, Mapping):
            raise OpsFileError(f"{source}: {_key(where)} must be a table, not {_shown(raw)}")
        return {str(k): _value(v, args[1], source, (*where, str(k))) for k, v in raw.items()}
    if origin in (typing.Union, types.UnionType):
        failures = []
        for option in args:
            try:
                return _value(raw, option, source, where)
            except OpsFileError as exc:
                failures.append(exc)
        raise failures[0]
    return _scalar(raw, kind, source, where)


WANTED = {float: "a number", int: "a whole number", str: "a string", bool: "true or false"}


def _scalar(raw: object, kind: Any, source: str, where: Where) -> Any:
    if kind not in WANTED:
        raise TypeError(f"ops schema: {_key(where)} has type {kind!r}, which load_ops cannot read")
    if kind is float and isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if kind is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if kind in (str, bool) and isinstance(raw, kind):
        return raw
    raise OpsFileError(f"{source}: {_key(where)} = {_shown(raw)} must be {WANTED[kind]}")


def _key(where: Where) -> str:
    """``[B1] ntp_offset_ms`` for a key in a table, the bare key at the top level."""
    if len(where) == 1:
        return where[0]
    return f"[{' '.join(_dotted(where[:-1]))}] {where[-1]}"


def _table_name(where: Where) -> str:
    return f"[{' '.join(_dotted(where))}]" if where else "the top level"


def _dotted(where: Where) -> list[str]:
    """Keys joined with dots as TOML writes a table's name; array positions stay apart."""
    words: list[str] = []
    for part in where:
        if part.startswith("#") or not words or words[-1].startswith("#"):
            words.append(part)
        else:
            words[-1] += f".{part}"
    return words


def _shown(value: object) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)
