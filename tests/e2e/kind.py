"""The kind backend: a cluster of the run's own, the images built and loaded, an overlay
applied, the server reached through a forward to one Ready pod, every pod's logs followed.

What makes it hold on a real cluster (and not only on paper):

- Isolation: a cluster name unique to the run and a kubeconfig of its own (a temporary file),
  so the user's current context is never switched and a cluster of theirs is never deleted.
- Logs: a component's log is every line of every pod it ever had, followed from the moment
  the pod starts (PodLogs). Scaling a tier to 0 deletes its pods and their logs; what we
  followed stays.
- The forward names one Ready pod that is not terminating (kubectl port-forward to a Service
  picks a pod itself, possibly one in its preStop sleep), of a tier that has settled (after a
  scale down, not one its ReplicaSet is about to delete), and is re-established when it dies.
- Diagnostics: the forward's output and `kind export logs` go to E2E_ARTIFACTS
  (e2e-artifacts/ by default), which the workflow uploads.
- Images go in as archives of the node's platform (`docker image save --platform`, then
  `kind load image-archive`): `kind load docker-image` fails on a pulled multi-platform image
  under Docker's containerd image store (kind issue 3795). KIND_REDIS_IMAGE is read as Docker
  reads an image reference (a registry's port, no tag, a digest) and set the way kustomize's
  `images:` sets it.

The command sequences are plain lists, so that tests can check the plan without a cluster.

A rolling update under load (rolling_update_under_load, run by tests/e2e/kind_only with
`make e2e-kind`): the counter's load mode runs in a pod of its own, with CPU of its own,
against the app tier's Service while the app tier's template changes and every server is
replaced; not one request may fail. Compose has nothing like it (a recreated container is a
restart), so that test exists only for this backend.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from tests.e2e.backends import ROOT, run
from tests.support import env_file, free_port, setting, wait_for

KIND_CONFIG = "tests/e2e/kind-config.yaml"
DATA_TIER_IMAGE = "valkey/valkey"  # the name kustomize/base's `images:` sets the tag of

# An image reference as Docker reads one (the grammar of distribution/reference):
# [domain[:port]/]path[:tag][@algorithm:hex]. A domain may carry a port, so the tag is not
# simply what follows the last `:`; path components are lower case.
_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}(?::[0-9]+)?/)?{_PATH}(?:/{_PATH})*)"
    r"(?::(?P<tag>\w[\w.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-f]{32,}))?"
)


@dataclass(frozen=True)
class ImageRef:
    name: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, reference: str) -> ImageRef:
        match = IMAGE_REFERENCE.fullmatch(reference)
        digest = match and match["digest"]
        if not match or (digest and digest.startswith("sha256:") and len(digest) != 71):
            raise ValueError(
                f"{reference!r} is not an image reference ([registry[:port]/]name[:tag][@digest])"
            )
        return cls(match["name"], match["tag"], digest)

    def kustomize_image(self, name: str = DATA_TIER_IMAGE) -> dict:
        """The `images:` entry that makes kustomize set this image where `name` is used. It
        replaces the base's tag: without a tag or a digest Docker means `latest` (what
        `docker save` and so kind load), never the base's tag on another image."""
        entry = {"name": name, "newName": self.name}
        if self.tag or not self.digest:
            entry["newTag"] = self.tag or "latest"
        if self.digest:
            entry["digest"] = self.digest
        return entry

    def __str__(self) -> str:
        """As a pod runs it: name, tag (`latest` if neither a tag nor a digest), digest."""
        entry = self.kustomize_image()
        tag = f":{entry['newTag']}" if "newTag" in entry else ""
        return f"{self.name}{tag}{'@' + self.digest if self.digest else ''}"


# `docker image save --platform` needs API 1.48 (Docker 28) at both ends.
SAVE_PLATFORM_API = (1, 48)
DOCKER_VERSION = ["docker", "version", "--format", "{{json .}}"]


@dataclass(frozen=True)
class Docker:
    """What loading images into kind depends on: the daemon's platform (kind's nodes are its
    containers, so theirs too) and the API version client and daemon both speak."""

    platform: str
    api: tuple[int, int]

    @classmethod
    def from_version(cls, output: str) -> Docker:
        """From `docker version --format '{{json .}}'`."""
        version = json.loads(output)
        server = version["Server"]

        def api(side: dict) -> tuple[int, int]:
            major, minor = side["ApiVersion"].split(".")[:2]
            return int(major), int(minor)

        return cls(f"{server['Os']}/{server['Arch']}", min(api(version["Client"]), api(server)))

    @property
    def saves_one_platform(self) -> bool:
        return self.api >= SAVE_PLATFORM_API


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


def active(pod: dict) -> bool:
    """A pod its ReplicaSet counts: not terminating, not finished."""
    phase = pod.get("status", {}).get("phase")
    return not pod["metadata"].get("deletionTimestamp") and phase not in ("Succeeded", "Failed")


