"""Where the end-to-end scenarios run: the docker compose stack, or a kind cluster.

A backend knows how to start the whole app, stop, start and restart one tier, reach the
server over HTTP, read a component's logs and count its restarts. The scenarios
(test_scenarios.py) are written once against this interface.

Tiers: "data" (Redis), "app" (the server), "support" (counter and poller).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
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
    has_persistence = True  # AOF on a named volume, see docker-compose.yml

    def __init__(self, project: str | None = None):
        # E2E_COMPOSE_PROJECT lets two checkouts run the suite side by side (with TAG set
        # apart too, so that their images do not overwrite each other).
        self.project = project or os.environ.get("E2E_COMPOSE_PROJECT", "microservices-e2e")
        self.port = free_port()
        self.server_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SERVER_PORT": str(self.port),
            "LOG_FORMAT": "json",
            "API_KEY": "e2e-api-key",
            "REDIS_PASSWORD": "e2e-redis-password",
        }

    def compose(self, *args: str, timeout: float = 900) -> str:
        return run(["docker", "compose", "-p", self.project, *args], env=self.env, timeout=timeout)

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

    def teardown(self) -> None:
        self.compose("down", "--volumes", "--timeout", "30")


class KindBackend:
    """A kind cluster: build and load the images, apply an overlay, port-forward the server.

    The command sequences are plain lists, so that tests can check them without a cluster.
    """

    name = "kind"
    deployments = {"data": "data-tier", "app": "app-tier", "support": "support-tier"}
    containers = {
        "redis": "data-tier",
        "server": "app-tier",
        "counter": "support-tier",
        "poller": "support-tier",
    }
    tiers = {"redis": "data", "server": "app", "counter": "support", "poller": "support"}
    images = {
        "server": "microservices/server:1.0.0",
        "counter": "microservices/counter:1.0.0",
        "poller": "microservices/poller:1.0.0",
    }

    def __init__(self, overlay: str = "staging", cluster: str = "microservices-e2e"):
        self.overlay = overlay
        self.cluster = cluster
        self.namespace = f"microservices-{overlay}"
        self.has_persistence = overlay in ("staging", "prod")
        self.port = free_port()
        self.server_url = f"http://127.0.0.1:{self.port}"
        self._port_forward: subprocess.Popen | None = None
        self._replicas: dict[str, int] = {}  # of each tier stopped by stop_tier

    def kubectl(self, *args: str) -> list[str]:
        return ["kubectl", "--context", f"kind-{self.cluster}", "-n", self.namespace, *args]

    def setup_commands(self) -> list[list[str]]:
        commands = [
            [
                "kind",
                "create",
                "cluster",
                "--name",
                self.cluster,
                "--config",
                "tests/e2e/kind-config.yaml",
                "--wait",
                "120s",
            ]
        ]
        for service, image in self.images.items():
            commands.append(["docker", "build", "--target", service, "-t", image, "."])
            commands.append(["kind", "load", "docker-image", "--name", self.cluster, image])
        commands.append(
            [
                "kubectl",
                "--context",
                f"kind-{self.cluster}",
                "apply",
                "-k",
                f"kustomize/overlays/{self.overlay}",
            ]
        )
        for deployment in self.deployments.values():
            commands.append(
                self.kubectl("rollout", "status", f"deployment/{deployment}", "--timeout", "180s")
            )
        return commands

    def scale_commands(self, tier: str, replicas: int) -> list[list[str]]:
        deployment = self.deployments[tier]
        return [
            self.kubectl("scale", f"deployment/{deployment}", f"--replicas={replicas}"),
            self.kubectl("rollout", "status", f"deployment/{deployment}", "--timeout", "180s"),
        ]

    def restart_commands(self, tier: str) -> list[list[str]]:
        deployment = self.deployments[tier]
        return [
            self.kubectl("rollout", "restart", f"deployment/{deployment}"),
            self.kubectl("rollout", "status", f"deployment/{deployment}", "--timeout", "180s"),
        ]

    def port_forward_command(self) -> list[str]:
        return self.kubectl("port-forward", "service/app-tier", f"{self.port}:8080")

    def teardown_commands(self) -> list[list[str]]:
        return [["kind", "delete", "cluster", "--name", self.cluster]]

    # --- the backend interface, running those commands ---

    def start(self) -> None:
        for argv in self.setup_commands():
            run(argv)
        self._forward()

    def _forward(self) -> None:
        if self._port_forward:
            self._port_forward.terminate()
        self._port_forward = subprocess.Popen(
            self.port_forward_command(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(2)

    def stop_tier(self, tier: str) -> None:
        self._replicas[tier] = int(
            run(
                self.kubectl(
                    "get", f"deployment/{self.deployments[tier]}", "-o", "jsonpath={.spec.replicas}"
                )
            )
            or 1
        )
        for argv in self.scale_commands(tier, 0):
            run(argv)

    def start_tier(self, tier: str) -> None:
        for argv in self.scale_commands(tier, self._replicas.get(tier, 1)):
            run(argv)
        if tier == "app":
            self._forward()

    def restart_tier(self, tier: str) -> None:
        for argv in self.restart_commands(tier):
            run(argv)
        if tier == "app":
            self._forward()  # port-forward follows one pod; find the new one

    def restarts(self, component: str) -> tuple[int, str]:
        out = run(self.kubectl("get", "pods", "-l", f"tier={self.tiers[component]}", "-o", "json"))
        total, names = 0, []
        for pod in json.loads(out)["items"]:
            names.append(pod["metadata"]["name"])
            for status in pod["status"].get("containerStatuses", []):
                if status["name"] == component:
                    total += status["restartCount"]
        return total, ",".join(sorted(names))

    def logs(self, component: str) -> str:
        return run(
            self.kubectl(
                "logs", f"deployment/{self.containers[component]}", "-c", component, "--tail=-1"
            )
        )

    def teardown(self) -> None:
        if self._port_forward:
            self._port_forward.terminate()
        for argv in self.teardown_commands():
            run(argv, check=False)


def backend_from_env():
    name = os.environ.get("E2E_BACKEND", "compose")
    if name == "compose":
        return ComposeBackend()
    if name == "kind":
        return KindBackend(overlay=os.environ.get("E2E_OVERLAY", "staging"))
    raise ValueError(f"E2E_BACKEND must be compose or kind, not {name!r}")
