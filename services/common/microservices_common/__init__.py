"""Helpers shared by the server, the counter and the poller.

One way to read the environment (config), one backoff (backoff), one logging setup (logs),
one way to stop on SIGTERM (signals) and the worker heartbeat (heartbeat). And two small
commands the lessons run from any image: proxy (the ambassador of k8s/16-ambassador) and
redis_metrics (the adapter of k8s/17-adapter).
"""
