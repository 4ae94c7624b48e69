"""Helpers shared by the server, the counter and the poller.

One way to read the environment (config), one backoff (backoff), one logging setup (logs),
one way to stop on SIGTERM (signals), the worker heartbeat (heartbeat), the support tier's
HTTP client (client) and identity (identity). The lessons' own commands live in
microservices_lessons.
"""
