"""Run the payment guards: look up what they need from Codat (concurrently, cached), then apply them.

`check_payment(...)` answers a `PaymentContext` when the payment may be sent, and raises the `Problem`
to answer otherwise; `check_bank_account(...)` does the same for a new bank account. Both are called by
the write flow AFTER the claim and never on a replay (docs/contract.md, Guards); whatever they raise,
nothing has been sent, and the caller releases the key.

Lookups (docs/contract.md, Guards):
- accounts: `get-mapping-options-payments` with `statusQuery=status=Active||status=Archived` (an archived
  account must be told apart from an unknown one), paged until the account turns up;
- company information: `get-company-information`, for the base currency;
- the bill: `list-bills` with `query=status=Open||status=PartiallyPaid`, paged until the bill turns up
  (Codat has no endpoint for one bill; not found on any page = not payable).
They run concurrently on a sync httpx client in a thread pool (an `httpx.AsyncClient` reused across
`asyncio.run` calls breaks on a Lambda's second invocation), all inside one deadline: whatever cannot
finish inside it is 503 `upstream-unavailable`, and nothing is sent.

Caching: answers are kept per container for BILLPAY_LOOKUP_CACHE_SECONDS, so a warm container pays with one
Codat request (the write). A refusal that rests on cached data is never given as such: the cached parts
are fetched again and the guards re-run on fresh data first. A stale pass is harmless by construction —
payments only ever lower a bill's amountDue and close bills, so a stale bill can let through a payment
Codat itself then refuses (overpayment, Paid bill: Codat answers 400, the operation ends `failed`, nothing
recorded), never one that double-pays. `note_payment_recorded` keeps this container's cached bill in step
with its own payments; other containers catch up within the cache lifetime or on a refusal's re-check.
Negative answers (404, errors) are never cached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, Generic, Literal, TypeVar

from billpay.adapters.codat import (
    CodatClient,
    CodatError,
    CodatNotFoundError,
    CodatTimeoutError,
    CodatUnavailableError,
)
from billpay.config import get_settings
from billpay.domain.currencies import normalize_code
from billpay.domain.guards import PaymentFacts, first_refusal, payment_currencies
from billpay.models.codat import BankAccount, Bill, CompanyInformation
from billpay.models.requests import BankAccountCreate, BillPaymentCreate
from billpay.observability import logger
from billpay.problems import Problem
from billpay.service.read_errors import problem_for_read_error

ACCOUNT_STATUS_QUERY = "status=Active||status=Archived"
OPEN_BILLS_QUERY = "status=Open||status=PartiallyPaid"

# A listing that has not ended after this many pages is treated as broken upstream, not read forever.
MAX_PAGES = 200
# Below this much time left a lookup cannot usefully finish (the client's own floor).
MIN_LOOKUP_SECONDS = 0.25
LOOKUP_THREADS = 8

Part = Literal["company", "accounts", "bill"]
PARTS: tuple[Part, ...] = ("company", "accounts", "bill")

ItemT = TypeVar("ItemT", BankAccount, Bill)
ResultT = TypeVar("ResultT")

ConnectionKey = tuple[str, str]


def connection_key(company_id: str, connection_id: str) -> ConnectionKey:
    # Codat ids are UUIDs, lower-cased before use (contract: API): one cache entry whatever the caller's case.
    return (company_id.lower(), connection_id.lower())


# ------------------------------------------------------------------------------------------- the cache


@dataclass
class _Listing(Generic[ItemT]):
    """Items seen on the pages read by one scan; `complete` when the scan reached the last page."""

    items: dict[str, ItemT]
    complete: bool
    fetched_at: float


@dataclass(frozen=True)
class _Hit(Generic[ResultT]):
    value: ResultT


class LookupCache:
    """Per-container lookup answers, each kept `ttl_seconds` from when it was fetched. Thread-safe."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._companies: dict[ConnectionKey, tuple[CompanyInformation, float]] = {}
        self._accounts: dict[ConnectionKey, _Listing[BankAccount]] = {}
        self._bills: dict[ConnectionKey, _Listing[Bill]] = {}

    def now(self) -> float:
        return self._clock()

    def _fresh(self, fetched_at: float) -> bool:
        return self.ttl_seconds > 0 and self._clock() - fetched_at < self.ttl_seconds

    # company information

    def company(self, key: ConnectionKey) -> _Hit[CompanyInformation] | None:
        with self._lock:
            entry = self._companies.get(key)
            if entry is None or not self._fresh(entry[1]):
                return None
            return _Hit(entry[0])

    def store_company(self, key: ConnectionKey, info: CompanyInformation, fetched_at: float) -> None:
        if self.ttl_seconds > 0:
            with self._lock:
                self._companies[key] = (info, fetched_at)

    # paged listings

    def account(self, key: ConnectionKey, account_id: str) -> _Hit[BankAccount | None] | None:
        with self._lock:
            return self._find(self._accounts.get(key), account_id)

    def bill(self, key: ConnectionKey, bill_id: str) -> _Hit[Bill | None] | None:
        with self._lock:
            return self._find(self._bills.get(key), bill_id)

    def _find(self, listing: _Listing[ItemT] | None, item_id: str) -> _Hit[ItemT | None] | None:
        if listing is None or not self._fresh(listing.fetched_at):
            return None
        if item_id in listing.items:
            return _Hit(listing.items[item_id])
        # Absent from a complete scan: known not to exist (as of the scan).
        return _Hit(None) if listing.complete else None

    def store_accounts(self, key: ConnectionKey, listing: _Listing[BankAccount]) -> None:
        if self.ttl_seconds > 0:
            with self._lock:
                self._accounts[key] = listing

    def store_bills(self, key: ConnectionKey, listing: _Listing[Bill]) -> None:
        if self.ttl_seconds > 0:
            with self._lock:
                self._bills[key] = listing

    # what our own writes changed

    def note_payment_recorded(self, key: ConnectionKey, bill_id: str, amount: Decimal) -> None:
        with self._lock:
            listing = self._bills.get(key)
            bill = listing.items.get(bill_id) if listing is not None else None
            if listing is None or bill is None:
                return
            if bill.amount_due is None:
                # Cannot tell whether it is now Paid: forget it so the next payment looks it up.
                del listing.items[bill_id]
                listing.complete = False
                return
            due = bill.amount_due - amount
            if due <= 0:
                # Paid: no longer among the open bills, and the scan stays complete.
                del listing.items[bill_id]
            else:
                listing.items[bill_id] = bill.model_copy(
                    update={"amount_due": due, "status": "PartiallyPaid"}
                )

    def note_bank_account_created(self, key: ConnectionKey, account: BankAccount) -> None:
        with self._lock:
            listing = self._accounts.get(key)
            if listing is not None and account.id:
                listing.items[account.id] = account

    def forget(self, key: ConnectionKey | None = None) -> None:
        with self._lock:
            for entries in (self._companies, self._accounts, self._bills):
                if key is None:
                    entries.clear()
                else:
                    entries.pop(key, None)


