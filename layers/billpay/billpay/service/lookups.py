"""What the payment guards look up, and where each answer may come from.

- company information (`get-company-information`, the base currency): cached per container — for the
  bill re-sync period by default, since a base currency all but never changes;
- the paying account (`get-mapping-options-payments`, `status=Active||status=Archived`, paged until the
  account turns up): cached per container for BILLPAY_LOOKUP_CACHE_SECONDS;
- the bill: from the **bill index** (`billpay.domain.bill_index`), shared by every container, after an
  incremental refresh (usually one list-bills page); the first lookup of a connection pages the open
  bills until the bill turns up, and the rest of that sync is carried on by later lookups. A bill the
  index does not list is looked for by paging the open bills in full (`scan`) before it is called not
  payable; an absence so confirmed is remembered for BILL_MISS_SECONDS (a mistyped id must not page the
  whole ledger on every request).

The lookups run concurrently on a sync httpx client in a thread pool (an `httpx.AsyncClient` reused across
`asyncio.run` calls breaks on a Lambda's second invocation), all inside one deadline: whatever cannot
finish inside it is 503 `upstream-unavailable`, and nothing is sent. Negative answers (404, errors) are
never cached.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from billpay.adapters.bill_index_dynamodb import DynamoDBBillIndex
from billpay.adapters.bill_index_memory import InMemoryBillIndex
from billpay.adapters.codat import (
    CodatBadRequestError,
    CodatClient,
    CodatError,
    CodatNotFoundError,
    CodatTimeoutError,
    CodatUnavailableError,
)
from billpay.config import ConfigError, get_settings
from billpay.domain import bill_index
from billpay.domain.bill_index import (
    OPEN_BILLS_QUERY,
    BillIndexStore,
    ConnectionKey,
    IndexedBill,
    SyncState,
)
from billpay.models.codat import BankAccount, Bill, CompanyInformation
from billpay.observability import logger
from billpay.problems import Problem
from billpay.service.read_errors import problem_for_read_error

ACCOUNT_STATUS_QUERY = "status=Active||status=Archived"

BILL_INDEX_TABLE_ENV = "BILL_INDEX_TABLE_NAME"
BILL_RESYNC_ENV = "BILLPAY_BILL_RESYNC_SECONDS"
BILL_MISS_SECONDS = 30.0

# A listing that has not ended after this many pages is treated as broken upstream, not read forever.
MAX_PAGES = 500
# Below this much time left a lookup cannot usefully finish (the client's own floor).
MIN_LOOKUP_SECONDS = 0.25
LOOKUP_THREADS = 8

Part = Literal["company", "accounts", "bill"]
PARTS: tuple[Part, ...] = ("company", "accounts", "bill")

ItemT = TypeVar("ItemT", BankAccount, Bill)
ResultT = TypeVar("ResultT")


def connection_key(company_id: str, connection_id: str) -> ConnectionKey:
    # Codat ids are UUIDs, lower-cased before use: one cache entry whatever the caller's case.
    return (company_id.lower(), connection_id.lower())


# ------------------------------------------------------------------------------------------- settings


def bill_resync_seconds(environ: Mapping[str, str] | None = None) -> float:
    """BILLPAY_BILL_RESYNC_SECONDS (default 6 h): how old the last full sync of a connection may get."""
    env = os.environ if environ is None else environ
    raw = env.get(BILL_RESYNC_ENV, "").strip()
    if not raw:
        return bill_index.DEFAULT_RESYNC_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{BILL_RESYNC_ENV}: must be a positive number of seconds, not {raw!r}")
    return value


# ------------------------------------------------------------------------------------------- the caches


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
    """Per-container answers for company information and accounts. Thread-safe.

    Accounts are kept `ttl_seconds` from when they were fetched, company information
    `company_ttl_seconds` (default: the same); a ttl of 0 disables that part. Bill misses confirmed by a
    full scan are kept `miss_seconds`.
    """

    def __init__(
        self,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        company_ttl_seconds: float | None = None,
        miss_seconds: float = BILL_MISS_SECONDS,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.company_ttl_seconds = ttl_seconds if company_ttl_seconds is None else company_ttl_seconds
        self.miss_seconds = miss_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._companies: dict[ConnectionKey, tuple[CompanyInformation, float]] = {}
        self._accounts: dict[ConnectionKey, _Listing[BankAccount]] = {}
        self._misses: dict[tuple[ConnectionKey, str], float] = {}

    def now(self) -> float:
        return self._clock()

    def _fresh(self, fetched_at: float, ttl: float) -> bool:
        return ttl > 0 and self._clock() - fetched_at < ttl

    def company(self, key: ConnectionKey) -> _Hit[CompanyInformation] | None:
        with self._lock:
            entry = self._companies.get(key)
            if entry is None or not self._fresh(entry[1], self.company_ttl_seconds):
                return None
            return _Hit(entry[0])

    def store_company(self, key: ConnectionKey, info: CompanyInformation, fetched_at: float) -> None:
        if self.company_ttl_seconds > 0:
            with self._lock:
                self._companies[key] = (info, fetched_at)

    def account(self, key: ConnectionKey, account_id: str) -> _Hit[BankAccount | None] | None:
        with self._lock:
            listing = self._accounts.get(key)
            if listing is None or not self._fresh(listing.fetched_at, self.ttl_seconds):
                return None
            if account_id in listing.items:
                return _Hit(listing.items[account_id])
            # Absent from a complete scan: known not to exist (as of the scan).
            return _Hit(None) if listing.complete else None

    def store_accounts(self, key: ConnectionKey, listing: _Listing[BankAccount]) -> None:
        if self.ttl_seconds > 0:
            with self._lock:
                self._accounts[key] = listing

    def note_bank_account_created(self, key: ConnectionKey, account: BankAccount) -> None:
        with self._lock:
            listing = self._accounts.get(key)
            if listing is not None and account.id:
                listing.items[account.id] = account

    def bill_missing(self, key: ConnectionKey, bill_id: str) -> bool:
        """A full scan found no open bill `bill_id` less than `miss_seconds` ago."""
        with self._lock:
            since = self._misses.get((key, bill_id))
            return since is not None and self._fresh(since, self.miss_seconds)

    def store_bill_missing(self, key: ConnectionKey, bill_id: str, found: bool) -> None:
        with self._lock:
            if found:
                self._misses.pop((key, bill_id), None)
            elif self.miss_seconds > 0:
                if len(self._misses) > 10_000:  # bounded: a flood of made-up ids cannot grow it forever
                    self._misses.clear()
                self._misses[(key, bill_id)] = self._clock()

    def forget(self, key: ConnectionKey | None = None) -> None:
        with self._lock:
            for entries in (self._companies, self._accounts):
                if key is None:
                    entries.clear()
                else:
                    entries.pop(key, None)
            self._misses = {k: v for k, v in self._misses.items() if key is not None and k[0] != key}


_cache: LookupCache | None = None
_index: BillIndexStore | None = None
_singletons_lock = threading.Lock()


def lookup_cache() -> LookupCache:
    """The container's cache: accounts for BILLPAY_LOOKUP_CACHE_SECONDS, company information for the
    bill re-sync period (a refusal on it is re-checked fresh anyway)."""
    global _cache  # noqa: PLW0603 - one cache per container, by design
    if _cache is None:
        with _singletons_lock:
            if _cache is None:
                ttl = get_settings().lookup_cache_seconds
                _cache = LookupCache(ttl, company_ttl_seconds=bill_resync_seconds() if ttl > 0 else 0)
    return _cache


def default_bill_index() -> BillIndexStore:
    """The BillIndexTable when BILL_INDEX_TABLE_NAME is set; else an index of this container's own."""
    global _index  # noqa: PLW0603 - one store (one boto3 client) per container
    if _index is None:
        with _singletons_lock:
            if _index is None:
                table = os.environ.get(BILL_INDEX_TABLE_ENV, "").strip()
                if table:
                    _index = DynamoDBBillIndex(table)
                else:
                    logger.warning("no BILL_INDEX_TABLE_NAME: the bill index lives in this container only")
                    _index = InMemoryBillIndex()
    return _index


