"""Helpers shared by the server, the counter and the poller.

One way to read the environment (config), one backoff (backoff), one logging setup (logs),
one way to stop on SIGTERM (signals) and the worker heartbeat (heartbeat).
"""
