"""gunicorn's configuration: settings read from the environment, and the hooks it calls.

Loaded by microservices-server as `gunicorn -c python:microservices_server.gunicorn_conf`
(plain `gunicorn -c python:...` works the same). It only reads settings and names hooks: the
app is imported by each worker after fork, never here (see lifecycle.py for why).

PORT (8080), WEB_CONCURRENCY worker processes (1), GUNICORN_THREADS threads per worker (8),
GUNICORN_TIMEOUT (30 s), DRAIN_DELAY (3 s) and GRACEFUL_TIMEOUT (20 s): see settings.py.
"""

from __future__ import annotations

import os

from microservices_common.logs import logging_config

from . import access_log, lifecycle
from .settings import ServeSettings

_settings = ServeSettings.from_env()

# All interfaces: in a container the port is only reachable as published (compose publishes
# it on 127.0.0.1) or through a Service.
bind = [f"0.0.0.0:{_settings.port}"]
workers = _settings.workers
worker_class = _settings.worker_class
threads = _settings.threads
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = 5
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
post_worker_init = lifecycle.post_worker_init
when_ready = lifecycle.drain_on_sigterm(_settings.drain_delay)
child_exit = lifecycle.child_exit
on_exit = lifecycle.on_exit
