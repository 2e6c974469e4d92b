"""A stateful local stand-in for Codat's Bill Pay (synchronous) API — see docs/contract.md, Local stack.

`python -m local.sandbox` serves it on 127.0.0.1:$BILLPAY_SANDBOX_PORT (default 4100);
`local.sandbox.server.start_sandbox(...)` runs one in a background thread (tests, the local stack).
Seeded ids are constants in `local.sandbox.seed`.
"""

from local.sandbox.server import SandboxConfig, SandboxHandle, start_sandbox

__all__ = ["SandboxConfig", "SandboxHandle", "start_sandbox"]
