"""gunicorn settings, read from the environment.

Loaded by microservices-server as `gunicorn -c python:microservices_server.gunicorn_conf`.

PORT (8080), WEB_CONCURRENCY worker processes (1), GUNICORN_THREADS threads per worker (8),
GUNICORN_TIMEOUT (30 s), GRACEFUL_TIMEOUT (20 s): the time in-flight requests get to finish
after SIGTERM. In Kubernetes, scale with replicas; a few threads per pod serve this app well
because each request is one short Redis round trip.
"""

from __future__ import annotations

import os
import signal
import tempfile

from microservices_common.config import env_int
from microservices_common.logs import logging_config

from .app import begin_shutdown

port = env_int("PORT", 8080, 1, 65535)
workers = env_int("WEB_CONCURRENCY", 1, 1, 64)
threads = env_int("GUNICORN_THREADS", 8, 1, 256)
timeout = env_int("GUNICORN_TIMEOUT", 30, 1, 3600)
graceful_timeout = env_int("GRACEFUL_TIMEOUT", 20, 1, 3600)

bind = [f"0.0.0.0:{port}"]
worker_class = "gthread"
keepalive = 5
accesslog = "-"
# gunicorn's runtime control socket (gunicornc) would need a writable $HOME; containers are
# managed by their orchestrator, not by hand.
control_socket_disable = True
logconfig_dict = logging_config("server")
# Heartbeat files in memory: the root filesystem may be read-only, and a disk-backed /tmp
# can stall workers (https://docs.gunicorn.org/en/stable/faq.html#blocking-os-fchmod).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Several processes: each keeps its metrics in this folder, and /metrics adds them up.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="prometheus-", dir=worker_tmp_dir
    )


def post_worker_init(worker):
    """On SIGTERM, turn readiness to 503 at once, then let gunicorn drain as usual."""
    drain = worker.handle_exit

    def handle_term(signum, frame):
        begin_shutdown(worker.wsgi)
        drain(signum, frame)

    signal.signal(signal.SIGTERM, handle_term)


def child_exit(_server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