def forward_target(pods: dict, replicas: int) -> str | None:
    """The pod to forward to: the newest Ready one that is not terminating, once the tier has
    settled, its active pods as many as its Deployment's replicas. Until then a ReplicaSet
    scaled down may not have marked yet the pods it deletes, and it deletes the newest first:
    a forward to the newest Ready pod would die with it."""
    if sum(active(pod) for pod in pods["items"]) != replicas:
        return None
    return next(iter(ready_pods(pods)), None)


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


# What an overlay offers the scenarios that need it (tests/e2e/conftest.py: needs).
OVERLAY_FEATURES = {
    "dev": frozenset(),  # Valkey on an emptyDir: its data goes with its pod
    "staging": frozenset({"persistence"}),
    "prod": frozenset({"persistence"}),
}
ROLLED_REPLICAS = 3  # servers during the rolling update: each is replaced in turn
LOAD = {"rate": 40, "concurrency": 4, "seconds": 150}  # the counter's load mode, in total
LOAD_POD = "e2e-load"
# Its own CPU: in the counter's container (200m) throttling pushed requests past the 2 s
# REQUEST_TIMEOUT, and those count as failed.
LOAD_RESOURCES = {
    "requests": {"cpu": "500m", "memory": "64Mi"},
    "limits": {"cpu": "1", "memory": "128Mi"},
}


