"""ISO 4217 currency codes: the shape of a code, which codes name no payable currency, and minor units.

Pure data, no I/O. The precision guard (docs/contract.md, Guards) needs to know how many decimals an
amount may carry in the bill's currency; the currency guard needs to know when a code says "no currency".

Decisions (the contract is silent on them):
- Only the exceptions to "2 decimals" are listed. ISO 4217 gives most currencies 2 minor units, and the
  accounting platforms Codat fronts (QuickBooks, Xero, ...) default custom or unlisted currencies to 2 as
  well, so an active code missing from these tables is treated as 2. Adding a code here is the fix if a
  platform ever reports one with other precision.
- ISO 4217's codes with no minor unit ("N.A.": precious metals, SDR, bond-market units, the test code
  XTS and XXX, "no currency") are not currencies a bill can be paid in. The guards treat them like
  `XXX` itself: `currency-unknown`, never a guess at precision.
"""

from __future__ import annotations

import re
from typing import Final

CURRENCY_CODE: Final = re.compile(r"[A-Z]{3}")

# ISO 4217's "no currency" code: what Codat reports when the source system gave no currency.
NO_CURRENCY: Final = "XXX"

# ISO 4217 codes whose minor unit is "N.A." (not a payable currency).
NOT_PAYABLE: Final[frozenset[str]] = frozenset(
    {
        "XXX",  # no currency
        "XTS",  # reserved for testing
        "XAU",  # gold
        "XAG",  # silver
        "XPD",  # palladium
        "XPT",  # platinum
        "XDR",  # IMF special drawing rights
        "XSU",  # Sucre
        "XUA",  # ADB unit of account
        "XBA",  # European composite unit
        "XBB",  # European monetary unit
        "XBC",  # European unit of account 9
        "XBD",  # European unit of account 17
    }
)

# ISO 4217 minor units other than 2 (list one, amendments through 2024).
_MINOR_UNITS_NOT_TWO: Final[dict[str, int]] = {
    # no minor unit
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    # thousandths
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    # ten-thousandths (units of account)
    "CLF": 4,
    "UYW": 4,
}

DEFAULT_MINOR_UNITS: Final = 2


def normalize_code(value: object) -> str | None:
    """The upper-cased, stripped code if `value` is shaped like an ISO 4217 code, else None.

    Codat documents upper-case codes; a source system that hands back `gbp` still means GBP, whereas an
    empty string, a symbol (`£`) or null is no currency at all.
    """
    if not isinstance(value, str):
        return None
    code = value.strip().upper()
    return code if CURRENCY_CODE.fullmatch(code) else None


def is_payable(code: str) -> bool:
    """True for a well-formed code that names a currency an amount can be paid in."""
    return CURRENCY_CODE.fullmatch(code) is not None and code not in NOT_PAYABLE


def minor_units(code: str) -> int:
    """Decimals an amount in `code` may carry. `code` must be payable (see `is_payable`)."""
    if not is_payable(code):
        raise ValueError(f"{code!r} has no minor unit: it is not a payable currency")
    return _MINOR_UNITS_NOT_TWO.get(code, DEFAULT_MINOR_UNITS)


__all__ = [
    "CURRENCY_CODE",
    "DEFAULT_MINOR_UNITS",
    "NOT_PAYABLE",
    "NO_CURRENCY",
    "is_payable",
    "minor_units",
    "normalize_code",
]
