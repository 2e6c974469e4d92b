"""The payment guards, in order, on what `billpay.service.lookups` finds.

`check_payment(...)` answers a `PaymentContext` when the payment may be sent, and raises the `Problem`
to answer otherwise; `check_bank_account(...)` does the same for a new bank account. Both are called by
the write flow AFTER the claim and never on a replay; whatever they raise, nothing has been sent, and the
caller releases the key.

A refusal is never given on data this request did not read fresh: the parts it rests on that came from
a cache (company information, accounts) or from the bill index without this lookup's own refresh are
read again — the bill by paging the open bills in full — and the guards re-run on that. A pass on cached
data is harmless by construction: payments only ever lower a bill's amountDue and close bills, so a stale
bill can let through a payment Codat itself then refuses (the operation ends `failed`, nothing recorded),
never one that double-pays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial

from billpay.adapters.codat import CodatClient
from billpay.config import get_settings
from billpay.domain.bill_index import OPEN_BILLS_QUERY, BillIndexStore, IndexedBill
from billpay.domain.currencies import normalize_code
from billpay.domain.guards import PaymentFacts, first_refusal, payment_currencies
from billpay.domain.operations import Operation
from billpay.models.codat import BankAccount, Bill
from billpay.models.requests import BankAccountCreate, BillPaymentCreate
from billpay.observability import logger
from billpay.problems import Problem
from billpay.service.lookups import (
    ACCOUNT_STATUS_QUERY,
    BillLookup,
    LookupCache,
    Lookups,
    bill_resync_seconds,
    budget_problem,
    connection_key,
    default_bill_index,
    look_up,
    lookup_cache,
    reset_lookup_cache,
)
from billpay.service.reservations import PaymentHold, Reservations


def note_bank_account_created(company_id: str, connection_id: str, account: BankAccount) -> None:
    """After Codat created an account: add it to the cached listing so it can be paid from at once."""
    lookup_cache().note_bank_account_created(connection_key(company_id, connection_id), account)


# ------------------------------------------------------------------------------------------ the checks


@dataclass(frozen=True)
class PaymentContext:
    """What the guards found for a payment that may be sent."""

    company_id: str
    connection_id: str
    bill_id: str
    account: BankAccount
    bill: Bill
    bill_currency: str
    account_currency: str
    base_currency: str
    upstream_reads: int = field(default=0, compare=False)  # Codat pages read (client retries not counted)
    # What the bill index holds for the bill: where a reservation will be taken (`available`).
    bill_available: Decimal | None = field(default=None, compare=False)
    rechecked: bool = field(default=False, compare=False)  # a cached refusal was re-checked fresh


@dataclass(frozen=True)
class BankAccountContext:
    company_id: str
    connection_id: str
    base_currency: str | None
    upstream_reads: int = field(default=0, compare=False)


def payment_hold() -> PaymentHold:
    """A payment request's reservation, on this container's bill index and operations table."""
    from billpay.adapters.operations_dynamodb import operation_store  # noqa: PLC0415

    return PaymentHold(Reservations(default_bill_index(), operation_store(get_settings().table_name)))


def default_lookup_deadline(client: CodatClient) -> float:
    """Half the synchronous budget for the lookups: the other half is the write's."""
    return client.deadline(get_settings().sync_budget_seconds / 2)


