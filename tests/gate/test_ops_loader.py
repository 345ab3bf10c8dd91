"""The typed ops loader: every way a thresholds file can be wrong is an error naming the file,
the table and the key; the repository's own files load into the suites' schemas."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_spark import OpsFileError, load_ops, ops_key
from suites.limits import BlindSpotLimits, Limits, load_limits

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Clock:
    ntp_offset_ms: float
    clock_samples: int


@dataclass(frozen=True)
class Origin:
    origin: str
    owner: str = "web"


@dataclass(frozen=True)
class Thresholds:
    b1: Clock = field(metadata=ops_key("B1"))
    symbols: tuple[str, ...] = ()
    origin: tuple[Origin, ...] = ()
    flags: dict[str, bool] = field(default_factory=dict)


def load(tmp_path: Path, text: str) -> Thresholds:
    path = tmp_path / "limits.toml"
    path.write_text(text)
    return load_ops(path, Thresholds)


def test_a_well_formed_file_is_typed(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        'symbols = ["SASA"]\n[B1]\nntp_offset_ms = 100\nclock_samples = 5\n'
        '[[origin]]\norigin = "https://cdn.example"\n[flags]\nrisky = false\n',
    )
    assert loaded == Thresholds(
        Clock(100.0, 5), ("SASA",), (Origin("https://cdn.example"),), {"risky": False}
    )
    assert isinstance(loaded.b1.ntp_offset_ms, float)  # an integer written for a float


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[B1]\nntp_offset_ms = 100\nclock_samples = 5\nntp_ofset_ms = 50\n",
            r"unknown key \[B1\] ntp_ofset_ms; \[B1\] takes clock_samples, ntp_offset_ms",
        ),
        ("[B1]\nntp_offset_ms = 100\nclock_samples = 5\n[B10]\n", "unknown key B10"),
        ("[B1]\nclock_samples = 5\n", r"\[B1\] ntp_offset_ms is missing; add it to \[B1\]"),
        ("symbols = []\n", "B1 is missing"),
        ("B1 = 3\n", r"\[B1\] must be a table, not 3"),
        (
            "[B1]\nntp_offset_ms = true\nclock_samples = 5\n",
            r"\[B1\] ntp_offset_ms = True must be a number",
        ),
        (
            '[B1]\nntp_offset_ms = "100"\nclock_samples = 5\n',
            r"\[B1\] ntp_offset_ms = '100' must be a number",
        ),
        (
            "[B1]\nntp_offset_ms = 1\nclock_samples = 5.5\n",
            r"\[B1\] clock_samples = 5.5 must be a whole number",
        ),
        (
            '[B1]\nntp_offset_ms = 1\nclock_samples = 5\nsymbols = "SASA"\n',
            r"unknown key \[B1\] symbols",
        ),
        (
            'symbols = "SASA"\n[B1]\nntp_offset_ms = 1\nclock_samples = 5\n',
            "symbols must be an array, not 'SASA'",
        ),
        (
            "symbols = [1]\n[B1]\nntp_offset_ms = 1\nclock_samples = 5\n",
            r"\[symbols\] #1 = 1 must be a string",
        ),
        (
            '[B1]\nntp_offset_ms = 1\nclock_samples = 5\n[[origin]]\norigin = "x"\nowner = 3\n',
            r"\[origin #1\] owner = 3 must be a string",
        ),
        (
            "[B1]\nntp_offset_ms = 1\nclock_samples = 5\n[flags]\nrisky = 1\n",
            r"\[flags\] risky = 1 must be true or false",
        ),
        ("[B1\n", "not valid TOML"),
    ],
    ids=[
        "unknown-key",
        "unknown-table",
        "missing-key",
        "missing-table",
        "not-a-table",
        "bool-for-number",
        "string-for-number",
        "float-for-int",
        "key-in-the-wrong-table",
        "not-an-array",
        "array-item-type",
        "array-of-tables-key",
        "table-of-values",
        "broken-toml",
    ],
)
def test_a_broken_file_is_an_error_naming_file_table_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(OpsFileError, match=message) as raised:
        load(tmp_path, text)
    assert str(raised.value).startswith(str(tmp_path / "limits.toml"))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(OpsFileError, match=f"{tmp_path / 'absent.toml'}: cannot be read"):
        load_ops(tmp_path / "absent.toml", Thresholds)


def test_a_schema_type_the_loader_cannot_read_is_a_programming_error(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Odd:
        when: bytes

    path = tmp_path / "odd.toml"
    path.write_text('when = "x"\n')
    with pytest.raises(TypeError, match="when has type"):
        load_ops(path, Odd)


def test_the_repository_thresholds_load_into_the_suites_schemas() -> None:
    limits = load_limits(REPO / "ops")
    assert isinstance(limits, Limits)
    assert limits.b1.ntp_offset_ms == 100.0
    assert "THYAO" in limits.market.symbols
    assert limits.g03.concurrent_submissions >= 20
    assert limits.k1.pact_interactions_failed == 1.0
    # Every blind spot of the checklist has its table.
    ids = {f.metadata["ops_key"] for f in dataclasses.fields(BlindSpotLimits)}
    assert ids == {f"B{n}" for n in range(1, 10)}


def test_a_misspelt_repository_threshold_stops_the_load(tmp_path: Path) -> None:
    ops = tmp_path / "ops"
    ops.mkdir()
    for name in ("blind_spots.toml", "money.toml", "contracts.toml"):
        (ops / name).write_text((REPO / "ops" / name).read_text())
    money = ops / "money.toml"
    money.write_text(money.read_text().replace("\norders_per_key = 2", "\norders_per_kye = 2"))
    with pytest.raises(OpsFileError, match=r"money.toml: unknown key \[G03\] orders_per_kye"):
        load_limits(ops)
