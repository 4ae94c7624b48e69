"""Every JSON answer ({"count": N}, {"error": ...}, the page's /api/status) written by orjson.

Flask's own provider builds each answer through json.dumps and its encoder's Python-level
set-up, then formats a str that the response encodes back to bytes. orjson writes the bytes in
one C call. The output is the same JSON: compact, keys sorted, one newline at the end. Spelled
differently: text outside ASCII goes out as UTF-8 rather than as \\u escapes, a float below
1e-4 as 1e-5 rather than 1e-05, and NaN or infinity (which JSON has no word for; Flask writes
NaN, Infinity) as null. A value orjson cannot write (an integer past 64 bits, say one a client
wrote into the page's history) falls back to Flask's provider rather than answering 500.

orjson is in the server extra for CPython only: it has no build for PyPy, where the server
keeps Flask's provider (`install` leaves it), so one code base runs under both.
"""

from __future__ import annotations

from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider

try:
    import orjson
except ImportError:  # PyPy: Flask's own provider answers
    orjson = None

# Sorted like Flask's answers; OPT_NON_STR_KEYS turns int keys into strings as json.dumps does.
_OPTIONS = (
    (orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE) if orjson else 0
)


class OrjsonProvider(DefaultJSONProvider):
    """Flask's provider with the answers (`response`) written by orjson; reading JSON
    (`loads`) and `dumps` stay Flask's own."""

    def response(self, *args, **kwargs) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        try:
            body = orjson.dumps(obj, default=self.default, option=_OPTIONS)
        except orjson.JSONEncodeError:  # e.g. an int past 64 bits: json.dumps writes it
            return super().response(*args, **kwargs)
        return self._app.response_class(body, mimetype=self.mimetype)


def install(app: Flask) -> None:
    """Answer with orjson where it is installed."""
    if orjson is not None:
        app.json = OrjsonProvider(app)
