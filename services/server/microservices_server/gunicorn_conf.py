"""gunicorn's configuration: settings read from the environment, and the hooks it calls.

Loaded by microservices-server as `gunicorn -c python:microservices_server.gunicorn_conf`
(plain `gunicorn -c python:...` works the same). It only reads settings and names hooks: the
app is imported by each worker after fork, never here (see lifecycle.py for why).

PORT (8080), WEB_CONCURRENCY worker processes (one per CPU the container may use),
GUNICORN_WORKER_CLASS (gevent; or gthread with GUNICORN_THREADS threads, 8), ACCESS_LOG (api),
GUNICORN_TIMEOUT (30 s), DRAIN_DELAY (3 s), GRACEFUL_TIMEOUT (20 s), BODY_TIMEOUT (5 s) and
WARMUP_SECONDS (0: warmup.py): see settings.py.

Why gevent, one worker per CPU, and a shared listening socket rather than reuse_port: measured
with scripts/benchmark (README, "Measured").
"""

from __future__ import annotations

import os

from microservices_common.logs import logging_config

from . import access_log, lifecycle, wire
from .settings import ServeSettings
from .warmup import warm_up

_settings = ServeSettings.from_env()

# All interfaces: in a container the port is only reachable as published (compose publishes
# it on 127.0.0.1) or through a Service.
bind = [f"0.0.0.0:{_settings.port}"]
workers = _settings.workers
# gevent: one thread per worker, a greenlet per connection; the worker patches the socket
# module before it imports the app, so redis-py's sockets yield instead of blocking (and keep
# their REDIS_TIMEOUT). No threads handing the GIL to each other on every socket call.
# Not gevent_pywsgi, though it took ~8% less CPU per request: gevent's HTTP parser accepts
# Content-Length with Transfer-Encoding, two Content-Lengths and bare LF line ends, which
# gunicorn's refuses (request smuggling behind a proxy). Nor gunicorn's C parser (the `fast`
# extra): gunicorn_h1c has no wheel to install here, and the image compiles nothing.
worker_class = _settings.worker_class
threads = _settings.threads
# Not reuse_port: with one shared socket, gunicorn's gevent workers accept one connection at a
# time each and the less busy one takes more; hashing connections to per-worker sockets split
# the CPU 55/45 to 60/40 where the shared socket gave 50/50 to 55/45.
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = 5
# gunicorn's own Python parser, always: gunicorn would switch to its C parser (gunicorn_h1c) by
# itself were that installed, and it was measured (no gain beyond noise, CHANGELOG) and answers
# 3 of 4 differing hostile shapes worse (tests/integration/test_slow_clients.py).
http_parser = "python"
accesslog = "-"
logger_class = access_log.logger_class(_settings.access_log)
logconfig_dict = logging_config("server")
# Each worker imports the app after fork, once on_starting has set up the metrics folder.
preload_app = False
# gunicorn's runtime control socket (gunicornc) would need a writable $HOME; containers are
# managed by their orchestrator, not by hand.
control_socket_disable = True
# Heartbeat files in memory: the root filesystem may be read-only, and a disk-backed /tmp
# can stall workers (https://docs.gunicorn.org/en/stable/faq.html#blocking-os-fchmod).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

on_starting = lifecycle.on_starting
post_fork = lifecycle.post_fork
_worker_ready = lifecycle.post_worker_init(_settings.body_timeout)


def post_worker_init(worker) -> None:
    _worker_ready(worker)
    if _settings.warmup_seconds:  # each worker warms up before it takes a connection
        warm_up(worker, _settings.warmup_seconds)


# An answer that closes the connection closes lingering (wire.py).
post_request = wire.post_request
when_ready = lifecycle.drain_on_sigterm(_settings.drain_delay)
child_exit = lifecycle.child_exit
on_exit = lifecycle.on_exit
