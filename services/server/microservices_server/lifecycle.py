"""The server's life under gunicorn: the metrics folder, and the drain on SIGTERM.

gunicorn's master calls these hooks (named in gunicorn_conf.py). This module is light on
purpose: the master imports it before any worker imports the app, and prometheus_client
decides when it is first imported whether it runs multiprocess, so nothing here imports
Flask or prometheus_client at module level.

SIGTERM (Kubernetes, `docker stop`) reaches the master, which is PID 1. Then:

1. the drain: every worker's readiness answers 503 at once (a flag in shared memory) while
   requests are still served, for DRAIN_DELAY seconds, so that whatever polls readiness
   stops sending traffic before the port closes;
2. gunicorn's own graceful stop: close the listener, let in-flight requests finish within
   GRACEFUL_TIMEOUT, exit 0.

A second SIGTERM during the drain skips the rest of it; SIGINT and SIGQUIT stop at once. A
SIGTERM caught while gunicorn starts stops it before any worker is forked, and a worker still
booting ends at once on its SIGTERM (`post_fork`).
"""

from __future__ import annotations

import gc
import mmap
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from . import asked_board, fault_board, warmup
from .per_pod import PerPod

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class DrainFlag:
    """A flag that the gunicorn master sets and every worker reads: one byte of an anonymous
    shared mapping, made before the workers are forked (no file, no syscall per read)."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 1)  # MAP_SHARED | MAP_ANONYMOUS: survives fork, shared

    def set(self) -> None:
        self._memory[0] = 1

    def is_set(self) -> bool:
        return self._memory[0] == 1


# The master makes it in on_starting and sets it on SIGTERM; every worker inherits it.
shared_flag = PerPod(DrainFlag)
drain_flag = shared_flag.get
# The metrics folder the master made (and so removes on exit); None if it made none.
_own_metrics_dir: str | None = None
# A SIGTERM that arrived before gunicorn could handle it (see serve.py).
_early_sigterm = False


def catch_early_sigterm() -> None:
    """Remember a SIGTERM that arrives before gunicorn installs its own handler."""

    def remember(_signum, _frame) -> None:
        global _early_sigterm
        _early_sigterm = True

    signal.signal(signal.SIGTERM, remember)


def on_starting(server) -> None:
    shared_flag.make_in_master()
    # The fault switches every worker reads (made whether or not FAULTS_ENABLED: 128 bytes).
    fault_board.shared_board.make_in_master()
    # When each support-tier client last asked the pod (the page's "retrying"; seen.py).
    asked_board.shared_board.make_in_master()
    # How many workers have warmed up, with WARMUP_SECONDS (warmup.py; made either way: a byte).
    warmup.shared_board.make_in_master()
    _prepare_metrics_dir(server)


def _prepare_metrics_dir(server) -> None:
    """With several workers, each writes its metrics to files in one folder that /metrics
    adds up (prometheus_client's multiprocess mode). The folder must exist, empty, before
    any worker imports prometheus_client."""
    global _own_metrics_dir
    if "prometheus_client" in sys.modules:
        server.log.warning(
            "prometheus_client was imported before the workers (--preload?): "
            "/metrics will show only the worker that answers"
        )
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        # The operator's folder: prometheus_client needs it wiped between runs.
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
    elif server.cfg.workers > 1:
        _own_metrics_dir = tempfile.mkdtemp(prefix="prometheus-", dir=server.cfg.worker_tmp_dir)
        os.environ[MULTIPROC_ENV] = _own_metrics_dir
    if os.environ.get(MULTIPROC_ENV):
        server.log.info("Metrics of every worker add up in %s", os.environ[MULTIPROC_ENV])


def post_fork(_server, _worker) -> None:
    """In each new worker, first thing: SIGTERM back to its default action (end the process).
    A worker inherits the master's handlers, which only queue the signal for the master's
    loop; until gunicorn installs the worker's own (after gevent has patched, some 100 ms),
    a SIGTERM from a stopping master would be swallowed, and the stop would wait the whole
    GRACEFUL_TIMEOUT before killing the worker. A worker still booting has nothing to finish."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def post_worker_init(body_timeout: float):
    """The post_worker_init hook: in each worker, once it has loaded the app, gunicorn's
    pieces swapped for ours (wire.py: one write per answer, JSON errors, BODY_TIMEOUT), and
    the objects made so far (modules, the app) out of the garbage collector's way. They live
    as long as the worker; without this every full collection walks all ~50,000 of them, a
    pause of ~13 ms for every request in flight (measured: none left over 0.2 ms). On PyPy,
    its major collections paced (gc_pacing.py)."""

    def worker_ready(worker) -> None:
        from . import gc_pacing, wire

        wire.install(worker, body_timeout)
        gc.collect()
        if hasattr(gc, "freeze"):  # CPython only: PyPy's collector has no permanent generation
            gc.freeze()
        gc_pacing.start()  # PyPy only: its major collections a step at a time, not in one go

    return worker_ready


def child_exit(_server, worker) -> None:
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(_server) -> None:
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


def drain_on_sigterm(delay: float):
    """The when_ready hook: from then on, the master's first SIGTERM starts the drain."""

    def when_ready(server) -> None:
        stop = server.handle_term  # gunicorn's own: the graceful stop (raises StopIteration)
        draining = drain_flag()  # the one on_starting made, which every worker reads

        def handle_term() -> None:
            if draining.is_set() or delay <= 0:  # a second SIGTERM, or no drain asked
                draining.set()
                stop()
                return
            draining.set()
            server.log.info(
                "Draining: readiness answers 503 for %gs (DRAIN_DELAY), then graceful stop",
                delay,
            )
            # The second SIGTERM, ours, ends the drain; the main loop keeps managing workers.
            timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM))
            timer.daemon = True
            timer.start()

        server.handle_term = handle_term
        if _early_sigterm:
            # Asked to stop while starting: stop now, before any worker is forked. (A SIGTERM
            # re-sent instead reached workers still booting, before they had handlers of
            # their own: they missed it, and the stop took GRACEFUL_TIMEOUT.)
            server.halt()

    return when_ready
