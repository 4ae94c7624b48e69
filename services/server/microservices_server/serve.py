"""microservices-server: check the settings, then run gunicorn in this very process (PID 1 in
a container, so that it receives SIGTERM from Kubernetes or Docker directly).

PID 1 ignores a signal it has no handler for, and gunicorn installs its handlers only once it
has read its configuration. A SIGTERM in that window (a pod deleted as it starts) would be lost
and the container killed only when its grace period ends. So the first thing done here, before
the heavier imports, is to catch SIGTERM; once gunicorn can act on it, lifecycle.py stops it,
before any worker is forked. (Only the interpreter's own start, some 50 ms, comes before any
handler can exist.)
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

from . import lifecycle

GUNICORN_CONFIG = "python:microservices_server.gunicorn_conf"
APP = "microservices_server.app:create_app()"


def main() -> None:
    lifecycle.catch_early_sigterm()
    check_settings()
    from gunicorn.app.wsgiapp import run

    sys.argv = ["microservices-server", "--config", GUNICORN_CONFIG, APP]
    run(prog="microservices-server")


def check_settings() -> None:
    """Fail here, with exit code 2 and the variable's name, rather than in every worker.

    Checked in a child process: checking the Redis URL imports redis-py, and gunicorn's master
    must not hold it when it forks the gevent workers, which import it only once gevent has
    patched the socket, ssl and threading modules (else gevent warns, in every worker, that
    redis-py's modules were imported before it could patch them)."""
    pid = os.fork()
    if pid == 0:  # the child: check, report, exit with check()'s code
        code = 1
        try:
            _check()
            code = 0
        except SystemExit as exc:  # exit_on_config_error's exit 2, after its one line
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        except KeyboardInterrupt:  # Ctrl-C while checking: stop quietly, as the shell expects
            code = 128 + signal.SIGINT
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(code)


def _check() -> None:
    from microservices_common.config import exit_on_config_error
    from microservices_common.logs import logging_config

    from .settings import ServeSettings, Settings

    @exit_on_config_error
    def check() -> None:
        Settings.from_env()
        ServeSettings.from_env()
        logging_config("server")

    check()


if __name__ == "__main__":
    main()