def check_payment(
    client: CodatClient,
    company_id: str,
    connection_id: str,
    bill_id: str,
    request: BillPaymentCreate,
    *,
    deadline: float | None = None,
    cache: LookupCache | None = None,
    index: BillIndexStore | None = None,
    hold: PaymentHold | None = None,
    claimed: Operation | None = None,
) -> PaymentContext:
    """Look up, then guard, a payment of `request` against bill `bill_id`; with `hold` and the `claimed`
    record, reserve its amount on the bill last (the exact `amount-exceeds-due`).

    `deadline` is absolute on the client's clock (`client.deadline(seconds)`); default: half the sync
    budget from now. Returns the context when the payment may be sent; raises `Problem` otherwise
    (a guard's 404/422, a read's 502/503/504, or 503 `upstream-unavailable` when time runs out).
    """
    cache = lookup_cache() if cache is None else cache
    deadline = default_lookup_deadline(client) if deadline is None else deadline
    bills = BillLookup(
        client,
        default_bill_index() if index is None else index,
        resync_seconds=bill_resync_seconds(),
    )
    lookups_for = partial(
        look_up,
        client,
        cache,
        bills,
        company_id,
        connection_id,
        account_id=request.account_ref.id,
        bill_id=bill_id,
        deadline=deadline,
    )
    lookups = lookups_for()
    reads = lookups.upstream_reads
    facts = _facts(lookups)
    refusal = first_refusal(request, facts, bill_id=bill_id)
    rechecked = False
    if refusal is not None and lookups.cached:
        # Never refuse on cached data: fetch the cached parts again and judge on fresh data.
        logger.info(
            "re-checking a refusal on fresh data",
            extra={"problem": refusal.type, "cached": sorted(lookups.cached)},
        )
        lookups = lookups_for(bypass=lookups.cached)
        reads += lookups.upstream_reads
        rechecked = True
        facts = _facts(lookups)
        refusal = first_refusal(request, facts, bill_id=bill_id)
    if refusal is not None:
        raise refusal

    if (
        hold is not None
        and claimed is not None
        and not hold.reserve(claimed, (company_id, connection_id), bill_id, request.amount)
    ):
        # The bill cannot take it beside what other payments hold: re-read the bill before refusing.
        lookups = lookups_for(bypass=frozenset({"bill"}))
        reads += lookups.upstream_reads
        facts = _facts(lookups)
        refusal = first_refusal(request, facts, bill_id=bill_id)
        if refusal is None and not hold.reserve(
            claimed, (company_id, connection_id), bill_id, request.amount
        ):
            refusal = _held_elsewhere(request, lookups.indexed_bill)
        if refusal is not None:
            raise refusal

    currencies = payment_currencies(facts)
    assert facts.account is not None and facts.bill is not None and currencies is not None
    return PaymentContext(
        company_id=company_id,
        connection_id=connection_id,
        bill_id=bill_id,
        account=facts.account,
        bill=facts.bill,
        bill_currency=currencies.bill,
        account_currency=currencies.account,
        base_currency=currencies.base,
        upstream_reads=reads,
        rechecked=rechecked,
        bill_available=lookups.indexed_bill.available if lookups.indexed_bill is not None else None,
    )


def _held_elsewhere(request: BillPaymentCreate, bill: IndexedBill | None) -> Problem:
    available = bill.available if bill is not None else None
    shown = f" ({available} available after other payments in flight)" if available is not None else ""
    return Problem(
        422,
        "amount-exceeds-due",
        "Amount exceeds amount due",
        f"amount {request.amount} is more than the bill can take{shown}.",
        errors=[
            {
                "location": "body",
                "field": "amount",
                "message": "exceeds what the bill can take",
                "type": "value_error",
            }
        ],
    )


def check_bank_account(
    client: CodatClient,
    company_id: str,
    connection_id: str,
    request: BankAccountCreate,
    *,
    deadline: float | None = None,
    cache: LookupCache | None = None,
) -> BankAccountContext:
    """The guard before a bank account is created: the company and connection must exist (else 404).

    One cached `get-company-information`; its read failures are the read problems (docs/contract.md,
    Status codes). The request's shape was validated already; Codat judges the rest (a refusal there is
    an operation `failed`).
    """
    del request  # nothing in the body needs looking up; kept for a stable interface
    cache = lookup_cache() if cache is None else cache
    deadline = default_lookup_deadline(client) if deadline is None else deadline
    lookups = look_up(
        client, cache, None, company_id, connection_id, account_id=None, bill_id=None, deadline=deadline
    )
    if lookups.not_found:
        raise Problem(404, "not-found", "Not found", "No such company or connection.")
    base = lookups.company.base_currency if lookups.company is not None else None
    return BankAccountContext(
        company_id=company_id,
        connection_id=connection_id,
        base_currency=normalize_code(base),
        upstream_reads=lookups.upstream_reads,
    )


def _facts(lookups: Lookups) -> PaymentFacts:
    return PaymentFacts(
        company_found=not lookups.not_found,
        account=lookups.account,
        bill=lookups.bill,
        base_currency=lookups.company.base_currency if lookups.company is not None else None,
    )


__all__ = [
    "ACCOUNT_STATUS_QUERY",
    "OPEN_BILLS_QUERY",
    "BankAccountContext",
    "LookupCache",
    "PaymentContext",
    "budget_problem",
    "check_bank_account",
    "check_payment",
    "connection_key",
    "lookup_cache",
    "note_bank_account_created",
    "reset_lookup_cache",
]
