"""docker-compose.yml for the hardening rules, read as YAML (no Docker): the whole project as one
pod whose containers are the services, sharing only named volumes and bind mounts (a tmpfs is
a service's own), with the defaults of ${VAR:-default} where .env would set a value."""

from __future__ import annotations

import re
import shlex

import yaml

from tests.manifests.hardening import (
    Unreadable,
    bound_problems,
    is_redis,
    is_server,
    redis_settings,
    shutdown_seconds,
)
from tests.manifests.render import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKER_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
DURATION_UNITS = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
DEFAULT_STOP_GRACE = 10.0  # seconds, Docker's


def load() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: object) -> str | None:
    """A value as compose reads it with no .env: ${VAR:-default} and ${VAR-default} give the
    default, ${VAR} nothing, $$ one $."""
    if value is None:
        return None

    def one(match: re.Match) -> str:
        return "$" if match[0] == "$$" else match[1] or ""

    return re.sub(r"\$\$|\$\{[^}:-]+(?::?-([^}]*))?\}", one, str(value))


def environment(service: dict) -> list[dict]:
    entries = service.get("environment") or {}
    if isinstance(entries, list):
        entries = dict(e.split("=", 1) if "=" in e else (e, None) for e in entries)
    return [
        {"name": name, "value": interpolate(value)}
        for name, value in entries.items()
        if value is not None  # NAME alone passes the host's value through: unknown here
    ]


def mounts(name: str, service: dict) -> tuple[list[dict], list[dict]]:
    """(volumeMounts, volumes) of a service: named volumes and bind mounts by their source,
    so that services mounting the same one share it; a tmpfs or anonymous volume its own."""
    tmpfs = service.get("tmpfs") or []
    found = [
        (f"{name}-tmpfs-{i}", t.split(":")[0])
        for i, t in enumerate([tmpfs] if isinstance(tmpfs, str) else tmpfs)
    ]
    for i, volume in enumerate(service.get("volumes") or []):
        if isinstance(volume, dict):
            source, target = volume.get("source"), volume["target"]
        else:
            parts = volume.split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
        found.append((source or f"{name}-anonymous-{i}", target))
    volume_mounts = [{"name": volume, "mountPath": target} for volume, target in found]
    return volume_mounts, [{"name": volume, "emptyDir": {}} for volume, _ in found]


def health_command(service: dict) -> list[str]:
    test = (service.get("healthcheck") or {}).get("test") or []
    if isinstance(test, str) or test[:1] == ["CMD-SHELL"]:
        return shlex.split(test if isinstance(test, str) else test[1])
    return test[1:] if test[:1] == ["CMD"] else test


def as_pod(compose: dict) -> list[dict]:
    """The compose project as one Pod object, for the rules that look inside a pod."""
    spec: dict = {"containers": [], "volumes": []}
    for name, service in compose["services"].items():
        volume_mounts, volumes = mounts(name, service)
        spec["volumes"] += [v for v in volumes if v not in spec["volumes"]]
        container = {
            "name": name,
            "image": interpolate(service.get("image", "")),
            "env": environment(service),
            "volumeMounts": volume_mounts,
        }
        if health_command(service):
            container["livenessProbe"] = {"exec": {"command": health_command(service)}}
        spec["containers"].append(container)
    return [{"kind": "Pod", "metadata": {"name": "docker-compose"}, "spec": spec}]


def docker_bytes(size: object) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([bkmg]?)b?", str(size).strip().lower())
    if not match:
        raise Unreadable(f"not a Docker memory size: {size!r}")
    return float(match[1]) * DOCKER_UNITS[match[2]]


def seconds(duration: str) -> float:
    """A compose duration: 30s, 1m30s, 1500ms."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration.strip():
        raise Unreadable(f"not a compose duration: {duration!r}")
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


def shell_files(script: str) -> dict[str, str]:
    """The files a shell script writes with printf FORMAT ... > or >> FILE, as text."""
    files: dict[str, str] = {}
    command: list[str] = []
    for word in [*shlex.split(script), "&&"]:
        if word not in ("&&", ";"):
            command.append(word)
            continue
        if command[:1] == ["printf"] and len(command) > 3 and command[-2] in (">", ">>"):
            text = command[1].replace("\\n", "\n")
            target = command[-1]
            files[target] = (files.get(target, "") if command[-2] == ">>" else "") + text
        command = []
    return files


def words(value: object) -> list[str]:
    """An entrypoint or command: a list as it is, a string split as compose splits it."""
    items = shlex.split(value) if isinstance(value, str) else list(value or [])
    return [interpolate(item) for item in items]


def redis_container(name: str, service: dict) -> dict:
    """A Redis service as a container: compose's entrypoint and command are Kubernetes'
    command and args."""
    return {
        "name": name,
        "command": words(service.get("entrypoint")),
        "args": words(service.get("command")),
    }


def script_files(c: dict) -> dict[str, str]:
    """The files a container's sh -c script writes, by path."""
    argv = c["command"] + c["args"]
    return shell_files(argv[2]) if argv[:2] == ["sh", "-c"] and len(argv) > 2 else {}


def memory_limit(service: dict) -> float | None:
    limit = service.get("mem_limit") or (
        (service.get("deploy") or {}).get("resources", {}).get("limits", {}).get("memory")
    )
    return None if limit is None else docker_bytes(limit)


def redis_problems(compose: dict) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        if not is_redis({"image": interpolate(service.get("image", ""))}):
            continue
        c = redis_container(name, service)
        try:
            settings = redis_settings(c, script_files(c).get)
            problems += bound_problems(f"compose: {name}", settings, memory_limit(service))
        except Unreadable as exc:
            problems.append(f"compose: {exc}")
    return problems


def grace_problems(compose: dict) -> list[str]:
    """The server's drain and graceful timeout fit in its stop_grace_period (no preStop)."""
    problems = []
    for pod in as_pod(compose):
        for c in (c for c in pod["spec"]["containers"] if is_server(c)):
            service = compose["services"][c["name"]]
            grace = seconds(service.get("stop_grace_period", f"{DEFAULT_STOP_GRACE:g}s"))
            if grace < shutdown_seconds(c):
                problems.append(
                    f"compose: {c['name']}: stop_grace_period {grace:g} s < "
                    f"{shutdown_seconds(c):g} s (DRAIN_DELAY + GRACEFUL_TIMEOUT + margin)"
                )
    return problems