_cache: LookupCache | None = None
_cache_lock = threading.Lock()


def lookup_cache() -> LookupCache:
    """The container's cache, its lifetime from BILLPAY_LOOKUP_CACHE_SECONDS (read on first use)."""
    global _cache  # noqa: PLW0603 - one cache per container, by design
    if _cache is None:
        with _cache_lock:
            if _cache is None:
                _cache = LookupCache(get_settings().lookup_cache_seconds)
    return _cache


def reset_lookup_cache() -> None:
    """Forget the container's cache and its settings (tests that change the environment)."""
    global _cache  # noqa: PLW0603
    with _cache_lock:
        _cache = None


def note_payment_recorded(company_id: str, connection_id: str, bill_id: str, amount: Decimal) -> None:
    """After Codat recorded a payment: lower the cached bill's amountDue (or drop it once Paid)."""
    lookup_cache().note_payment_recorded(connection_key(company_id, connection_id), bill_id, amount)


def note_bank_account_created(company_id: str, connection_id: str, account: BankAccount) -> None:
    """After Codat created an account: add it to the cached listing so it can be paid from at once."""
    lookup_cache().note_bank_account_created(connection_key(company_id, connection_id), account)


# ------------------------------------------------------------------------------------------ thread pool

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    # More threads than one request's three lookups: a lookup abandoned at the deadline keeps its thread
    # until its own request timeout ends it, and must not starve the next invocation's lookups.
    global _executor  # noqa: PLW0603 - one pool per container
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=LOOKUP_THREADS, thread_name_prefix="billpay-lookup"
                )
    return _executor


# ------------------------------------------------------------------------------------------ problems