def reset_lookup_cache() -> None:
    """Forget the container's cache, bill index store and their settings (tests that change the env)."""
    global _cache, _index  # noqa: PLW0603
    with _singletons_lock:
        _cache = None
        _index = None


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


def budget_problem() -> Problem:
    """The lookups could not finish inside the time budget: 503, nothing sent."""
    return Problem(
        503,
        "upstream-unavailable",
        "Upstream unavailable",
        "The checks before the payment could not finish in time; nothing was sent. Retry with the same key.",
        headers={"Retry-After": "1"},
    )


# ------------------------------------------------------------------------------------- Codat reads


@dataclass(frozen=True)
class _Fetched(Generic[ResultT]):
    value: ResultT
    reads: int


def _pages(client: CodatClient) -> Callable[..., tuple[list[Bill], str | None]]:
    def page(
        company_id: str, connection_id: str, query: str, token: str | None, deadline: float
    ) -> tuple[list[Bill], str | None]:
        bills = client.list_bills(company_id, connection_id, query, token, deadline=deadline)
        return bills.results, (bills.pagination.continuation_token if bills.pagination else None) or None

    return page


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


# ------------------------------------------------------------------------------------- the bill index


@dataclass(frozen=True)
class BillFound:
    """A bill lookup's answer: `bill` None = not among the open bills as far as this lookup knows.

    `fresh`: read on this lookup's own pages, or from an index this lookup refreshed and that lists
    every open bill — anything else is re-checked before a refusal is given.
    """

    bill: IndexedBill | None
    fresh: bool
    reads: int


