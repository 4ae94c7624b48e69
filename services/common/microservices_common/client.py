"""The support tier's side of the server's API: an HTTP session, and reading its answer."""

from __future__ import annotations

import requests


def http_session(user_agent: str) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    # Proxies from the environment would be wrong for in-cluster calls to app-tier.
    session.trust_env = False
    return session


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
    except ValueError:
        return None
    count = body.get("count") if isinstance(body, dict) else None
    # bool is an int in Python: true is not a count.
    return count if isinstance(count, int) and not isinstance(count, bool) else None
