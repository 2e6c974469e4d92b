"""List a connection's suppliers (Codat list-suppliers), page by page, as Codat returns them.

A pass-through: one Codat page per answer, Codat's continuation token handed on unchanged (as the bank
accounts' listing does), every supplier — Active and Archived — as Codat's own default.
"""

from __future__ import annotations

from billpay.adapters.codat import CodatBadRequestError, CodatClient, CodatError, get_codat_client
from billpay.models.codat import Pagination
from billpay.models.lists import SuppliersPage
from billpay.observability import logger
from billpay.problems import Problem
from billpay.service.read_errors import problem_for_read_error


def list_suppliers(
    company_id: str,
    connection_id: str,
    continuation_token: str | None = None,
    *,
    client: CodatClient | None = None,
) -> SuppliersPage:
    codat = client or get_codat_client()
    try:
        answer = codat.list_suppliers(company_id.lower(), connection_id.lower(), continuation_token)
    except CodatBadRequestError as error:
        if continuation_token is not None:
            # The one caller-supplied value Codat interprets itself: a stale or forged token is bad input.
            raise Problem(
                400,
                "validation-error",
                "Invalid request",
                "Codat did not accept the continuation token.",
                errors=[
                    {
                        "location": "query",
                        "field": "continuationToken",
                        "message": "not a continuation token Codat accepts",
                        "type": "value_error",
                    }
                ],
                upstream=error.upstream or None,
            ) from None
        raise problem_for_read_error(error) from None
    except CodatError as error:
        logger.warning(
            "listing suppliers failed", extra={"codat_error": error.kind, "upstream_status": error.status}
        )
        raise problem_for_read_error(error) from None
    token = answer.pagination.continuation_token if answer.pagination else None
    pagination = Pagination(continuationToken=token) if token else Pagination()
    return SuppliersPage(suppliers=answer.results, pagination=pagination)


__all__ = ["list_suppliers"]
