"""microservices-server: check the settings, then become gunicorn (exec, so gunicorn is PID 1
and receives SIGTERM from Kubernetes or Docker directly)."""

from __future__ import annotations

import os
import sys

from microservices_common.config import exit_on_config_error
from microservices_common.logs import logging_config

from .settings import ServeSettings, Settings

GUNICORN_CONFIG = "python:microservices_server.gunicorn_conf"
APP = "microservices_server.app:create_app()"


@exit_on_config_error
def main() -> None:
    # Fail here, with exit code 2 and the variable's name, rather than in every worker.
    Settings.from_env()
    ServeSettings.from_env()
    logging_config("server")
    argv = [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG, APP]
    os.execv(sys.executable, argv)  # noqa: S606 - argv is ours, no shell


if __name__ == "__main__":
    main()
