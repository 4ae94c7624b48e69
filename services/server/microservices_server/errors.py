"""Every error answers JSON: {"error": message} with the right status.

`ApiError` is what the code raises for a client-visible failure (400, 415, 503 ...);
werkzeug's own HTTP errors (404, 405, 413), a body that did not arrive within BODY_TIMEOUT
(408, body_deadline.py) and unexpected bugs (500) get the same shape. gunicorn's own errors,
answered before the app sees the request (400, 414, 431), are JSON too: see wire.py.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from .body_deadline import BodyTimeout

log = logging.getLogger("server")


class ApiError(Exception):
    """An error the client caused or must handle; becomes {"error": message} with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def api_error(exc: ApiError):
    return jsonify(error=exc.message), exc.status, exc.headers


def http_error(exc: HTTPException):
    response = jsonify(error=exc.description)
    response.status_code = exc.code or 500
    if exc.code == 405 and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def body_timeout(exc: BodyTimeout):
    # The connection closes after this answer: the body is still unread (wire.py).
    return jsonify(error=str(exc)), 408


def unexpected(_exc: Exception):
    # A bug, not a client error: log it whole, answer JSON without the details.
    log.exception("unhandled error")
    return jsonify(error="internal server error"), 500


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, api_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(BodyTimeout, body_timeout)
    app.register_error_handler(Exception, unexpected)
