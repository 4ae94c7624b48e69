"""The support tier's side of the server's API: an HTTP session, a request bounded as a
whole, and reading an answer without ever raising on what a server sent."""

from __future__ import annotations

import contextlib
import threading
import time

import requests


def http_session(user_agent: str) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    # Proxies from the environment would be wrong for in-cluster calls to app-tier.
    session.trust_env = False
    return session


def send(session: requests.Session, method: str, url: str, timeout: float, **kwargs):
    """session.request, with `timeout` bounding the whole answer.

    requests' own timeout bounds connecting and each wait for data, so a server trickling its
    body a byte at a time could hold the worker (and its SIGTERM) for ever. A watchdog shuts
    the socket down when the deadline passes; the read then fails, which the caller treats as
    an answer that never came.
    """
    deadline = time.monotonic() + timeout
    response = session.request(method, url, timeout=timeout, stream=True, **kwargs)
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (response,))
    watchdog.daemon = True
    watchdog.start()
    try:
        response.content  # noqa: B018 - read the whole body now, or fail at the deadline
    finally:
        watchdog.cancel()
    return response


def _cut(response: requests.Response) -> None:
    with contextlib.suppress(Exception):  # already finished or closed: nothing to cut
        response.raw.shutdown()


def excerpt(response: requests.Response, limit: int = 200) -> str:
    """The start of an answer's body on one line (an HTML error page has many)."""
    return " ".join(response.text.split())[:limit]


def count_in(response: requests.Response) -> int | None:
    """The count of a `200 {"count": <int>}` answer; None for anything else (an HTML page
    from an ingress, `{"total": 5}`, `[]`, `{"count": true}`)."""
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - bad JSON, "[" * 100000 (RecursionError), odd charsets
        return None
    count = body.get("count") if isinstance(body, dict) else None
    # bool is an int in Python: true is not a count.
    return count if isinstance(count, int) and not isinstance(count, bool) else None
