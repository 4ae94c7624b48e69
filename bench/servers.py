"""The servers scripts/benchmark measures, and the images they come from.

Every Python server runs what an image ships: a chroot of the image's exported root
(tests/image_root.in_image), its interpreter, its /opt/venv and its ENV, as the image's user,
but as our child process on our loopback, so its CPU and RSS are read from /proc like any
other's. Node.js runs on this machine (bench/node).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import requests

from bench.processes import Process
from tests.image_root import image_config, image_env, image_root, in_image
from tests.support import env_file, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
VERSION = subprocess.run(
    [str(ROOT / "scripts" / "version")], capture_output=True, text=True, check=True
).stdout.strip()
SERVER_IMAGE = f"microservices/server:{VERSION}"
PYPY_IMAGE = f"microservices/server-pypy:{VERSION}"
COUNTER_IMAGE = f"microservices/counter:{VERSION}"
POLLER_IMAGE = f"microservices/poller:{VERSION}"
NODE_APP = ROOT / "bench" / "node"
# The minimal Flask app goes into the image's root here (PYTHONPATH), beside nothing else.
BENCH_IN_IMAGE = "/opt/bench"
GUNICORN = ["/opt/venv/bin/python", "-m", "gunicorn",
            "--config", "python:microservices_server.gunicorn_conf"]  # fmt: skip


# ---- images -----------------------------------------------------------------------------------


def build_commands(images: set[str]) -> list[list[str]]:
    """How this checkout builds these images (compose's, and the PyPy server with .env's base
    images and pip flags, as compose passes them)."""
    services = sorted(image.split("/")[1].split(":")[0] for image in images - {PYPY_IMAGE})
    commands = [["env", f"TAG={VERSION}", "docker", "compose", "build", *services]]
    if PYPY_IMAGE in images:
        settings = env_file(ROOT / ".env")  # as compose reads it
        names = ("PYTHON_IMAGE", "PYPY_IMAGE", "PIP_INSTALL_FLAGS")
        args = [f"--build-arg={name}={settings[name]}" for name in names if name in settings]
        pypy = ["docker", "build", "--target", "server-pypy", "-t", PYPY_IMAGE, *args, "."]
        commands.append(pypy)
    return commands[0 if services else 1 :]


def ensure_images(images: set[str], build: bool) -> None:
    """With `build`, this checkout's images are built now (Docker's cache makes that quick when
    nothing changed), so that the run measures this checkout; otherwise each image must exist,
    or one line says how to build it. A --variant's IMAGE must exist."""
    ours = images & {SERVER_IMAGE, PYPY_IMAGE, COUNTER_IMAGE, POLLER_IMAGE}
    if PYPY_IMAGE in images and " AS server-pypy" not in (ROOT / "Dockerfile").read_text():
        raise SystemExit("benchmark: the pypy rows need the Dockerfile's server-pypy target, "
                         "which this checkout lacks: leave them out with --only")  # fmt: skip
    for command in build_commands(ours) if build and ours else []:
        print(f"building: {shlex.join(command)}", flush=True)
        if subprocess.run(command, cwd=ROOT).returncode:
            raise SystemExit(f"benchmark: `{shlex.join(command)}` failed (see above)")
    for image in sorted(images):
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode:
            if image not in ours:
                raise SystemExit(f"benchmark: no image {image} (a --variant's IMAGE)")
            how = shlex.join(build_commands({image})[0])
            raise SystemExit(f"benchmark: {image} is not built: run `{how}` (or --build)")


def interpreter(image: str) -> str:
    """The Python an image ships, and when the image was built: e.g. "CPython 3.13.5, image
    3f2a9c1d7e0b built 2026-12-05T18:40:12" (without --build, a run measures the images as
    they are, maybe older than the checkout)."""
    code = "import platform; print(platform.python_implementation(), platform.python_version())"
    argv = in_image(image, ["/opt/venv/bin/python", "-c", code])
    out = subprocess.run(argv, capture_output=True, text=True, env=image_env(image))
    inspect = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}} {{.Created}}", image],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    built = f"image {inspect[0].removeprefix('sha256:')[:12]} built {inspect[1][:19]}"
    return f"{out.stdout.strip() or '?'}, {built}"


def put_in_image(image: str, file: Path) -> None:
    """Copy `file` into the image's root under BENCH_IN_IMAGE, readable by its user."""
    folder = image_root(image) / BENCH_IN_IMAGE.lstrip("/")
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    (folder / file.name).write_bytes(file.read_bytes())
    (folder / file.name).chmod(0o644)


# ---- servers ----------------------------------------------------------------------------------


