"""The hardening rules. Each reads one set of objects (an overlay, a lesson, or the compose file
seen as a pod) and returns its problems as sentences, none when the set follows the rule: a
test asserts both that the real manifests pass and that a planted defect does not."""

from __future__ import annotations

import posixpath
import re
import shlex
from functools import partial

from tests.manifests.rules import containers, pod_specs

SERVER_IMAGES = {"microservices/server", "microservices/server-pypy"}
COUNTER_IMAGES = {"microservices/counter"}
WORKER_IMAGES = COUNTER_IMAGES | {"microservices/poller"}
HEARTBEAT_MODULE = "microservices_common.heartbeat"
DEFAULT_HEARTBEAT = "/tmp/heartbeat"  # the services' default
# The services' defaults, for the settings a manifest leaves unset.
DEFAULTS = {
    "DRAIN_DELAY": 3.0,
    "GRACEFUL_TIMEOUT": 20.0,
    "IDEMPOTENCY_TTL": 600.0,
    "RETRY_DEADLINE": 300.0,
}
DEFAULT_GRACE = 30  # Kubernetes' terminationGracePeriodSeconds
GRACE_MARGIN = 2  # seconds between the server's last possible exit and the SIGKILL
# maxmemory at most this share of the memory limit: the rest is headroom for the pages the
# AOF rewrite's fork copies on write, client buffers and allocator overhead.
MAXMEMORY_SHARE = 0.6

K8S_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
K8S_UNITS |= {f"{p}i": 2 ** (10 * n) for n, p in enumerate("KMGTPE", start=1)}
REDIS_UNITS = {"": 1, "k": 10**3, "kb": 2**10, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}
SHELL_SEPARATORS = {"&&", "||", ";", "|"}


class Unreadable(ValueError):
    """A manifest says something a rule cannot evaluate: itself a problem to report."""


def repository(image: str) -> str:
    """The image's name without tag or digest: 'example.com/team/app:1.2' -> '.../app'."""
    name = image.split("@")[0]
    head, _, last = name.rpartition("/")
    return (head + "/" if head else "") + last.split(":")[0]


def is_redis(c: dict) -> bool:
    """A container of the data tier: Valkey, which speaks Redis' protocol (the official image
    valkey/valkey, or the air-gapped microservices-airgap/valkey)."""
    return repository(c.get("image", "")).rsplit("/", 1)[-1] == "valkey"


def is_server(c: dict) -> bool:
    return repository(c.get("image", "")) in SERVER_IMAGES


def env(c: dict, name: str) -> str | None:
    """A container's literal value for `name`; the last entry wins, as in Kubernetes."""
    value = None
    for entry in c.get("env", []):
        if entry["name"] == name:
            if "value" not in entry:
                raise Unreadable(f"{c['name']}: {name} comes from valueFrom; set it by value")
            value = entry["value"]
    return value


def setting(c: dict, name: str) -> float:
    """A number setting as the service reads it: unset or empty means the default."""
    value = env(c, name)
    try:
        return DEFAULTS[name] if value in (None, "") else float(value)
    except ValueError:
        raise Unreadable(f"{c['name']}: {name}={value!r} is not a number") from None


def running(spec: dict) -> list[dict]:
    """Containers that run side by side: the pod's, and init containers that are sidecars."""
    sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    return spec["containers"] + sidecars


def mount_for(c: dict, path: str) -> tuple[str | None, str]:
    """(volume, path inside it) holding `path` in container `c`: the volume mounted at the
    longest mountPath containing it, its subPath prepended; (None, path) for a path on the
    container's own filesystem."""
    path = posixpath.normpath(path)
    best, best_at = None, ""
    for mount in c.get("volumeMounts", []):
        at = posixpath.normpath(mount["mountPath"])
        inside = path == at or path.startswith(at.rstrip("/") + "/")
        if inside and len(at) > len(best_at):
            best, best_at = mount, at
    if best is None:
        return None, path
    inner = posixpath.join(best.get("subPath", ""), posixpath.relpath(path, best_at))
    return best["name"], posixpath.normpath(inner)


