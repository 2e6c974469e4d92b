"""List a connection's suppliers (Codat list-suppliers), page by page, as Codat returns them.

A pass-through: one Codat page per answer, Codat's continuation token handed on unchanged (as the bank
accounts' listing does), every supplier — Active and Archived — as Codat's own default.
"""

from __future__ import annotations

from billpay.adapters.codat import CodatClient, get_codat_client
from billpay.models.lists import SuppliersPage
from billpay.service.read_errors import passed_on, read_page


def list_suppliers(
    company_id: str,
    connection_id: str,
    continuation_token: str | None = None,
    *,
    client: CodatClient | None = None,
) -> SuppliersPage:
    codat = client or get_codat_client()
    answer = read_page(
        "suppliers",
        continuation_token,
        lambda: codat.list_suppliers(company_id.lower(), connection_id.lower(), continuation_token),
    )
    return SuppliersPage(suppliers=answer.results, pagination=passed_on(answer.pagination))


__all__ = ["list_suppliers"]
