"""The kind backend: a cluster of the run's own, the images built and loaded, an overlay
applied, the server reached through a forward to one Ready pod, every pod's logs followed.

What makes it hold on a real cluster (and not only on paper):

- Isolation: a cluster name unique to the run and a kubeconfig of its own (a temporary file),
  so the user's current context is never switched and a cluster of theirs is never deleted.
- Logs: a component's log is every line of every pod it ever had, followed from the moment
  the pod starts (PodLogs). Scaling a tier to 0 deletes its pods and their logs; what we
  followed stays.
- The forward names one Ready pod that is not terminating (kubectl port-forward to a Service
  picks a pod itself, possibly one in its preStop sleep) and is re-established when it dies.
- Diagnostics: the forward's output and `kind export logs` go to E2E_ARTIFACTS
  (e2e-artifacts/ by default), which the workflow uploads.

The command sequences are plain lists, so that tests can check the plan without a cluster.

A rolling update under load (rolling_update_under_load, run by tests/e2e/kind_only with
`make e2e-kind`): the counter's load mode runs inside the support tier's pod against the app
tier's Service while the app tier's template changes and every server is replaced; not one
request may fail. Compose has nothing like it (a recreated container is a restart), so that
test exists only for this backend.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml

from tests.e2e.backends import ROOT, run
from tests.support import env_file, free_port, setting, wait_for

KIND_CONFIG = "tests/e2e/kind-config.yaml"


def ready_pods(pods: dict) -> list[str]:
    """Names of the pods (from `kubectl get pods -o json`) that are Ready and not terminating,
    newest first: the ones a forward may use."""
    ready = []
    for pod in pods["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue  # in its preStop sleep or draining: about to go
        conditions = pod.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            ready.append((pod["metadata"]["creationTimestamp"], pod["metadata"]["name"]))
    return [name for _, name in sorted(ready, reverse=True)]


def containers_of(pods: dict, container: str, state: str | None = None) -> list[tuple[str, int]]:
    """(pod, restart count) of every pod's `container` that has started (running or finished),
    or only of those in `state`: one container instance each, since a restart starts a new log."""
    found = []
    for pod in pods["items"]:
        for status in pod.get("status", {}).get("containerStatuses", []):
            current = status.get("state", {})
            started = (
                state in current if state else ("running" in current or "terminated" in current)
            )
            if status["name"] == container and started:
                found.append((pod["metadata"]["name"], status.get("restartCount", 0)))
    return found


def remembered_replicas(previous: int | None, current: str) -> int:
    """The replica count to restore a stopped tier to: what it had before the first stop.
    A tier found at 0 (stopped already, or left so by a failed test) keeps what was known."""
    if previous is not None:
        return previous
    return int(current) if current and int(current) > 0 else 1


ROLLED_REPLICAS = 3  # servers during the rolling update: each is replaced in turn
LOAD = {"rate": 40, "concurrency": 4, "seconds": 150}  # the counter's load mode, in total


def load_summary(output: str) -> dict | None:
    """The counter's last `load_summary` (LOG_FORMAT=json) in the output of its load mode."""
    summaries = []
    for line in output.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == "load_summary":
                summaries.append(entry)
    return summaries[-1] if summaries else None


def rollout_problems(result: dict) -> list[str]:
    """What a rolling update under load must show: the load ran through the whole rollout and
    past the old servers' exit, every server was replaced, and no request failed."""
    summary = result["summary"]
    problems = []
    if summary is None:
        return ["the load generator printed no summary:\n" + result["output"][-2000:]]
    if summary["failed"]:
        problems.append(f"{summary['failed']} request(s) failed while the app tier rolled")
    if not summary["ok"]:
        problems.append("no request succeeded: the load never reached the app tier")
    if not result["load_outlived_rollout"]:
        problems.append("the load ended before the old servers were gone: it proves nothing")
    if set(result["pods_before"]) & set(result["pods_after"]):
        problems.append(
            f"servers not replaced: {set(result['pods_before']) & set(result['pods_after'])}"
        )
    if len(result["pods_after"]) < 2:
        problems.append(f"{len(result['pods_after'])} server(s): a rollout of one pod shows little")
    return problems