def budget_problem() -> Problem:
    """The lookups could not finish inside the time budget (docs/contract.md, Guards): 503, nothing sent."""
    return Problem(
        503,
        "upstream-unavailable",
        "Upstream unavailable",
        "The checks before the payment could not finish in time; nothing was sent. Retry with the same key.",
        headers={"Retry-After": "1"},
    )


# ------------------------------------------------------------------------------------------ lookups


@dataclass(frozen=True)
class _Lookups:
    company: CompanyInformation | None
    account: BankAccount | None
    bill: Bill | None
    not_found: bool
    cached: frozenset[Part]
    upstream_reads: int


@dataclass(frozen=True)
class _Fetched(Generic[ResultT]):
    value: ResultT
    reads: int


def _scan(
    fetch_page: Callable[[str | None], tuple[list[ItemT], str | None]],
    item_id: str,
    started_at: float,
) -> _Fetched[_Listing[ItemT]]:
    """Page a listing until `item_id` turns up or the pages end."""
    items: dict[str, ItemT] = {}
    token: str | None = None
    seen: set[str] = set()
    reads = 0
    while True:
        page, token = fetch_page(token)
        reads += 1
        for item in page:
            items.setdefault(item.id, item)
        token = token or None
        if item_id in items or token is None:
            return _Fetched(_Listing(items, complete=token is None, fetched_at=started_at), reads)
        if token in seen or reads >= MAX_PAGES:
            raise CodatUnavailableError("pagination does not end (a continuation token repeats)")
        seen.add(token)


def _fetch_company(
    client: CodatClient, company_id: str, connection_id: str, deadline: float
) -> _Fetched[CompanyInformation]:
    return _Fetched(client.get_company_information(company_id, connection_id, deadline=deadline), 1)


def _fetch_accounts(
    client: CodatClient, company_id: str, connection_id: str, account_id: str, deadline: float, now: float
) -> _Fetched[_Listing[BankAccount]]:
    def page(token: str | None) -> tuple[list[BankAccount], str | None]:
        options = client.list_payment_accounts(
            company_id, connection_id, ACCOUNT_STATUS_QUERY, token, deadline=deadline
        )
        return options.bank_accounts, options.pagination.continuation_token if options.pagination else None

    return _scan(page, account_id, now)


def _fetch_bills(
    client: CodatClient, company_id: str, connection_id: str, bill_id: str, deadline: float, now: float
) -> _Fetched[_Listing[Bill]]:
    def page(token: str | None) -> tuple[list[Bill], str | None]:
        bills = client.list_bills(company_id, connection_id, OPEN_BILLS_QUERY, token, deadline=deadline)
        return bills.results, bills.pagination.continuation_token if bills.pagination else None

    return _scan(page, bill_id, now)


def _remaining(client: CodatClient, deadline: float) -> float:
    # The deadline is on the client's clock; `client.deadline(0)` is that clock's "now".
    return deadline - client.deadline(0)


def _run(
    client: CodatClient, tasks: Mapping[Part, Callable[[], _Fetched[Any]]], deadline: float
) -> dict[Part, _Fetched[Any] | BaseException]:
    """Run the tasks concurrently until all end or the deadline passes; unfinished ones are left out."""
    if not tasks:
        return {}
    if len(tasks) == 1:
        # One lookup: no thread hop; the client itself stops at the deadline.
        ((part, task),) = tasks.items()
        try:
            return {part: task()}
        except CodatError as exc:
            return {part: exc}
    futures: dict[Future[_Fetched[Any]], Part] = {_pool().submit(task): part for part, task in tasks.items()}
    pending = set(futures)
    # Wake on the first failure: a 404 answers at once, without waiting for the others.
    while pending:
        timeout = _remaining(client, deadline)
        if timeout <= 0:
            break
        done, pending = wait(pending, timeout=timeout, return_when=FIRST_EXCEPTION)
        if any(isinstance(f.exception(), CodatNotFoundError) for f in done):
            break
    results: dict[Part, _Fetched[Any] | BaseException] = {}
    for future, part in futures.items():
        if future.done():
            failure = future.exception()
            results[part] = failure if failure is not None else future.result()
    return results