# 1. Each worker has its own heartbeat.


def heartbeat_path(c: dict) -> str | None:
    """The heartbeat file a container's loop writes and its probe reads, None if it has none."""
    probes = [c.get(p, {}) for p in ("livenessProbe", "startupProbe", "readinessProbe")]
    commands = [p.get("exec", {}).get("command", []) for p in probes]
    probed = [cmd for cmd in commands if HEARTBEAT_MODULE in cmd]
    written = env(c, "HEARTBEAT_FILE")
    if not (probed or written or repository(c.get("image", "")) in WORKER_IMAGES):
        return None
    path = written or DEFAULT_HEARTBEAT
    for cmd in probed:
        if "--file" in cmd[:-1] and cmd[cmd.index("--file") + 1] != path:
            raise Unreadable(f"{c['name']}: the probe reads another file than {path}")
    return path


def heartbeats(spec: dict) -> dict[str, tuple[str, str]]:
    """Container name -> (where, path inside it) of its heartbeat, for those that have one."""
    found = {}
    for c in running(spec):
        path = heartbeat_path(c)
        if path is not None:
            volume, inner = mount_for(c, path)
            found[c["name"]] = (f"volume {volume}" if volume else f"{c['name']}'s own fs", inner)
    return found


def heartbeat_problems(where: str, objects: list[dict]) -> list[str]:
    problems = []
    for pod, _, spec in pod_specs(objects):
        try:
            found = heartbeats(spec)
        except Unreadable as exc:
            problems.append(f"{where}: {pod}/{exc}")
            continue
        owner: dict[tuple[str, str], str] = {}
        for name, place in found.items():
            if place in owner:
                problems.append(
                    f"{where}: {pod}: {owner[place]} and {name} share one heartbeat "
                    f"({place[1]} on {place[0]}): each keeps the other's liveness green"
                )
            owner.setdefault(place, name)
    return problems


# 2. Redis has a memory bound, and only keys with a TTL can be evicted.


def k8s_bytes(quantity: str | int) -> float:
    match = re.fullmatch(r"([0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)", str(quantity).strip())
    if not match or match[2] not in K8S_UNITS:
        raise Unreadable(f"not a Kubernetes quantity: {quantity!r}")
    return float(match[1]) * K8S_UNITS[match[2]]


def redis_bytes(size: str) -> int:
    """A size as redis.conf reads it: 1k = 1000 bytes, 1kb = 1024 bytes, and so on."""
    match = re.fullmatch(r"(\d+)([a-z]*)", size.strip().lower())
    if not match or match[2] not in REDIS_UNITS:
        raise Unreadable(f"not a Redis memory size: {size!r}")
    return int(match[1]) * REDIS_UNITS[match[2]]


def conf_lines(text: str) -> list[list[str]]:
    """A redis.conf as lists of words, without comments and blank lines."""
    lines = (line.strip() for line in text.splitlines())
    return [shlex.split(line) for line in lines if line and not line.startswith("#")]


def apply_options(settings: dict[str, str], argv: list[str]) -> None:
    """valkey-server's command line options (`--name value...`): they override the file."""
    name = None
    for word in argv:
        if word.startswith("--"):
            name = word[2:].lower()
            settings[name] = ""
        elif name is None:
            raise Unreadable(f"unexpected valkey-server argument {word!r}")
        else:
            settings[name] = f"{settings[name]} {word}".strip()


def server_argv(words: list[str]) -> list[str] | None:
    """What follows `valkey-server` in a shell command's words, up to the next command."""
    if "valkey-server" not in words:
        return None
    rest = words[words.index("valkey-server") + 1 :]
    ends = [i for i, word in enumerate(rest) if word in SHELL_SEPARATORS]
    return rest[: ends[0]] if ends else rest