class PodLogs:
    """Follows the log of `container` in every pod of `tier`: each container instance (a pod,
    and a restart inside it) from its first line to its last."""

    def __init__(self, backend: KindBackend, tier: str, container: str):
        self.backend, self.tier, self.container = backend, tier, container
        # (pod, restart count) -> its lines; in the order first seen
        self.segments: dict[tuple[str, int], list[str]] = {}
        self._streams: dict[tuple[str, int], subprocess.Popen] = {}
        self._lock = threading.Lock()

    def pods(self) -> dict:
        return json.loads(
            run(self.backend.kubectl("get", "pods", "-l", f"tier={self.tier}", "-o", "json"))
        )

    def refresh(self) -> None:
        """Follow every container instance not yet followed, and again one whose stream ended
        while it still runs (a follow re-reads the current instance's log from its start)."""
        pods = self.pods()
        running = set(containers_of(pods, self.container, "running"))
        for key in containers_of(pods, self.container):
            stream = self._streams.get(key)
            if stream is None or (stream.poll() is not None and key in running):
                self._follow(key)

    def _follow(self, key: tuple[str, int]) -> None:
        stream = subprocess.Popen(
            self.backend.pod_logs_command(key[0], self.container),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        with self._lock:
            self.segments[key] = []  # the follow starts from the first line again
            self._streams[key] = stream
        threading.Thread(target=self._read, args=(key, stream), daemon=True).start()

    def _read(self, key: tuple[str, int], stream: subprocess.Popen) -> None:
        for line in stream.stdout:
            with self._lock:
                if self._streams.get(key) is stream:
                    self.segments[key].append(line.rstrip("\n"))

    def settle(self, timeout: float = 60) -> None:
        """Wait until the streams of instances no longer running have delivered their last
        line (`kubectl logs --follow` ends when its container does)."""
        running = set(containers_of(self.pods(), self.container, "running"))
        for key, stream in list(self._streams.items()):
            if key not in running:
                try:
                    stream.wait(timeout)
                except subprocess.TimeoutExpired:
                    stream.terminate()

    def text(self) -> str:
        self.refresh()
        with self._lock:
            return "\n".join(line for lines in self.segments.values() for line in lines)

    def close(self) -> None:
        for stream in self._streams.values():
            if stream.poll() is None:
                stream.terminate()


class KindBackend:
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

    def __init__(
        self,
        overlay: str = "staging",
        cluster: str | None = None,
        redis_image: str | None = None,
        workdir: Path | None = None,
    ):
        self.overlay = overlay
        # Unique to the run: a cluster of the user's with the usual name is never touched.
        self.cluster = cluster or f"microservices-e2e-{secrets.token_hex(3)}"
        # A generated name is the run's own from the start: if `kind create` is interrupted
        # half-way, teardown may still delete what it left. A given name may be the user's.
        self._created = cluster is None
        self.namespace = f"microservices-{overlay}"
        self.has_persistence = overlay in ("staging", "prod")
        # Air-gapped: a local Redis image, loaded into the cluster and set in the overlay.
        self.redis_image = redis_image
        self.kustomize_root = ROOT / "kustomize"
        # Made by start(): planning alone leaves nothing behind.
        self.workdir = Path(workdir or Path(tempfile.gettempdir()) / f"kind-e2e-{self.cluster}")
        self.kubeconfig = self.workdir / "kubeconfig"
        self.artifacts = Path(os.environ.get("E2E_ARTIFACTS", ROOT / "e2e-artifacts"))
        self.port = free_port()
        self.server_url = f"http://127.0.0.1:{self.port}"
        self._forward: subprocess.Popen | None = None
        self._forward_lock = threading.RLock()
        self._forward_log = None
        self._replicas: dict[str, int] = {}  # of each tier stopped by stop_tier
        self._logs = {c: PodLogs(self, self.tiers[c], c) for c in self.containers}
        self._watchdog_stop = threading.Event()

    @property
    def api_key(self) -> str:
        """API_KEY of the overlay's Secret (from the env file its secretGenerator reads)."""
        overlay = self.kustomize_root / "overlays" / self.overlay
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        secrets_file = kustomization["secretGenerator"][0]["envs"][0]
        return env_file(overlay / secrets_file)["API_KEY"]

    # --- the plan: plain command lists -------------------------------------------------------

    def kubectl(self, *args: str) -> list[str]:
        return ["kubectl", "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, *args]

    def overlay_dir(self) -> Path:
        if self.redis_image:
            return self.workdir / "kustomize" / "overlays" / self.overlay
        return self.kustomize_root / "overlays" / self.overlay

    def preflight(self) -> None:
        """Fail before anything is built when the overlay cannot be applied."""
        secrets_env = self.kustomize_root / "overlays/prod/secrets.env"
        if self.overlay == "prod" and not secrets_env.is_file():
            raise RuntimeError(
                f"E2E_OVERLAY=prod needs {secrets_env}: copy secrets.env.example there, fill it in"
            )

    def prepare_overlay(self) -> None:
        """With a local Redis image: a copy of kustomize/ whose overlay points at it."""
        if not self.redis_image:
            return
        tree = self.workdir / "kustomize"
        shutil.copytree(self.kustomize_root, tree, dirs_exist_ok=True)
        kustomization = tree / "overlays" / self.overlay / "kustomization.yaml"
        document = yaml.safe_load(kustomization.read_text())
        name, _, tag = self.redis_image.rpartition(":")
        document.setdefault("images", []).append(
            {"name": "valkey/valkey", "newName": name or tag, **({"newTag": tag} if name else {})}
        )
        kustomization.write_text(yaml.safe_dump(document, sort_keys=False))

    def setup_commands(self) -> list[list[str]]:
        commands = [
            [
                "kind",
                "create",
                "cluster",
                "--name",
                self.cluster,
                "--config",
                KIND_CONFIG,
                "--kubeconfig",
                str(self.kubeconfig),
                "--wait",
                "180s",
            ]
        ]
        build_args = [
            arg
            for name in ("PYTHON_IMAGE", "PIP_INSTALL_FLAGS")
            if (value := setting(name))
            for arg in ("--build-arg", f"{name}={value}")
        ]
        for service, image in self.images.items():
            commands.append(["docker", "build", "--target", service, *build_args, "-t", image, "."])
            commands.append(["kind", "load", "docker-image", "--name", self.cluster, image])
        if self.redis_image:
            commands.append(
                ["kind", "load", "docker-image", "--name", self.cluster, self.redis_image]
            )
        commands.append(
            [
                "kubectl",
                "--kubeconfig",
                str(self.kubeconfig),
                "apply",
                "-k",
                str(self.overlay_dir()),
            ]
        )
        for deployment in self.deployments.values():
            commands.append(self.rollout_status(deployment))
        return commands

    def rollout_status(self, deployment: str) -> list[str]:
        return self.kubectl("rollout", "status", f"deployment/{deployment}", "--timeout", "300s")

    def scale_commands(self, tier: str, replicas: int) -> list[list[str]]:
        deployment = self.deployments[tier]
        commands = [self.kubectl("scale", f"deployment/{deployment}", f"--replicas={replicas}")]
        if replicas:
            commands.append(self.rollout_status(deployment))
        return commands

    def restart_commands(self, tier: str) -> list[list[str]]:
        deployment = self.deployments[tier]
        return [
            self.kubectl("rollout", "restart", f"deployment/{deployment}"),
            self.rollout_status(deployment),
        ]

    def load_command(self) -> list[str]:
        """The counter's load mode inside the support tier's pod, against API_URL: the app
        tier's Service, as every client reaches it."""
        return self.kubectl(
            "exec",
            "deploy/support-tier",
            "-c",
            "counter",
            "--",
            "microservices-counter",
            "--rate",
            str(LOAD["rate"]),
            "--concurrency",
            str(LOAD["concurrency"]),
            "--duration",
            str(LOAD["seconds"]),
        )

    def rolling_update_commands(self, mark: str) -> list[list[str]]:
        """A new revision of the app tier (a changed pod template: an annotation), and the
        wait for its rollout. With an HPA (prod) the app tier has its minimum of 2 servers;
        without, it is scaled to ROLLED_REPLICAS first."""
        patch = {"spec": {"template": {"metadata": {"annotations": {"e2e/revision": mark}}}}}
        commands = [] if self.overlay == "prod" else self.scale_commands("app", ROLLED_REPLICAS)
        return [
            *commands,
            self.kubectl("patch", "deployment/app-tier", "--type=merge", "-p", json.dumps(patch)),
            self.rollout_status("app-tier"),
        ]

    def pod_logs_command(self, pod: str, container: str) -> list[str]:
        return self.kubectl("logs", "--follow", f"pod/{pod}", "-c", container)

    def port_forward_command(self, pod: str) -> list[str]:
        return self.kubectl("port-forward", f"pod/{pod}", f"{self.port}:8080")

    def export_logs_command(self) -> list[str]:
        return [
            "kind",
            "export",
            "logs",
            str(self.artifacts / "kind"),
            "--name",
            self.cluster,
        ]

    def teardown_commands(self) -> list[list[str]]:
        if not self._created:
            return []  # never delete a cluster this run did not create
        return [
            [
                "kind",
                "delete",
                "cluster",
                "--name",
                self.cluster,
                "--kubeconfig",
                str(self.kubeconfig),
            ]
        ]

    # --- the backend interface, running those commands ---------------------------------------

    def start(self) -> None:
        self.preflight()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare_overlay()
        self.artifacts.mkdir(parents=True, exist_ok=True)
        commands = self.setup_commands()
        run(commands[0])
        self._created = True
        for argv in commands[1:]:
            run(argv, timeout=900)
        self._refresh_logs()
        self._reforward()
        threading.Thread(target=self._watch, daemon=True).start()

    def _refresh_logs(self, tier: str | None = None) -> None:
        for component, logs in self._logs.items():
            if tier in (None, self.tiers[component]):
                logs.refresh()

    def app_pods(self) -> dict:
        return json.loads(run(self.kubectl("get", "pods", "-l", "tier=app", "-o", "json")))

    def _reforward(self) -> None:
        """Forward to a Ready, non-terminating server pod; wait until it answers."""
        with self._forward_lock:
            self._close_forward()
            pod = wait_for(
                lambda: next(iter(ready_pods(self.app_pods())), None),
                120,
                interval=1,
                what="a Ready app-tier pod that is not terminating",
            )
            self._forward_log = open(self.artifacts / "port-forward.log", "a")  # noqa: SIM115
            self._forward_log.write(f"--- forwarding {self.port} to pod/{pod}\n")
            self._forward_log.flush()
            self._forward = subprocess.Popen(
                self.port_forward_command(pod),
                cwd=ROOT,
                stdout=self._forward_log,
                stderr=subprocess.STDOUT,
            )
            wait_for(
                lambda: requests.get(self.server_url + "/probe/liveness", timeout=2).ok,
                30,
                interval=0.2,
                what=f"the forward to {pod} (see {self.artifacts}/port-forward.log)",
            )

    def _watch(self) -> None:
        """Every second: a forward that died with its pod is forwarded again, to a pod that
        is Ready now; and every new pod's log is followed from its start."""
        while not self._watchdog_stop.wait(1):
            try:
                if self._forward is not None and self._forward.poll() is not None:
                    self._reforward()
                self._refresh_logs()
            except Exception as exc:  # noqa: BLE001 - keep watching; tests see the outage
                print(f"kind e2e: watch: {exc}", flush=True)

    def _close_forward(self) -> None:
        if self._forward and self._forward.poll() is None:
            self._forward.terminate()
            self._forward.wait(10)
        if self._forward_log:
            self._forward_log.close()
        self._forward = None

    def stop_tier(self, tier: str) -> None:
        deployment = self.deployments[tier]
        current = run(
            self.kubectl("get", f"deployment/{deployment}", "-o", "jsonpath={.spec.replicas}")
        ).strip()
        self._replicas[tier] = remembered_replicas(self._replicas.get(tier), current)
        self._refresh_logs(tier)  # every pod about to go is followed before it goes
        for argv in self.scale_commands(tier, 0):
            run(argv)
        # Gone, not only going: then their log streams have delivered the last line.
        wait_for(
            lambda: (
                not json.loads(
                    run(self.kubectl("get", "pods", "-l", f"tier={tier}", "-o", "json"))
                )["items"]
            ),
            120,
            interval=1,
            what=f"the {tier} tier's pods to be gone",
        )
        for component, logs in self._logs.items():
            if self.tiers[component] == tier:
                logs.settle()

    def start_tier(self, tier: str) -> None:
        for argv in self.scale_commands(tier, self._replicas.get(tier, 1)):
            run(argv)
        self._refresh_logs(tier)
        if tier == "app":
            self._reforward()

    def restart_tier(self, tier: str) -> None:
        for argv in self.restart_commands(tier):
            run(argv)
        if tier == "app":
            # rollout status returns while old pods may still be Ready in their preStop sleep;
            # the forward must go to a new one.
            self._reforward()

    def app_pod_names(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.app_pods()["items"])

    def rolling_update_under_load(self) -> dict:
        """Roll the app tier while the load runs; what rollout_problems judges."""
        replicas = run(
            self.kubectl("get", "deployment/app-tier", "-o", "jsonpath={.spec.replicas}")
        ).strip()
        *prepare, patch, status = self.rolling_update_commands(secrets.token_hex(4))
        for argv in prepare:
            run(argv)
        before = self.app_pod_names()
        load = subprocess.Popen(
            self.load_command(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            time.sleep(5)  # the load under way (and a kubectl exec that failed, gone) first
            if load.poll() is not None:
                raise RuntimeError(f"the load did not start:\n{load.communicate()[0].decode()}")
            run(patch)
            run(status, timeout=400)
            # Done when the old servers are gone, not only out of the Service.
            wait_for(
                lambda: not set(before) & set(self.app_pod_names()),
                120,
                interval=1,
                what="the old servers to exit",
            )
            outlived = load.poll() is None
            output = load.communicate(timeout=LOAD["seconds"] + 60)[0].decode()
        finally:
            if load.poll() is None:
                load.kill()
        after = self.app_pod_names()
        if self.overlay != "prod":
            for argv in self.scale_commands("app", int(replicas or 1)):
                run(argv)
        self._reforward()
        return {
            "summary": load_summary(output),
            "output": output,
            "load_outlived_rollout": outlived,
            "pods_before": before,
            "pods_after": after,
        }

    def restarts(self, component: str) -> tuple[int, str]:
        tier = self.tiers[component]
        out = run(self.kubectl("get", "pods", "-l", f"tier={tier}", "-o", "json"))
        total, names = 0, []
        for pod in json.loads(out)["items"]:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            names.append(pod["metadata"]["name"])
            for status in pod["status"].get("containerStatuses", []):
                if status["name"] == component:
                    total += status["restartCount"]
        return total, ",".join(sorted(names))

    def logs(self, component: str) -> str:
        return self._logs[component].text()

    def teardown(self, failed: bool = False) -> None:
        self._watchdog_stop.set()
        with self._forward_lock:  # not while the watch is forwarding again
            self._close_forward()
        for logs in self._logs.values():
            logs.close()
        if self._created and failed:
            self.artifacts.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(self.export_logs_command(), capture_output=True, text=True)
            if result.returncode != 0:
                print(f"kind export logs failed:\n{result.stdout}{result.stderr}", flush=True)
        for argv in self.teardown_commands():
            run(argv, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
