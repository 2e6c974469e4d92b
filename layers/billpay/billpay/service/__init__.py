"""Use cases behind the API handlers: each takes validated input, talks to adapters, and returns a
JSON-ready answer or raises `Problem`. Handlers stay AWS glue.

Deliberately empty: importing one use case (e.g. the sweeper's) must not load another's dependencies.
- `list_accounts.list_accounts` — the list route.
- `read_errors.problem_for_read_error` — a failed Codat read → Problem, for every use case that reads.
"""
