"""Where the end-to-end scenarios run: the docker compose stack, or a kind cluster.

A backend knows how to start the whole app, stop, start and restart one tier, reach the
server over HTTP, read a component's logs and count its restarts. The scenarios
(test_scenarios.py) are written once against this interface.

Tiers: "data" (Redis), "app" (the server), "support" (counter and poller).

A scenario states what it needs of the backend beyond that (`@pytest.mark.needs("persistence")`)
and a backend lists what it offers (`features`): see verdict().
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], check: bool = True, timeout: float = 600, **kwargs) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


class ComposeBackend:
    """docker compose, as a separate project on a free port (a stack of the user's own
    running on 8080 is left alone). JSON logs, so that the counter's ledger can be read."""

    name = "compose"
    services = {"data": ["redis"], "app": ["server"], "support": ["counter", "poller"]}
    features = frozenset({"persistence"})  # AOF on a named volume, see docker-compose.yml
    chosen = False  # one configuration, CI's: it must offer every scenario what it needs

    def __init__(self, project: str | None = None, files: tuple[str, ...] = ()):
        # Compose files other than docker-compose.yml alone (the HA variant adds its own).
        self.files = [arg for file in files for arg in ("-f", file)]
        # E2E_COMPOSE_PROJECT lets two checkouts run the suite side by side (with TAG set
        # apart too, so that their images do not overwrite each other).
        self.project = project or os.environ.get("E2E_COMPOSE_PROJECT", "microservices-e2e")
        self.port = free_port()
        self.server_url = f"http://127.0.0.1:{self.port}"
        self.api_key = "e2e-api-key"
        self.env = {
            **os.environ,
            "SERVER_PORT": str(self.port),
            "LOG_FORMAT": "json",
            "API_KEY": self.api_key,
            "REDIS_PASSWORD": "e2e-redis-password",
        }

    def compose(self, *args: str, timeout: float = 900) -> str:
        argv = ["docker", "compose", "-p", self.project, *self.files, *args]
        return run(argv, env=self.env, timeout=timeout)

    def start(self) -> None:
        self.compose("up", "--build", "--detach", "--wait", "--wait-timeout", "180")

    def stop_tier(self, tier: str) -> None:
        self.compose("stop", *self.services[tier])

    def start_tier(self, tier: str) -> None:
        self.compose("start", *self.services[tier])

    def restart_tier(self, tier: str) -> None:
        self.compose("restart", *self.services[tier])

    def container(self, component: str) -> dict:
        cid = self.compose("ps", "--all", "--quiet", component).strip()
        return json.loads(run(["docker", "inspect", cid]))[0]

    def restarts(self, component: str) -> tuple[int, str]:
        """(restart count, start time): either changes if the container was restarted."""
        state = self.container(component)
        return state["RestartCount"], state["State"]["StartedAt"]

    def logs(self, component: str) -> str:
        return self.compose("logs", "--no-color", "--no-log-prefix", component)

    def teardown(self, failed: bool = False) -> None:
        if failed:  # what a failure needs to be understood, kept for the workflow to upload
            artifacts = Path(os.environ.get("E2E_ARTIFACTS", ROOT / "e2e-artifacts"))
            artifacts.mkdir(parents=True, exist_ok=True)
            (artifacts / "compose.log").write_text(
                self.compose("logs", "--no-color", "--timestamps")
            )
        self.compose("down", "--volumes", "--timeout", "30")


def verdict(backend, needs: Iterable[str]) -> tuple[str, str] | None:
    """What becomes of a scenario that needs `needs`: None, it runs; ("skip", why) where the
    user chose a configuration that lacks something (E2E_OVERLAY=dev keeps no data); else
    ("fail", why): compose and kind's default overlay must offer everything, so that CI,
    which skips no test, runs every scenario."""
    missing = sorted(set(needs) - backend.features)
    if not missing:
        return None
    where = f"the {backend.name} backend"
    if hasattr(backend, "overlay"):
        where += f" with the {backend.overlay} overlay"
    reason = f"needs {', '.join(missing)}, which {where} does not offer"
    if backend.chosen:
        return "skip", f"{reason} (E2E_OVERLAY=staging or prod runs it)"
    return "fail", reason


def backend_from_env():
    name = os.environ.get("E2E_BACKEND", "compose")
    if name == "compose":
        return ComposeBackend()
    if name == "kind":
        from tests.e2e.kind import KindBackend

        overlay = os.environ.get("E2E_OVERLAY") or None
        return KindBackend(
            overlay=overlay or "staging",
            redis_image=os.environ.get("KIND_REDIS_IMAGE") or None,
            chosen=overlay is not None,
        )
    raise ValueError(f"E2E_BACKEND must be compose or kind, not {name!r}")
