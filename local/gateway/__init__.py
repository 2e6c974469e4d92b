"""The local API Gateway: REST (v1) proxy events to each function's own worker processes.

Kept import-free: every worker process imports this package before its handler.
"""