def redis_argv(c: dict) -> list[str]:
    """valkey-server's arguments as the container starts it."""
    command, args = c.get("command", []), c.get("args", [])
    words = command + args
    if words[:2] in (["sh", "-c"], ["bash", "-c"]):
        argv = server_argv(shlex.split(words[2])) if len(words) > 2 else None
    elif not words:
        argv = []  # the image's CMD: valkey-server with its defaults
    elif posixpath.basename(words[0]) == "valkey-server":
        argv = words[1:]
    elif not command and (words[0].startswith("-") or words[0].endswith(".conf")):
        argv = words  # the official image's entry point puts valkey-server before these
    else:
        argv = None
    if argv is None:
        raise Unreadable(f"{c['name']}: cannot tell how Redis starts from {words}")
    return argv


def configmap_file(c: dict, spec: dict, objects: list[dict], path: str) -> str | None:
    """The text of `path` in container `c` when a ConfigMap of this set provides it."""
    name, inner = mount_for(c, path)
    volume = next((v for v in spec.get("volumes", []) if v["name"] == name), {})
    if "configMap" not in volume:
        return None
    source = volume["configMap"]
    keys = {posixpath.normpath(i["path"]): i["key"] for i in source.get("items", [])}
    key = keys.get(inner, inner) if keys else inner
    maps = (o for o in objects if o["kind"] == "ConfigMap")
    data = next((o.get("data", {}) for o in maps if o["metadata"]["name"] == source["name"]), {})
    return data.get(key)


def read_conf(settings: dict[str, str], text: str, read_file, depth: int = 0) -> None:
    """Apply a redis.conf in order, with the files it includes where a reader finds them.
    An include it cannot read is written at run time (the password file): it is passed over."""
    for words in conf_lines(text):
        if words[0].lower() == "include" and depth < 8:
            included = read_file(words[1])
            if included is not None:
                read_conf(settings, included, read_file, depth + 1)
        else:
            settings[words[0].lower()] = " ".join(words[1:])


def redis_settings(c: dict, read_file) -> dict[str, str]:
    """The settings Redis runs with: its config file (read_file(path) gives a file's text, or
    None), then its command line options."""
    argv = redis_argv(c)
    settings: dict[str, str] = {}
    if argv and not argv[0].startswith("-"):
        text = read_file(argv[0])
        if text is None:
            raise Unreadable(f"{c['name']}: cannot read its config file {argv[0]}")
        read_conf(settings, text, read_file)
        argv = argv[1:]
    apply_options(settings, argv)
    return settings


def bound_problems(name: str, settings: dict[str, str], limit: float | None) -> list[str]:
    """maxmemory within MAXMEMORY_SHARE of the memory limit, and a volatile-* policy."""
    if limit is None:
        return [f"{name}: no memory limit, so no maxmemory can be sized to it"]
    problems = []
    maxmemory = settings.get("maxmemory", "0")
    if redis_bytes(maxmemory) == 0:
        problems.append(f"{name}: no maxmemory: Redis grows until the kernel OOM-kills it")
    elif redis_bytes(maxmemory) > MAXMEMORY_SHARE * limit:
        problems.append(
            f"{name}: maxmemory {maxmemory} is not within {MAXMEMORY_SHARE:.0%} of the memory "
            f"limit ({limit / 2**20:g} MiB)"
        )
    policy = settings.get("maxmemory-policy", "noeviction")
    if not policy.startswith("volatile-"):
        problems.append(
            f"{name}: maxmemory-policy {policy}: only a volatile-* policy spares the count "
            "(no TTL) and evicts idempotency records (TTL)"
        )
    return problems


def redis_problems(where: str, objects: list[dict]) -> list[str]:
    problems = []
    for pod, _, spec in pod_specs(objects):
        for c in (c for c in containers(spec) if is_redis(c)):
            limit = c.get("resources", {}).get("limits", {}).get("memory")
            try:
                if "--sentinel" in redis_argv(c):
                    continue  # a sentinel (components/redis-ha) holds no data to bound
                settings = redis_settings(c, partial(configmap_file, c, spec, objects))
                limit_bytes = None if limit is None else k8s_bytes(limit)
                problems += bound_problems(f"{where}: {pod}/{c['name']}", settings, limit_bytes)
            except Unreadable as exc:
                problems.append(f"{where}: {pod}/{exc}")
    return problems


