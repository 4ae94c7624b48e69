"""gunicorn hooks that act on a process's signals, in a forked process like a worker."""

import os
import signal

from microservices_server import lifecycle


def test_a_worker_still_booting_ends_on_sigterm():
    """A forked worker inherits the master's SIGTERM handler, which would only queue the
    signal: post_fork puts the default action back, so a stopping master is not kept
    waiting GRACEFUL_TIMEOUT for a worker that missed its SIGTERM while booting."""
    pid = os.fork()
    if pid == 0:  # the new worker
        signal.signal(signal.SIGTERM, lambda *_: None)  # the master's handler, inherited
        lifecycle.post_fork(None, None)
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(0)  # reached only if the SIGTERM was swallowed
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), f"the worker went on: exit status {status}"
    assert os.WTERMSIG(status) == signal.SIGTERM
