"""The sandbox's listed instruments: symbol -> previous close (the base price), one per band.

Base prices sit in different tick bands so that every band and its edges are reachable.
Margin ±20 % (Yıldız Pazar / Ana Pazar Grup 1).
"""

from __future__ import annotations

from decimal import Decimal

PRICE_MARGIN = Decimal("0.20")

INSTRUMENTS: dict[str, Decimal] = {
    "SASA": Decimal("4.58"),
    "KOZAL": Decimal("24.50"),
    "AKBNK": Decimal("62.15"),
    "THYAO": Decimal("285.25"),
    "GARAN": Decimal("128.40"),
    "BIMAS": Decimal("540.00"),
    "ASELS": Decimal("1120.00"),
    "FROTO": Decimal("2750.00"),
}