@dataclass
class Target:
    """One server under test: what it runs (an image's entrypoint or `command` in it; with no
    image, `command` on this machine), and what it used."""

    name: str
    describe: str
    settings: dict[str, str]  # its environment, on top of the image's (or of ours)
    image: str | None = None
    command: list[str] | None = None
    cwd: Path | None = None
    bench_file: Path | None = None  # put into the image's root first (BENCH_IN_IMAGE)
    port: int = field(default_factory=free_port)
    process: Process | None = None
    start_seconds: float = 0.0  # exec to the first 200 from readiness
    warmup: list[dict] = field(default_factory=list)  # the first warm-up's slices
    cpu_used: float = 0.0  # during the measured rounds only

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fresh(self) -> Target:
        """The same server, not started, on a new port."""
        return replace(self, port=free_port(), process=None, warmup=[], cpu_used=0.0)

    def argv_env(self) -> tuple[list[str], dict[str, str]]:
        if self.image is None:
            return self.command, {**os.environ, **self.settings}
        if self.bench_file:
            put_in_image(self.image, self.bench_file)
        argv = in_image(self.image, self.command or image_config(self.image)["Entrypoint"])
        return argv, {**image_env(self.image), **self.settings}

    def start(self, logs: Path) -> None:
        argv, env = self.argv_env()  # exports the image's root first: not part of the start
        started = time.monotonic()
        self.process = Process(self.name, argv, {**env, "PORT": str(self.port)}, logs, self.cwd)

        def ready() -> bool:
            if self.process.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.process.tail()}")
            return requests.get(self.url + "/probe/readiness", timeout=1).status_code == 200

        wait_for(ready, timeout=60, interval=0.01, what=f"{self.name} to be ready")
        self.start_seconds = time.monotonic() - started


def targets(redis_url: str, extra_env: dict[str, str]) -> list[Target]:
    python = {"REDIS_URL": redis_url, "API_KEY": "bench-key", **extra_env}
    flask = {**python, "PYTHONPATH": BENCH_IN_IMAGE}
    app = ROOT / "bench" / "minimal_flask.py"
    return [
        Target("server-1w", f"{SERVER_IMAGE}, 1 worker (WEB_CONCURRENCY=1)",
               {**python, "WEB_CONCURRENCY": "1"}, SERVER_IMAGE),
        Target("server-2w", f"{SERVER_IMAGE}, WEB_CONCURRENCY=2",
               {**python, "WEB_CONCURRENCY": "2"}, SERVER_IMAGE),
        Target("server-1w-wait", f"{SERVER_IMAGE}, 1 worker, REDIS_WAIT_REPLICAS=1",
               {**python, "WEB_CONCURRENCY": "1", "REDIS_WAIT_REPLICAS": "1"}, SERVER_IMAGE),
        Target("flask-1w", "bench/minimal_flask.py, the project's gunicorn config, 1 worker",
               {**flask, "WEB_CONCURRENCY": "1"}, SERVER_IMAGE, [*GUNICORN, "minimal_flask:app"],
               bench_file=app),
        Target("flask-2w", "bench/minimal_flask.py, the project's gunicorn config, 2 workers",
               {**flask, "WEB_CONCURRENCY": "2"}, SERVER_IMAGE, [*GUNICORN, "minimal_flask:app"],
               bench_file=app),
        Target("pypy-1w", f"{PYPY_IMAGE}, 1 worker", {**python, "WEB_CONCURRENCY": "1"},
               PYPY_IMAGE),
        Target("pypy-2w", f"{PYPY_IMAGE}, WEB_CONCURRENCY=2", {**python, "WEB_CONCURRENCY": "2"},
               PYPY_IMAGE),
        Target("node", "Node.js + Express + node-redis, one process, on this machine",
               {"REDIS_URL": redis_url}, command=["node", "server.js"], cwd=NODE_APP),
    ]  # fmt: skip


def variant(spec: str, redis_url: str, extra_env: dict[str, str]) -> Target:
    """--variant LABEL:NAME=VALUE;NAME=VALUE -> the server image's server with those settings.
    IMAGE=NAME runs another image's (an earlier version's, to compare with); COMMAND=PATH a
    command on this machine (bench/python-root makes one for another interpreter)."""
    label, _, settings = spec.partition(":")
    env = dict(item.split("=", 1) for item in settings.split(";") if item)
    command, image = env.pop("COMMAND", None), env.pop("IMAGE", SERVER_IMAGE)
    return Target(label, f"variant: {settings}",
                  {"REDIS_URL": redis_url, "API_KEY": "bench-key", **extra_env, **env},
                  None if command else image, [command] if command else None)  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One line of the table: a server and the request wrk sends it."""

    target: Target
    idempotent: bool = False

    @property
    def label(self) -> str:
        return self.target.name + ("+key" if self.idempotent else "")


def all_rows(servers: list[Target], variants: list[Target]) -> list[Row]:
    by_name = {t.name: t for t in servers}
    keyed = {"server-1w", "server-2w", "server-1w-wait"}  # the counter's real request
    plain = {"server-1w-wait"}  # only keyed: WAIT is what the counter's request costs
    rows = []
    for target in [*servers, *variants]:
        if target.name not in plain:
            rows.append(Row(target))
        if target.name in keyed:
            rows.append(Row(by_name[target.name], idempotent=True))
    return rows
