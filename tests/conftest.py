"""Shared fixtures, one plugin module per concern (each owned by the part of the system it serves)."""

pytest_plugins = [
    "tests.fixtures.openapi",  # Codat OpenAPI validator (codat_openapi)
    "tests.fixtures.sandbox",  # an in-process Codat sandbox on a free port (sandbox)
    "tests.fixtures.aws",  # moto in server mode on a free port, resources from template.yaml (aws_emulator)
]