# 3. The server's shutdown fits in the grace period.


def prestop_seconds(c: dict) -> float:
    hook = c.get("lifecycle", {}).get("preStop")
    if not hook:
        return 0.0
    if "sleep" in hook:  # the built-in sleep action
        return float(hook["sleep"]["seconds"])
    command = hook.get("exec", {}).get("command", [])
    if len(command) == 2 and posixpath.basename(command[0]) == "sleep":
        return float(command[1])
    raise Unreadable(f"{c['name']}: cannot tell how long the preStop hook {hook} takes")


def shutdown_seconds(c: dict, before: float = 0.0) -> float:
    """The longest a server takes from the start of its termination to its exit, plus margin:
    `before` (the preStop hook), the drain (readiness 503, still serving), gunicorn's graceful
    timeout."""
    return before + setting(c, "DRAIN_DELAY") + setting(c, "GRACEFUL_TIMEOUT") + GRACE_MARGIN


def grace_problems(where: str, objects: list[dict]) -> list[str]:
    problems = []
    for pod, _, spec in pod_specs(objects):
        grace = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE)
        for c in (c for c in spec["containers"] if is_server(c)):
            try:
                needed = shutdown_seconds(c, prestop_seconds(c))
            except Unreadable as exc:
                problems.append(f"{where}: {pod}/{exc}")
                continue
            if grace < needed:
                problems.append(
                    f"{where}: {pod}: terminationGracePeriodSeconds {grace} < {needed:g} "
                    "(preStop + DRAIN_DELAY + GRACEFUL_TIMEOUT + margin)"
                )
    return problems


# 4. The counter stops retrying a request before the server forgets its idempotency key.


def retry_problems(where: str, objects: list[dict]) -> list[str]:
    running_containers = [c for _, _, spec in pod_specs(objects) for c in running(spec)]
    servers = [c for c in running_containers if is_server(c)]
    counters = [c for c in running_containers if repository(c.get("image", "")) in COUNTER_IMAGES]
    problems = []
    try:
        for counter in counters:
            deadline = setting(counter, "RETRY_DEADLINE")
            for server in servers:
                ttl = setting(server, "IDEMPOTENCY_TTL")
                if not deadline < ttl:
                    problems.append(
                        f"{where}: {counter['name']}'s RETRY_DEADLINE {deadline:g} s is not "
                        f"below {server['name']}'s IDEMPOTENCY_TTL {ttl:g} s: a retry could "
                        "arrive after the server forgot the key, and count twice"
                    )
    except Unreadable as exc:
        problems.append(f"{where}: {exc}")
    return problems


# 5. The fault switches (/faults) are for learning: on in dev, compose and the lessons that use
# them, never in staging or prod.


def faults_enabled(c: dict) -> bool:
    """Whether a server has its fault switches on: FAULTS_ENABLED "true"; unset or "false" is
    off (the server's default). What this cannot read (envFrom, valueFrom) is a problem."""
    if c.get("envFrom"):
        raise Unreadable(f"{c['name']}: envFrom may set FAULTS_ENABLED; set it by value")
    value = env(c, "FAULTS_ENABLED")
    if value not in (None, "true", "false"):
        raise Unreadable(f"{c['name']}: FAULTS_ENABLED={value!r} is neither true nor false")
    return value == "true"


def fault_switch_problems(where: str, objects: list[dict], wanted: bool) -> list[str]:
    """Every server of the set has its fault switches on (wanted) or off (not wanted)."""
    servers = [
        (pod, c) for pod, _, spec in pod_specs(objects) for c in spec["containers"] if is_server(c)
    ]
    problems = [] if servers else [f"{where}: no server"]
    for pod, c in servers:
        try:
            on = faults_enabled(c)
        except Unreadable as exc:
            problems.append(f"{where}: {pod}/{exc}")
            continue
        if on != wanted:
            problems.append(
                f"{where}: {pod}/{c['name']} has the fault switches {'on' if on else 'off'}, "
                f"not {'on' if wanted else 'off'}"
            )
    return problems
