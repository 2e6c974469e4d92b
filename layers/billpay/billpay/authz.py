"""Who is calling, and may they: the API functions' one check before anything is claimed or sent.

`authorize_request(app, permission, company)` reads the request's IAM principal (SigV4, checked by API
Gateway), finds its client in the registry and answers:
- the `Caller` (client id + principal) when the client holds `permission` and covers `company`;
- otherwise raises the problem: 403 `caller-unknown`, 403 `forbidden`, or 404 `not-found` for a company
  outside the client's list (its existence is not revealed). Nothing is sent, nothing recorded.
- 503 `service-unavailable` when there is no registry to decide with (SSM unreadable, never a valid
  document); the client retries.

See docs/contract.md, "Callers and permissions", and docs/threat-model.md.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from billpay.adapters.callers_ssm import RegistryUnavailable, load_registry
from billpay.config import get_settings
from billpay.domain.clients import Caller, Permission, Refusal, Registry, authorize
from billpay.observability import logger
from billpay.problems import Problem

_TITLES = {"caller-unknown": "Caller unknown", "forbidden": "Forbidden", "not-found": "Not found"}
_STATUS = {"caller-unknown": 403, "forbidden": 403, "not-found": 404}

RegistryLoader = Callable[[], Registry]


def _load_from_settings() -> Registry:
    settings = get_settings()
    return load_registry(settings.require("callers_parameter_name"), settings.callers_max_age_seconds)


_loader: RegistryLoader = _load_from_settings


def use_registry_loader(loader: RegistryLoader | None) -> None:
    """Replace where the registry comes from (in-process unit tests); None restores SSM."""
    global _loader  # noqa: PLW0603 - one source per container
    _loader = loader if loader is not None else _load_from_settings


def current_registry() -> Registry:
    try:
        return _loader()
    except RegistryUnavailable as exc:
        raise Problem(
            503,
            "service-unavailable",
            "Service unavailable",
            "The service cannot check who is calling right now; nothing was done. Retry shortly.",
            headers={"Retry-After": "1"},
        ) from exc


def authorize_request(
    app: APIGatewayRestResolver, permission: Permission, company: str | None = None
) -> Caller:
    """The caller's client for this request, or the problem that refuses it (see the module doc)."""
    user_arn = app.current_event.request_context.identity.user_arn
    decision = authorize(current_registry(), user_arn, permission, company)
    if isinstance(decision, Refusal):
        # The principal is logged (it is who tried); never a body, an account number or a key.
        logger.info(
            "caller refused",
            extra={"reason": decision.reason, "permission": permission, "principal": user_arn},
        )
        raise Problem(_STATUS[decision.reason], decision.reason, _TITLES[decision.reason], decision.detail)
    logger.append_keys(clientId=decision.client_id)
    return decision


__all__ = ["Caller", "authorize_request", "current_registry", "use_registry_loader"]