def _lookups(
    client: CodatClient,
    cache: LookupCache,
    key: ConnectionKey,
    company_id: str,
    connection_id: str,
    *,
    account_id: str | None,
    bill_id: str | None,
    deadline: float,
    bypass: frozenset[Part] = frozenset(),
) -> _Lookups:
    company_hit = None if "company" in bypass else cache.company(key)
    account_hit = None if account_id is None or "accounts" in bypass else cache.account(key, account_id)
    bill_hit = None if bill_id is None or "bill" in bypass else cache.bill(key, bill_id)

    now = cache.now()
    tasks: dict[Part, Callable[[], _Fetched[Any]]] = {}
    if company_hit is None:
        tasks["company"] = lambda: _fetch_company(client, company_id, connection_id, deadline)
    if account_id is not None and account_hit is None:
        tasks["accounts"] = lambda: _fetch_accounts(
            client, company_id, connection_id, account_id, deadline, now
        )
    if bill_id is not None and bill_hit is None:
        tasks["bill"] = lambda: _fetch_bills(client, company_id, connection_id, bill_id, deadline, now)

    results = _run(client, tasks, deadline)

    failures = {part: r for part, r in results.items() if isinstance(r, BaseException)}
    reads = sum(r.reads for r in results.values() if isinstance(r, _Fetched))
    # Any lookup's 404 means the company or connection is unknown: the first guard, and definitive.
    if any(isinstance(f, CodatNotFoundError) for f in failures.values()):
        return _Lookups(None, None, None, True, frozenset(), reads)
    if len(results) < len(tasks):
        raise budget_problem()
    for part in PARTS:
        failure = failures.get(part)
        if failure is None:
            continue
        if isinstance(failure, CodatTimeoutError) and _remaining(client, deadline) < MIN_LOOKUP_SECONDS:
            raise budget_problem() from failure
        if isinstance(failure, CodatError):
            raise problem_for_read_error(failure) from failure
        raise failure

    company = company_hit.value if company_hit is not None else None
    account = account_hit.value if account_hit is not None else None
    bill = bill_hit.value if bill_hit is not None else None
    for part, result in results.items():
        assert isinstance(result, _Fetched)
        value = result.value
        if part == "company":
            assert isinstance(value, CompanyInformation)
            cache.store_company(key, value, now)
            company = value
        elif part == "accounts":
            assert isinstance(value, _Listing) and account_id is not None
            cache.store_accounts(key, value)
            account = value.items.get(account_id)
        else:
            assert isinstance(value, _Listing) and bill_id is not None
            cache.store_bills(key, value)
            bill = value.items.get(bill_id)

    cached: set[Part] = set()
    if company_hit is not None:
        cached.add("company")
    if account_hit is not None:
        cached.add("accounts")
    if bill_hit is not None:
        cached.add("bill")
    return _Lookups(company, account, bill, False, frozenset(cached), reads)


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
    rechecked: bool = field(default=False, compare=False)  # a cached refusal was re-checked fresh


@dataclass(frozen=True)
class BankAccountContext:
    company_id: str
    connection_id: str
    base_currency: str | None
    upstream_reads: int = field(default=0, compare=False)


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
) -> PaymentContext:
    """Look up, then guard, a payment of `request` against bill `bill_id`.

    `deadline` is absolute on the client's clock (`client.deadline(seconds)`); default: half the sync
    budget from now. Returns the context when the payment may be sent; raises `Problem` otherwise
    (a guard's 404/422, a read's 502/503/504, or 503 `upstream-unavailable` when time runs out).
    """
    cache = lookup_cache() if cache is None else cache
    deadline = default_lookup_deadline(client) if deadline is None else deadline
    look_up = partial(
        _lookups,
        client,
        cache,
        connection_key(company_id, connection_id),
        company_id,
        connection_id,
        account_id=request.account_ref.id,
        bill_id=bill_id,
        deadline=deadline,
    )
    lookups = look_up()
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
        lookups = look_up(bypass=lookups.cached)
        reads += lookups.upstream_reads
        rechecked = True
        facts = _facts(lookups)
        refusal = first_refusal(request, facts, bill_id=bill_id)
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

    One cached `get-company-information`; its read failures answer as the read rows of docs/contract.md,
    Status codes. The request's shape was validated already; Codat judges the rest (a refusal there is an
    operation `failed`).
    """
    del request  # nothing in the body needs looking up; kept for a stable interface
    cache = lookup_cache() if cache is None else cache
    deadline = default_lookup_deadline(client) if deadline is None else deadline
    key = connection_key(company_id, connection_id)
    lookups = _lookups(
        client, cache, key, company_id, connection_id, account_id=None, bill_id=None, deadline=deadline
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


def _facts(lookups: _Lookups) -> PaymentFacts:
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
    "note_payment_recorded",
    "reset_lookup_cache",
]