def load_pod(support: dict) -> dict:
    """The rolling update's load generator: the counter's load mode in a pod of its own, made
    from the support tier's Deployment (its account, security context, image, API_URL: the app
    tier's Service, as every client reaches it) with CPU of its own. It carries the support
    tier's `tier` label, which the network policies let reach the app tier, and not the whole
    Deployment selector: a ReplicaSet adopts an orphan pod it selects, then deletes a pod of
    one too many."""
    template = support["spec"]["template"]
    spec = template["spec"]
    counter = next(c for c in spec["containers"] if c["name"] == "counter")
    mounts = counter.get("volumeMounts", [])
    program = [
        "microservices-counter",
        *("--rate", str(LOAD["rate"])),
        *("--concurrency", str(LOAD["concurrency"])),
        *("--duration", str(LOAD["seconds"])),
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": LOAD_POD,
            "labels": {"tier": template["metadata"]["labels"]["tier"], "e2e": "load"},
        },
        "spec": {
            "restartPolicy": "Never",
            **{
                key: spec[key]
                for key in (
                    "serviceAccountName",
                    "automountServiceAccountToken",
                    "securityContext",
                    "terminationGracePeriodSeconds",
                )
                if key in spec
            },
            "containers": [
                {
                    # No liveness probe: the load mode touches no heartbeat.
                    "name": "load",
                    "image": counter["image"],
                    "imagePullPolicy": counter.get("imagePullPolicy", "IfNotPresent"),
                    "command": program,
                    "env": counter.get("env", []),
                    "resources": LOAD_RESOURCES,
                    "securityContext": counter["securityContext"],
                    "volumeMounts": mounts,
                }
            ],
            "volumes": [
                v for v in spec.get("volumes", []) if v["name"] in {m["name"] for m in mounts}
            ],
        },
    }


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
        self._lock = threading.Lock()  # segments and streams, against the readers
        # One refresh at a time: the watch thread and the test's thread both refresh, and two
        # that see the same new instance would follow it twice, one stream never terminated.
        self._refreshing = threading.Lock()
        self._closed = False  # and a refresh after close() starts nothing

    def pods(self) -> dict:
        return json.loads(
            run(self.backend.kubectl("get", "pods", "-l", f"tier={self.tier}", "-o", "json"))
        )

    def refresh(self) -> None:
        """Follow every container instance not yet followed, and again one whose stream ended
        while it still runs (a follow re-reads the current instance's log from its start)."""
        with self._refreshing:
            if self._closed:
                return
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
        with self._lock:
            streams = list(self._streams.items())
        for key, stream in streams:
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
        with self._refreshing, self._lock:
            self._closed = True
            streams = list(self._streams.values())
        for stream in streams:
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
        "server": "microservices/server:1.1.0",
        "counter": "microservices/counter:1.1.0",
        "poller": "microservices/poller:1.1.0",
    }

    def __init__(
        self,
        overlay: str = "staging",
        cluster: str | None = None,
        redis_image: str | None = None,
        workdir: Path | None = None,
        docker: Docker | None = None,
        chosen: bool = False,
    ):
        if overlay not in OVERLAY_FEATURES:
            raise ValueError(
                f"E2E_OVERLAY must be one of {sorted(OVERLAY_FEATURES)}, not {overlay!r}"
            )
        self.overlay = overlay
        # What the overlay offers the scenarios (conftest.py: @pytest.mark.needs). One the user
        # chose (E2E_OVERLAY) may lack some: those scenarios are skipped, with the reason; the
        # default overlay, like compose, must offer everything (no skipped test in CI).
        self.features = OVERLAY_FEATURES[overlay]
        self.chosen = chosen
        # Unique to the run: a cluster of the user's with the usual name is never touched.
        self.cluster = cluster or f"microservices-e2e-{secrets.token_hex(3)}"
        # A generated name is the run's own from the start: if `kind create` is interrupted
        # half-way, teardown may still delete what it left. A given name may be the user's.
        self._created = cluster is None
        self.namespace = f"microservices-{overlay}"
        # Air-gapped: a local Redis image, loaded into the cluster and set in the overlay.
        self.redis_image = redis_image
        # The daemon that builds and saves the images: asked by start(), given by plan tests.
        self.docker = docker
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
            return self.workdir / "kustomize" / "local"
        return self.kustomize_root / "overlays" / self.overlay

    def preflight(self) -> None:
        """Fail before anything is built when the overlay cannot be applied."""
        secrets_env = self.kustomize_root / "overlays/prod/secrets.env"
        if self.overlay == "prod" and not secrets_env.is_file():
            raise RuntimeError(
                f"E2E_OVERLAY=prod needs {secrets_env}: copy secrets.env.example there, fill it in"
            )
        if self.redis_image:
            try:
                ImageRef.parse(self.redis_image)
            except ValueError as error:
                raise RuntimeError(f"KIND_REDIS_IMAGE: {error}") from None

    def prepare_overlay(self) -> None:
        """With a local Redis image: an overlay of its own (as the README's), beside a copy of
        kustomize/, that takes the chosen overlay and points the data tier at that image; no
        file of the copy is edited (the secrets.env it reads stays beside its overlay)."""
        if not self.redis_image:
            return
        tree = self.workdir / "kustomize"
        shutil.copytree(self.kustomize_root, tree, dirs_exist_ok=True)
        (tree / "local").mkdir(exist_ok=True)
        document = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [f"../overlays/{self.overlay}"],
            "images": [ImageRef.parse(self.redis_image).kustomize_image()],
        }
        local = tree / "local" / "kustomization.yaml"
        local.write_text(yaml.safe_dump(document, sort_keys=False))

    def load_commands(self, image: str) -> list[list[str]]:
        """An image into the cluster, by an archive of the node's platform only: `kind load
        docker-image` imports every platform `docker save` writes, and with Docker's
        containerd image store (the default since Docker 29) that is a pulled image's whole
        multi-platform index, of which only one platform's layers were pulled: `content
        digest ... not found` (kind issue 3795). Before Docker 28 `save` knows no --platform,
        and the classic store it then defaults to saves one platform anyway."""
        if self.docker is None:
            raise RuntimeError("the Docker daemon is not known yet: start() asks it")
        archive = self.workdir / ("image-" + re.sub(r"[^\w.-]", "_", image) + ".tar")
        platform = ["--platform", self.docker.platform] if self.docker.saves_one_platform else []
        return [
            ["docker", "image", "save", *platform, "-o", str(archive), image],
            ["kind", "load", "image-archive", str(archive), "--name", self.cluster],
        ]

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
            commands += self.load_commands(image)
        if self.redis_image:
            commands += self.load_commands(self.redis_image)
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

    def load_pod_file(self) -> Path:
        return self.workdir / f"{LOAD_POD}.json"

    def load_start_commands(self) -> list[list[str]]:
        """The load pod (load_pod(), written to load_pod_file()) created, and running."""
        return [
            self.kubectl("apply", "-f", str(self.load_pod_file())),
            self.kubectl("wait", "--for=condition=Ready", f"pod/{LOAD_POD}", "--timeout=120s"),
        ]

    def load_command(self) -> list[str]:
        """The load's output, from its first line to its summary: the follow ends when the
        load does."""
        return self.kubectl("logs", "--follow", f"pod/{LOAD_POD}", "-c", "load")

    def load_delete_command(self) -> list[str]:
        return self.kubectl("delete", f"pod/{LOAD_POD}", "--ignore-not-found", "--wait=true")

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
        if self.docker is None:
            self.docker = Docker.from_version(run(DOCKER_VERSION))
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

    def app_replicas(self) -> int:
        return int(
            run(self.kubectl("get", "deployment/app-tier", "-o", "jsonpath={.spec.replicas}")) or 0
        )

    def _reforward(self) -> None:
        """Forward to a Ready, non-terminating server pod of a settled app tier (see
        forward_target); wait until it answers."""
        with self._forward_lock:
            if self._watchdog_stop.is_set():
                return  # torn down: no forward to outlive the run
            self._close_forward()
            pod = wait_for(
                lambda: forward_target(self.app_pods(), self.app_replicas()),
                120,
                interval=1,
                what="a settled app tier with a Ready pod that is not terminating",
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
        is Ready now (and one that could not be made yet, while the tier settles, is tried
        again); and every new pod's log is followed from its start."""
        while not self._watchdog_stop.wait(1):
            try:
                if self._forward is None or self._forward.poll() is not None:
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
        support = json.loads(run(self.kubectl("get", "deployment/support-tier", "-o", "json")))
        self.load_pod_file().write_text(json.dumps(load_pod(support), indent=2))
        run(self.load_delete_command())  # one left by an interrupted run
        load = None
        try:
            for argv in self.load_start_commands():
                run(argv)
            load = subprocess.Popen(
                self.load_command(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            time.sleep(5)  # the load under way (and a follow that failed, gone) first
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
            if load is not None and load.poll() is None:
                load.kill()
            run(self.load_delete_command(), check=False)
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