def _indexed(bills: list[Bill], seen_at: float) -> list[IndexedBill]:
    found = (bill_index.from_codat(bill.model_dump(by_alias=True), seen_at) for bill in bills)
    return [bill for bill in found if bill is not None]


class BillLookup:
    """The bill part of the lookups, on one Codat client and one index store."""

    def __init__(
        self,
        client: CodatClient,
        store: BillIndexStore,
        *,
        resync_seconds: float = bill_index.DEFAULT_RESYNC_SECONDS,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.store = store
        self.resync_seconds = resync_seconds
        self.wall_clock = wall_clock
        self._page = _pages(client)

    def find(self, company_id: str, connection_id: str, bill_id: str, deadline: float) -> BillFound:
        """Refresh the connection's index (incrementally, plus a full sync as far as needed), then read
        the bill."""
        key = connection_key(company_id, connection_id)
        now = self.wall_clock()
        state = self.store.state(key)
        plan = bill_index.plan_refresh(state, now, self.resync_seconds)
        reads = 0
        seen: dict[str, IndexedBill] = {}
        refreshed = False

        if plan.incremental_since is not None:
            assert state is not None  # a watermark means a state
            state, reads = self._refresh_incrementally(
                key, company_id, connection_id, state, plan.incremental_since, now, seen, deadline
            )
            refreshed = True

        if plan.start_full_sync:
            state = self._write(key, state, bill_index.started(state, now))

        bill = seen.get(bill_id) or self.store.bill(key, bill_id)
        if state is not None and state.syncing:
            state, sync_reads = self._carry_on_sync(
                key, company_id, connection_id, state, bill_id, known=bill is not None, deadline=deadline
            )
            reads += len(sync_reads)
            seen.update((b.bill_id, b) for page in sync_reads for b in page)
            bill = seen.get(bill_id) or bill
        # An absence is never fresh: bills without sourceModifiedDate escape the incremental refresh, so
        # "not in the index" is confirmed by a full scan (`scan`) before anyone is told "not payable".
        complete = state is not None and state.complete
        fresh = bill_id in seen or (refreshed and complete and bill is not None)
        return BillFound(bill, fresh, reads)

    def _refresh_incrementally(
        self,
        key: ConnectionKey,
        company_id: str,
        connection_id: str,
        state: SyncState,
        since: float,
        now: float,
        seen: dict[str, IndexedBill],
        deadline: float,
    ) -> tuple[SyncState | None, int]:
        """Page `sourceModifiedDate>since` into the index (each bill also into `seen`); move the
        watermark to `now` when that is worth a write. The state to go on from, and the pages read."""
        query = bill_index.incremental_query(since)
        token: str | None = None
        tokens: set[str] = set()
        reads = 0
        while True:
            page, token = self._page(company_id, connection_id, query, token, deadline)
            reads += 1
            bills = _indexed(page, now)
            self.store.put_bills(key, bills)
            seen.update((bill.bill_id, bill) for bill in bills)
            if token is None:
                break
            if token in tokens or reads >= MAX_PAGES:
                raise CodatUnavailableError("pagination does not end (a continuation token repeats)")
            tokens.add(token)
        if bill_index.worth_recording(state, now):
            return self._write(key, state, bill_index.refreshed(state, now)), reads
        return state, reads

    def refresh(self, company_id: str, connection_id: str, deadline: float) -> int:
        """Bring the connection's index up to date for a listing: the incremental refresh, then any full
        sync carried on to its last page (a connection never synced is paged in full once). Afterwards the
        index lists every open bill. Returns the pages read; raises CodatError as the reads do."""
        key = connection_key(company_id, connection_id)
        now = self.wall_clock()
        state = self.store.state(key)
        plan = bill_index.plan_refresh(state, now, self.resync_seconds)
        reads = 0
        if plan.incremental_since is not None:
            assert state is not None  # a watermark means a state
            state, reads = self._refresh_incrementally(
                key, company_id, connection_id, state, plan.incremental_since, now, {}, deadline
            )
        if plan.start_full_sync:
            state = self._write(key, state, bill_index.started(state, now))
        # A sync listing complete is all a listing needs: a re-sync in progress (of an index that already
        # lists every open bill, kept current by the incremental refresh) is carried on by the payments'
        # lookups, a few pages at a time, and need not make this answer wait.
        rounds = 0
        while state is None or not state.complete:
            rounds += 1
            if reads >= MAX_PAGES or rounds > MAX_PAGES:
                raise CodatUnavailableError("the bill sync does not end")
            if state is None or not state.syncing:
                state = self._write(key, state, bill_index.started(state, self.wall_clock()))
                continue
            # No bill id to stop at: the sync runs to its last page (or until another container's write
            # wins, and then from the state it wrote).
            state, pages = self._carry_on_sync(
                key, company_id, connection_id, state, "", known=False, deadline=deadline
            )
            reads += len(pages)
        return reads

    def _write(self, key: ConnectionKey, before: SyncState | None, after: SyncState) -> SyncState | None:
        """Write the state; when another container wrote first, theirs is the state to go on from."""
        if self.store.write_state(key, before, after):
            return after
        return self.store.state(key)

    def _carry_on_sync(
        self,
        key: ConnectionKey,
        company_id: str,
        connection_id: str,
        state: SyncState,
        bill_id: str,
        *,
        known: bool,
        deadline: float,
    ) -> tuple[SyncState | None, list[list[IndexedBill]]]:
        """Page on from where the sync stopped: until the bill turns up when the index lacks it (and not
        a page further), else SYNC_PAGES_PER_LOOKUP pages. Each page is written before the token that
        follows it."""
        pages: list[list[IndexedBill]] = []
        current: SyncState | None = state
        while current is not None and current.syncing:
            if known and len(pages) >= bill_index.SYNC_PAGES_PER_LOOKUP:
                break
            if known and deadline - self.client.deadline(0) < 1.0:
                break  # optional work: never let it cost the payment its budget
            began = current.sync_started_at
            assert began is not None
            try:
                page, token = self._page(
                    company_id, connection_id, OPEN_BILLS_QUERY, current.sync_token, deadline
                )
            except CodatBadRequestError:
                if current.sync_token is None:
                    raise
                # The continuation token is no longer accepted: start the sync again from the first page.
                logger.info("bill sync restarts: its continuation token was refused")
                current = self._write(key, current, bill_index.started(current, self.wall_clock()))
                continue
            bills = _indexed(page, began)
            self.store.put_bills(key, bills)
            pages.append(bills)
            if token is None:
                was_complete = current.complete
                after = bill_index.completed(current)
                if self.store.write_state(key, current, after):
                    current = after
                    if was_complete:  # a re-sync: what it did not list is no longer open
                        gone = bill_index.stale(self.store.bills(key), began)
                        if gone:
                            logger.info("bill re-sync drops bills no longer open", extra={"count": len(gone)})
                            self.store.drop(key, gone, began)
                else:
                    current = self.store.state(key)
                break
            after = bill_index.progressed(current, token)
            if not self.store.write_state(key, current, after):
                current = self.store.state(key)
                break  # another lookup carries this sync on; what we wrote stands
            current = after
            if not known and any(b.bill_id == bill_id for b in bills):
                break  # the payment waits for no page past its bill; later lookups carry the sync on
            if len(pages) >= MAX_PAGES:
                raise CodatUnavailableError("pagination does not end")
        return current, pages

    def scan(
        self, company_id: str, connection_id: str, bill_id: str, deadline: float, cache: LookupCache
    ) -> BillFound:
        """Page the open bills from the first page until the bill turns up: the check before a refusal.

        What the pages show is written to the index (it is at least as fresh as what is there)."""
        key = connection_key(company_id, connection_id)
        if cache.bill_missing(key, bill_id):
            return BillFound(None, fresh=True, reads=0)
        now = self.wall_clock()
        fetched = _scan(
            lambda token: self._page(company_id, connection_id, OPEN_BILLS_QUERY, token, deadline),
            bill_id,
            now,
        )
        bills = _indexed(list(fetched.value.items.values()), now)
        self.store.put_bills(key, bills)
        found = next((bill for bill in bills if bill.bill_id == bill_id), None)
        cache.store_bill_missing(key, bill_id, found is not None)
        return BillFound(found, fresh=True, reads=fetched.reads)


# ------------------------------------------------------------------------------------- all three


@dataclass(frozen=True)
class Lookups:
    company: CompanyInformation | None
    account: BankAccount | None
    bill: Bill | None
    indexed_bill: IndexedBill | None
    not_found: bool
    cached: frozenset[Part]  # parts answered from data this lookup did not read fresh
    upstream_reads: int


def _remaining(client: CodatClient, deadline: float) -> float:
    # The deadline is on the client's clock; `client.deadline(0)` is that clock's "now".
    return deadline - client.deadline(0)


def _run(
    client: CodatClient, tasks: Mapping[Part, Callable[[], Any]], deadline: float
) -> dict[Part, Any | BaseException]:
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
    futures: dict[Future[Any], Part] = {_pool().submit(task): part for part, task in tasks.items()}
    pending = set(futures)
    # Wake on the first failure: a 404 answers at once, without waiting for the others.
    while pending:
        timeout = _remaining(client, deadline)
        if timeout <= 0:
            break
        done, pending = wait(pending, timeout=timeout, return_when=FIRST_EXCEPTION)
        if any(isinstance(f.exception(), CodatNotFoundError) for f in done):
            break
    results: dict[Part, Any | BaseException] = {}
    for future, part in futures.items():
        if future.done():
            failure = future.exception()
            results[part] = failure if failure is not None else future.result()
    return results


def look_up(
    client: CodatClient,
    cache: LookupCache,
    bills: BillLookup | None,
    company_id: str,
    connection_id: str,
    *,
    account_id: str | None,
    bill_id: str | None,
    deadline: float,
    bypass: frozenset[Part] = frozenset(),
) -> Lookups:
    """Company, account and bill, concurrently; `bypass` = parts to read fresh (the bill: a full scan)."""
    key = connection_key(company_id, connection_id)
    company_hit = None if "company" in bypass else cache.company(key)
    account_hit = None if account_id is None or "accounts" in bypass else cache.account(key, account_id)

    now = cache.now()
    tasks: dict[Part, Callable[[], Any]] = {}
    if company_hit is None:
        tasks["company"] = lambda: _fetch_company(client, company_id, connection_id, deadline)
    if account_id is not None and account_hit is None:
        tasks["accounts"] = lambda: _fetch_accounts(
            client, company_id, connection_id, account_id, deadline, now
        )
    if bill_id is not None:
        assert bills is not None
        if "bill" in bypass:
            tasks["bill"] = lambda: bills.scan(company_id, connection_id, bill_id, deadline, cache)
        else:
            tasks["bill"] = lambda: bills.find(company_id, connection_id, bill_id, deadline)

    results = _run(client, tasks, deadline)

    failures = {part: r for part, r in results.items() if isinstance(r, BaseException)}
    reads = sum(r.reads for r in results.values() if isinstance(r, _Fetched | BillFound))
    # Any lookup's 404 means the company or connection is unknown: the first guard, and definitive.
    if any(isinstance(f, CodatNotFoundError) for f in failures.values()):
        return Lookups(None, None, None, None, True, frozenset(), reads)
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

    cached: set[Part] = set()
    company = company_hit.value if company_hit is not None else None
    if company_hit is not None:
        cached.add("company")
    account = account_hit.value if account_hit is not None else None
    if account_hit is not None:
        cached.add("accounts")
    indexed: IndexedBill | None = None
    for part, result in results.items():
        if part == "company":
            assert isinstance(result, _Fetched) and isinstance(result.value, CompanyInformation)
            cache.store_company(key, result.value, now)
            company = result.value
        elif part == "accounts":
            assert isinstance(result, _Fetched) and isinstance(result.value, _Listing) and account_id
            cache.store_accounts(key, result.value)
            account = result.value.items.get(account_id)
        else:
            assert isinstance(result, BillFound)
            indexed = result.bill
            if not result.fresh:
                cached.add("bill")
    bill = Bill.model_validate(indexed.body) if indexed is not None else None
    return Lookups(company, account, bill, indexed, False, frozenset(cached), reads)


__all__ = [
    "ACCOUNT_STATUS_QUERY",
    "BILL_INDEX_TABLE_ENV",
    "BILL_RESYNC_ENV",
    "BillFound",
    "BillLookup",
    "LookupCache",
    "Lookups",
    "bill_resync_seconds",
    "budget_problem",
    "connection_key",
    "default_bill_index",
    "look_up",
    "lookup_cache",
    "reset_lookup_cache",
]
