"""Who a process is: the package's version, the hostname (in Kubernetes, the pod's name), and
the User-Agent by which the support tier introduces itself to the server.

The counter and the poller send `microservices-counter/1.0.0 (counter-7c9f-x2kq)`: the
command, its version, its hostname. The server records each one it sees (the page shows them,
pod by pod); older clients send plain `microservices-counter`, still understood. Only these
exact shapes, made of hostname characters, are accepted: any other User-Agent (curl, a
browser, someone's `<script>`) is not a support-tier client and is not recorded.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

KINDS = ("counter", "poller")
_VERSION = r"[0-9A-Za-z.+-]{1,32}"
_HOST = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
USER_AGENT = re.compile(
    rf"microservices-(?P<kind>{'|'.join(KINDS)})(?:/(?P<version>{_VERSION}))?"
    rf"(?: \((?P<host>{_HOST})\))?"
)


@functools.cache
def version() -> str:
    """The installed version of the project (the `microservices` distribution)."""
    try:
        return dist_version("microservices")
    except PackageNotFoundError:
        return "unknown"


def runs_in() -> str:
    """What this process runs in, as the page names it: a "pod" (Kubernetes sets
    KUBERNETES_SERVICE_HOST in every container of a pod), a "container" (Docker and Podman
    leave /.dockerenv or /run/.containerenv), else a "host"."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "pod"
    if any(os.path.exists(marker) for marker in ("/.dockerenv", "/run/.containerenv")):
        return "container"
    return "host"


def hostname() -> str:
    """This machine's (container's, pod's) name, in the characters a User-Agent may carry."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64].lstrip("._-") or "unknown"


def user_agent(kind: str) -> str:
    return f"microservices-{kind}/{version()} ({hostname()})"


@dataclass(frozen=True)
class Client:
    """A support-tier client: what its User-Agent says, and how the server stores it."""

    kind: str
    host: str = ""  # "" when the client did not say (an older client)
    version: str = ""

    @classmethod
    def from_user_agent(cls, user_agent: str | None) -> Client | None:
        match = USER_AGENT.fullmatch(user_agent or "")
        if match is None:
            return None
        return cls(match["kind"], match["host"] or "", match["version"] or "")

    @property
    def member(self) -> str:
        """The client as one string (kind, host and version hold no spaces)."""
        return f"{self.kind} {self.host} {self.version}"

    @classmethod
    def from_member(cls, member: str) -> Client | None:
        parts = member.split(" ")
        if len(parts) != 3 or parts[0] not in KINDS:
            return None
        return cls(*parts)
