"""The sandbox's seed data, with fixed ids that tests import instead of repeating literals.

`demo` (the default) is what a developer sees on day one and what tests and drills run against; `large`
adds bulk bills and companies for benchmarks. The README's "Seeded sandbox data" section lists these ids.

Every guard (docs/contract.md, Guards) is reachable from the demo seed:

| guard                    | how to reach it                                                           |
|--------------------------|---------------------------------------------------------------------------|
| not-found                | `UNKNOWN_COMPANY_ID` / `UNKNOWN_CONNECTION_ID`                            |
| account-not-found        | `UNKNOWN_ACCOUNT_ID`                                                      |
| account-inactive         | `ACCOUNT_GBP_ARCHIVED`, `ACCOUNT_GBP_USD_ARCHIVED`, `ACCOUNT_USD_ARCHIVED` |
| bill-not-payable         | `BILL_GBP_PAID`, `BILL_GBP_VOID`, `BILL_GBP_DRAFT`, `UNKNOWN_BILL_ID`     |
| currency-unknown         | bill `BILL_GBP_XXX` (currency XXX), account `ACCOUNT_GBP_NO_CURRENCY`      |
|                          | (currency null), company `COMPANY_NOCCY_ID` (baseCurrency null)           |
| currency-mismatch        | `ACCOUNT_GBP_EUR` paying `BILL_GBP_USD_OPEN` (EUR is neither USD nor GBP) |
| currency-rate-required   | `BILL_GBP_USD_OPEN` (USD bill, GBP company) without `currencyRate`        |
| amount-precision         | `BILL_GBP_JPY_OPEN` (JPY: no minor unit), 3 decimals on any GBP bill      |
| amount-exceeds-due       | more than `amountDue` on `BILL_GBP_PARTIAL` (due 250.00 of 600.00)        |
| (skipped: due unknown)   | `BILL_GBP_NODUE` (amountDue null)                                         |
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from local.sandbox.models import Account, Bill, Company, Connection, Supplier

SEEDS = ("demo", "large")

# --- Company 1: GBP base currency, on Xero --------------------------------------------------------
COMPANY_GBP_ID = "3c5e8a1f-6b2d-4f4a-9e7c-0a1b2c3d4e51"
CONNECTION_GBP_ID = "7d2f9b4c-1e3a-4c5d-8b6f-0a1b2c3d4e52"

ACCOUNT_GBP_CURRENT = "a1000000-0000-4000-8000-000000000001"  # GBP, Active
ACCOUNT_GBP_RESERVE = "a1000000-0000-4000-8000-000000000002"  # GBP, Active
ACCOUNT_GBP_USD = "a1000000-0000-4000-8000-000000000003"  # USD, Active (foreign)
ACCOUNT_GBP_EUR = "a1000000-0000-4000-8000-000000000004"  # EUR, Active (foreign)
ACCOUNT_GBP_CARD = "a1000000-0000-4000-8000-000000000005"  # GBP, Active, Credit
ACCOUNT_GBP_NO_CURRENCY = "a1000000-0000-4000-8000-000000000006"  # currency null, Active
ACCOUNT_GBP_ARCHIVED = "a1000000-0000-4000-8000-000000000007"  # GBP, Archived
ACCOUNT_GBP_USD_ARCHIVED = "a1000000-0000-4000-8000-000000000008"  # USD, Archived

BILLS_GBP_OPEN = tuple(f"GBP-OPEN-{n:02d}" for n in range(1, 11))  # GBP, Open, 125.00 x n
BILL_GBP_PARTIAL = "GBP-PARTIAL-01"  # GBP, PartiallyPaid, total 600.00, due 250.00
BILL_GBP_PAID = "GBP-PAID-01"  # GBP, Paid
BILL_GBP_VOID = "GBP-VOID-01"  # GBP, Void
BILL_GBP_DRAFT = "GBP-DRAFT-01"  # GBP, Draft (not listed by default, not payable)
BILL_GBP_USD_OPEN = "GBP-USD-OPEN-01"  # USD, Open, 250.00 (rate 0.781)
BILL_GBP_USD_PARTIAL = "GBP-USD-PARTIAL-01"  # USD, PartiallyPaid, total 400.00, due 150.00
BILL_GBP_USD_PAID = "GBP-USD-PAID-01"  # USD, Paid
BILL_GBP_EUR_OPEN = "GBP-EUR-OPEN-01"  # EUR, Open, 300.00
BILL_GBP_JPY_OPEN = "GBP-JPY-OPEN-01"  # JPY, Open, 45000
BILL_GBP_NODUE = "GBP-NODUE-01"  # GBP, Open, total 90.00, amountDue null
BILL_GBP_XXX = "GBP-XXX-01"  # currency XXX, Open, 70.00

SUPPLIER_GBP_OAK = "SUP-OAK"  # Active, GBP (the GBP open bills)
SUPPLIER_GBP_TOOLS = "SUP-TOOLS"  # Active, GBP
SUPPLIER_GBP_US = "SUP-US"  # Active, USD
SUPPLIER_GBP_EU = "SUP-EU"  # Active, EUR
SUPPLIER_GBP_JP = "SUP-JP"  # Active, JPY
SUPPLIER_GBP_ARCHIVED = "SUP-GBP-OLD"  # Archived, GBP, no bills, no contact details

# --- Company 2: USD base currency, on QuickBooks Online ---------------------------------------------
COMPANY_USD_ID = "9a4b6c8d-2e1f-4a3b-8c5d-0a1b2c3d4e61"
CONNECTION_USD_ID = "1f3e5d7c-9b2a-4d6e-8f1a-0a1b2c3d4e62"

ACCOUNT_USD_CHECKING = "a2000000-0000-4000-8000-000000000001"  # USD, Active
ACCOUNT_USD_SAVINGS = "a2000000-0000-4000-8000-000000000002"  # USD, Active
ACCOUNT_USD_GBP = "a2000000-0000-4000-8000-000000000003"  # GBP, Active (foreign)
ACCOUNT_USD_CAD = "a2000000-0000-4000-8000-000000000004"  # CAD, Active (foreign)
ACCOUNT_USD_ARCHIVED = "a2000000-0000-4000-8000-000000000005"  # USD, Archived
ACCOUNT_USD_EUR_ARCHIVED = "a2000000-0000-4000-8000-000000000006"  # EUR, Archived

BILLS_USD_OPEN = tuple(f"USD-OPEN-{n:02d}" for n in range(1, 11))  # USD, Open, 110.00 x n
BILL_USD_PARTIAL = "USD-PARTIAL-01"  # USD, PartiallyPaid, total 900.00, due 300.00
BILL_USD_PAID = "USD-PAID-01"  # USD, Paid
BILL_USD_VOID = "USD-VOID-01"  # USD, Void
BILL_USD_GBP_OPEN = "USD-GBP-OPEN-01"  # GBP, Open, 200.00 (rate 1.28)
BILL_USD_EUR_PARTIAL = "USD-EUR-PARTIAL-01"  # EUR, PartiallyPaid, total 500.00, due 125.00
BILL_USD_CAD_PAID = "USD-CAD-PAID-01"  # CAD, Paid

SUPPLIER_USD_BEANS = "SUP-BEANS"  # Active, USD (the USD open bills)
SUPPLIER_USD_DAIRY = "SUP-DAIRY"  # Active, USD
SUPPLIER_USD_UK = "SUP-UK"  # Active, GBP
SUPPLIER_USD_IT = "SUP-IT"  # Active, EUR
SUPPLIER_USD_CA = "SUP-CA"  # Archived, CAD

# --- Company 3: no base currency reported (a platform that hides it), on FreeAgent -----------------
COMPANY_NOCCY_ID = "5e6f7a8b-9c0d-4e1f-a2b3-0a1b2c3d4e71"
CONNECTION_NOCCY_ID = "2b4d6f8a-1c3e-4a5b-9d7f-0a1b2c3d4e72"
ACCOUNT_NOCCY_GBP = "a3000000-0000-4000-8000-000000000001"  # GBP, Active
ACCOUNT_NOCCY_ARCHIVED = "a3000000-0000-4000-8000-000000000002"  # GBP, Archived
BILLS_NOCCY_OPEN = tuple(f"NOCCY-OPEN-{n:02d}" for n in range(1, 11))  # GBP, Open, 50.00 x n
SUPPLIER_NOCCY_PAPER = "SUP-PAPER"  # Active, default currency null
SUPPLIER_BULK = "SUP-BULK"  # `large` seed: the bulk bills' supplier (companies 1 and 2, extra companies)

# --- Ids that exist nowhere (well-formed, so they reach the 404 paths) ------------------------------
UNKNOWN_COMPANY_ID = "00000000-0000-4000-8000-00000000dead"
UNKNOWN_CONNECTION_ID = "00000000-0000-4000-8000-00000000beef"
UNKNOWN_ACCOUNT_ID = "00000000-0000-4000-8000-00000000acc0"
UNKNOWN_BILL_ID = "NO-SUCH-BILL"

# --- `large` seed: bulk bills in companies 1 and 2, plus extra companies -----------------------------
LARGE_BULK_BILLS = 1000  # per company 1 and 2, each Open with amountDue 1,000,000.00 in base currency
LARGE_EXTRA_COMPANIES = 200


def bulk_bill_id(company_id: str, n: int) -> str:
    """The id of the n-th (1-based) bulk bill of the `large` seed in company 1 or 2."""
    prefix = {COMPANY_GBP_ID: "GBP", COMPANY_USD_ID: "USD"}[company_id]
    return f"{prefix}-BULK-{n:04d}"


_LARGE_NAMESPACE = uuid.UUID("6f1b9d3e-4c2a-4e8f-9b7d-5a3c1e0f2d4b")

# Minor-unit digits of the currencies the seed uses (ISO 4217); XXX has none defined.
MINOR_UNITS = {"GBP": 2, "USD": 2, "EUR": 2, "CAD": 2, "AUD": 2, "CHF": 2, "JPY": 0, "KWD": 3}


def _bill(
    bill_id: str,
    currency: str,
    status: str,
    total: str,
    due: str | None,
    *,
    supplier: tuple[str, str],
    day: int,
    rate: str | None = None,
) -> Bill:
    return Bill(
        id=bill_id,
        reference=f"INV-{bill_id}",
        supplier_id=supplier[0],
        supplier_name=supplier[1],
        issue_date=f"2026-10-{day:02d}T00:00:00",
        due_date=f"2026-11-{day:02d}T00:00:00",
        currency=currency,
        status=status,
        total_amount=Decimal(total),
        amount_due=None if due is None else Decimal(due),
        currency_rate=None if rate is None else Decimal(rate),
        amount_paid=Decimal(total) - Decimal(due) if due is not None else Decimal(0),
    )


def _gbp_company() -> Company:
    oak = (SUPPLIER_GBP_OAK, "Oakwood Timber Supplies")
    tools = (SUPPLIER_GBP_TOOLS, "Sheffield Tool Co")
    overseas = (SUPPLIER_GBP_US, "Appalachian Hardwoods LLC")
    connection = Connection(
        id=CONNECTION_GBP_ID,
        company_id=COMPANY_GBP_ID,
        platform_name="Xero",
        integration_key="gbol",
        integration_id="8a156a5a-39cb-4f9d-856e-76ef9b9a9607",
        source_id="3c8d4a1b-5e2f-4a6b-9c7d-1e2f3a4b5c01",
        accounts=[
            Account(
                ACCOUNT_GBP_CURRENT,
                "Business Current Account",
                "Debit",
                "GBP",
                "Active",
                account_number="41234567",
                sort_code="400102",
                nominal_code="090",
            ),
            Account(
                ACCOUNT_GBP_RESERVE,
                "Business Reserve Account",
                "Debit",
                "GBP",
                "Active",
                account_number="41234568",
                sort_code="400102",
                nominal_code="091",
            ),
            Account(
                ACCOUNT_GBP_USD,
                "USD Currency Account",
                "Debit",
                "USD",
                "Active",
                account_number="55001234",
                nominal_code="092",
            ),
            Account(
                ACCOUNT_GBP_EUR,
                "EUR Currency Account",
                "Debit",
                "EUR",
                "Active",
                account_number="66001234",
                nominal_code="093",
            ),
            Account(
                ACCOUNT_GBP_CARD,
                "Company Credit Card",
                "Credit",
                "GBP",
                "Active",
                account_number="4929000000001234",
                nominal_code="094",
            ),
            Account(
                ACCOUNT_GBP_NO_CURRENCY,
                "Petty Cash (no currency)",
                "Unknown",
                None,
                "Active",
                nominal_code="095",
            ),
            Account(
                ACCOUNT_GBP_ARCHIVED,
                "Old Current Account",
                "Debit",
                "GBP",
                "Archived",
                account_number="40000001",
                sort_code="400102",
                nominal_code="089",
            ),
            Account(
                ACCOUNT_GBP_USD_ARCHIVED,
                "Old USD Account",
                "Debit",
                "USD",
                "Archived",
                account_number="55000001",
                nominal_code="088",
            ),
        ],
        bills=[
            *(
                _bill(bill_id, "GBP", "Open", f"{125 * n}.00", f"{125 * n}.00", supplier=oak, day=n)
                for n, bill_id in enumerate(BILLS_GBP_OPEN, start=1)
            ),
            _bill(BILL_GBP_PARTIAL, "GBP", "PartiallyPaid", "600.00", "250.00", supplier=tools, day=11),
            _bill(BILL_GBP_PAID, "GBP", "Paid", "80.00", "0.00", supplier=tools, day=12),
            _bill(BILL_GBP_VOID, "GBP", "Void", "45.00", "0.00", supplier=tools, day=13),
            _bill(BILL_GBP_DRAFT, "GBP", "Draft", "60.00", "60.00", supplier=tools, day=14),
            _bill(
                BILL_GBP_USD_OPEN, "USD", "Open", "250.00", "250.00", supplier=overseas, day=15, rate="0.781"
            ),
            _bill(
                BILL_GBP_USD_PARTIAL,
                "USD",
                "PartiallyPaid",
                "400.00",
                "150.00",
                supplier=overseas,
                day=16,
                rate="0.781",
            ),
            _bill(BILL_GBP_USD_PAID, "USD", "Paid", "120.00", "0.00", supplier=overseas, day=17, rate="0.79"),
            _bill(
                BILL_GBP_EUR_OPEN,
                "EUR",
                "Open",
                "300.00",
                "300.00",
                supplier=(SUPPLIER_GBP_EU, "Holzhandel GmbH"),
                day=18,
                rate="0.86",
            ),
            _bill(
                BILL_GBP_JPY_OPEN,
                "JPY",
                "Open",
                "45000",
                "45000",
                supplier=(SUPPLIER_GBP_JP, "Kanazawa Tools KK"),
                day=19,
                rate="0.0052",
            ),
            _bill(BILL_GBP_NODUE, "GBP", "Open", "90.00", None, supplier=oak, day=20),
            _bill(BILL_GBP_XXX, "XXX", "Open", "70.00", "70.00", supplier=oak, day=21),
        ],
    )
    connection.suppliers = [
        Supplier(
            oak[0],
            oak[1],
            "Active",
            "GBP",
            "Ellen Hart",
            "accounts@oakwood.example",
            "0117 496 0001",
            "GB",
            "Bristol",
            "BS1 4DJ",
        ),
        Supplier(
            tools[0],
            tools[1],
            "Active",
            "GBP",
            "Raj Patel",
            "billing@sheffieldtool.example",
            "0114 496 0002",
            "GB",
            "Sheffield",
            "S1 2HE",
        ),
        Supplier(
            overseas[0],
            overseas[1],
            "Active",
            "USD",
            "Dale Morgan",
            "ar@appalachian.example",
            "+1 304 555 0100",
            "US",
            "Charleston",
            "25301",
        ),
        Supplier(
            SUPPLIER_GBP_EU,
            "Holzhandel GmbH",
            "Active",
            "EUR",
            None,
            "rechnung@holzhandel.example",
            None,
            "DE",
            "Hamburg",
            "20095",
        ),
        Supplier(
            SUPPLIER_GBP_JP, "Kanazawa Tools KK", "Active", "JPY", None, None, None, "JP", "Kanazawa", None
        ),
        Supplier(
            SUPPLIER_GBP_ARCHIVED,
            "Bristol Fixings (closed)",
            "Archived",
            "GBP",
            source_modified_date="2026-03-01T09:00:00Z",
        ),
    ]
    return Company(
        id=COMPANY_GBP_ID,
        name="Riverside Joinery Ltd",
        base_currency="GBP",
        description="Bespoke joinery, Bristol (GBP base currency)",
        connections=[connection],
    )


def _usd_company() -> Company:
    beans = (SUPPLIER_USD_BEANS, "Blue Ridge Coffee Roasters")
    dairy = (SUPPLIER_USD_DAIRY, "Valley Fresh Dairy")
    connection = Connection(
        id=CONNECTION_USD_ID,
        company_id=COMPANY_USD_ID,
        platform_name="QuickBooks Online",
        integration_key="qhyg",
        integration_id="32e0e2fc-6e64-4d2c-9b6a-3c4b8e4d2f10",
        source_id="4d9e5b2c-6f3a-4b7c-8d8e-2f3a4b5c6d02",
        accounts=[
            Account(
                ACCOUNT_USD_CHECKING,
                "Business Checking",
                "Debit",
                "USD",
                "Active",
                account_number="000123456789",
                nominal_code="1000",
            ),
            Account(
                ACCOUNT_USD_SAVINGS,
                "Business Savings",
                "Debit",
                "USD",
                "Active",
                account_number="000123456790",
                nominal_code="1010",
            ),
            Account(
                ACCOUNT_USD_GBP,
                "GBP Account",
                "Debit",
                "GBP",
                "Active",
                account_number="GB00777000",
                nominal_code="1020",
            ),
            Account(
                ACCOUNT_USD_CAD,
                "CAD Account",
                "Debit",
                "CAD",
                "Active",
                account_number="CA00888000",
                nominal_code="1030",
            ),
            Account(
                ACCOUNT_USD_ARCHIVED,
                "Closed Checking",
                "Debit",
                "USD",
                "Archived",
                account_number="000100000001",
                nominal_code="1001",
            ),
            Account(
                ACCOUNT_USD_EUR_ARCHIVED,
                "Closed EUR Account",
                "Debit",
                "EUR",
                "Archived",
                account_number="EU00999000",
                nominal_code="1040",
            ),
        ],
        bills=[
            *(
                _bill(bill_id, "USD", "Open", f"{110 * n}.00", f"{110 * n}.00", supplier=beans, day=n)
                for n, bill_id in enumerate(BILLS_USD_OPEN, start=1)
            ),
            _bill(BILL_USD_PARTIAL, "USD", "PartiallyPaid", "900.00", "300.00", supplier=dairy, day=11),
            _bill(BILL_USD_PAID, "USD", "Paid", "75.00", "0.00", supplier=dairy, day=12),
            _bill(BILL_USD_VOID, "USD", "Void", "33.00", "0.00", supplier=dairy, day=13),
            _bill(
                BILL_USD_GBP_OPEN,
                "GBP",
                "Open",
                "200.00",
                "200.00",
                supplier=(SUPPLIER_USD_UK, "Yorkshire Tea Ltd"),
                day=14,
                rate="1.28",
            ),
            _bill(
                BILL_USD_EUR_PARTIAL,
                "EUR",
                "PartiallyPaid",
                "500.00",
                "125.00",
                supplier=(SUPPLIER_USD_IT, "Torrefazione Milano"),
                day=15,
                rate="1.08",
            ),
            _bill(
                BILL_USD_CAD_PAID,
                "CAD",
                "Paid",
                "140.00",
                "0.00",
                supplier=(SUPPLIER_USD_CA, "Maple Cups Inc"),
                day=16,
                rate="0.73",
            ),
        ],
    )
    connection.suppliers = [
        Supplier(
            beans[0],
            beans[1],
            "Active",
            "USD",
            "Mia Lopez",
            "ar@blueridge.example",
            "(503) 555-0101",
            "US",
            "Portland",
            "97201",
        ),
        Supplier(
            dairy[0], dairy[1], "Active", "USD", "Sam Boyd", None, "(503) 555-0102", "US", "Salem", "97301"
        ),
        Supplier(
            SUPPLIER_USD_UK,
            "Yorkshire Tea Ltd",
            "Active",
            "GBP",
            None,
            "exports@yorkshiretea.example",
            None,
            "GB",
            "Harrogate",
            "HG1 1AA",
        ),
        Supplier(
            SUPPLIER_USD_IT, "Torrefazione Milano", "Active", "EUR", None, None, None, "IT", "Milano", None
        ),
        Supplier(
            SUPPLIER_USD_CA, "Maple Cups Inc", "Archived", "CAD", source_modified_date="2026-06-01T09:00:00Z"
        ),
    ]
    return Company(
        id=COMPANY_USD_ID,
        name="Harbor Street Coffee Inc",
        base_currency="USD",
        description="Coffee shops, Portland (USD base currency)",
        connections=[connection],
    )


def _noccy_company() -> Company:
    stationery = (SUPPLIER_NOCCY_PAPER, "Paper & Ink Ltd")
    connection = Connection(
        id=CONNECTION_NOCCY_ID,
        company_id=COMPANY_NOCCY_ID,
        platform_name="FreeAgent",
        integration_key="fbrh",
        integration_id="5c1e3b7a-2d4f-4e6a-8b9c-4a5b6c7d8e03",
        source_id="6e0f7c3d-8a4b-4c8d-9e0f-3a4b5c6d7e03",
        accounts=[
            Account(ACCOUNT_NOCCY_GBP, "Main Account", "Debit", "GBP", "Active", account_number="30000001"),
            Account(
                ACCOUNT_NOCCY_ARCHIVED, "Old Account", "Debit", "GBP", "Archived", account_number="30000000"
            ),
        ],
        bills=[
            _bill(bill_id, "GBP", "Open", f"{50 * n}.00", f"{50 * n}.00", supplier=stationery, day=n)
            for n, bill_id in enumerate(BILLS_NOCCY_OPEN, start=1)
        ],
    )
    connection.suppliers = [Supplier(stationery[0], stationery[1], "Active", None)]
    return Company(
        id=COMPANY_NOCCY_ID,
        name="Nameless Trading",
        base_currency=None,
        description="A platform that reports no base currency (guards must refuse to guess)",
        connections=[connection],
    )


_BULK_SUPPLIER = (SUPPLIER_BULK, "Bulk Supplies Ltd")


def _bulk_bills(company: Company, count: int) -> None:
    currency = company.base_currency or "GBP"
    supplier = _BULK_SUPPLIER
    company.connections[0].suppliers.append(Supplier(supplier[0], supplier[1], "Active", currency))
    company.connections[0].bills.extend(
        _bill(
            bulk_bill_id(company.id, n),
            currency,
            "Open",
            "1000000.00",
            "1000000.00",
            supplier=supplier,
            day=1 + n % 28,
        )
        for n in range(1, count + 1)
    )


def _extra_company(n: int) -> Company:
    currency = ("GBP", "USD", "EUR")[n % 3]
    company_id = str(uuid.uuid5(_LARGE_NAMESPACE, f"company-{n}"))
    connection_id = str(uuid.uuid5(_LARGE_NAMESPACE, f"connection-{n}"))
    supplier = _BULK_SUPPLIER
    connection = Connection(
        id=connection_id,
        company_id=company_id,
        platform_name="Xero",
        integration_key="gbol",
        integration_id="8a156a5a-39cb-4f9d-856e-76ef9b9a9607",
        source_id=str(uuid.uuid5(_LARGE_NAMESPACE, f"source-{n}")),
        accounts=[
            Account(
                str(uuid.uuid5(_LARGE_NAMESPACE, f"account-{n}-{k}")),
                f"Account {k}",
                "Debit",
                currency,
                "Active" if k < 3 else "Archived",
                account_number=f"{n:05d}{k:03d}",
            )
            for k in range(4)
        ],
        bills=[
            _bill(
                f"EXTRA-{n:04d}-{k:02d}",
                currency,
                "Open",
                f"{10 * k}.00",
                f"{10 * k}.00",
                supplier=supplier,
                day=k,
            )
            for k in range(1, 11)
        ],
        suppliers=[Supplier(supplier[0], supplier[1], "Active", currency)],
    )
    return Company(
        id=company_id, name=f"Bench Company {n:04d}", base_currency=currency, connections=[connection]
    )


def build(seed: str = "demo", bulk_bills: int = LARGE_BULK_BILLS) -> list[Company]:
    """Fresh seed records (the caller owns and mutates them); `bulk_bills` sizes the `large` seed."""
    if seed not in SEEDS:
        raise ValueError(f"unknown sandbox seed {seed!r}; expected one of {', '.join(SEEDS)}")
    companies = [_gbp_company(), _usd_company(), _noccy_company()]
    if seed == "large":
        _bulk_bills(companies[0], bulk_bills)
        _bulk_bills(companies[1], bulk_bills)
        companies += [_extra_company(n) for n in range(1, LARGE_EXTRA_COMPANIES + 1)]
    return companies
