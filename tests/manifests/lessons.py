"""Rules for what the lessons claim, and for service accounts. Like hardening.py, each rule reads
objects (and, where a lesson's README says what you will see, that README) and returns its
problems as sentences, none when the claim holds."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tests.manifests.hardening import (
    env,
    is_redis,
    k8s_bytes,
    mount_for,
    prestop_seconds,
    running,
)
from tests.manifests.policies import KUBE_DNS, Endpoint, connects
from tests.manifests.render import LESSONS, ROOT, lesson_objects
from tests.manifests.rules import WORKLOADS, containers, pod_specs, selects
from tests.readme import split_comment

LOOPBACK = {"localhost", "127.0.0.1", "::1"}
CHANGE_CAUSE = "kubernetes.io/change-cause"
NODE_PORTS = range(30000, 32768)
DEFAULT_SCALE_DOWN_WINDOW = 300  # seconds, an HPA's without `behavior`


def named(objects: list[dict], kind: str, name: str, namespace: str | None = None) -> dict | None:
    for obj in objects:
        meta = obj["metadata"]
        same_namespace = namespace is None or meta.get("namespace", "default") == namespace
        if obj["kind"] == kind and meta["name"] == name and same_namespace:
            return obj
    return None


def template_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def container(spec: dict, name: str) -> dict | None:
    return next((c for c in running(spec) if c["name"] == name), None)


def pods(objects: list[dict]) -> list[tuple[str, dict, dict]]:
    """(namespace, labels, spec) of every Pod and pod template: a template's namespace is its
    workload's."""
    found = []
    for obj in objects:
        namespace = obj["metadata"].get("namespace", "default")
        if obj["kind"] == "Pod":
            found.append((namespace, obj["metadata"].get("labels", {}), obj["spec"]))
        elif obj["kind"] in WORKLOADS:
            template = obj["spec"]["template"]
            found.append((namespace, template["metadata"].get("labels", {}), template["spec"]))
    return found


# Service accounts: every pod runs as an account of its own tier, which exists and mounts no
# token.


def service_account_problems(where: str, objects: list[dict]) -> list[str]:
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    problems, tiers_of = [], {}
    for pod, meta, spec in pod_specs(objects):
        name = spec.get("serviceAccountName") or spec.get("serviceAccount")
        if name in (None, "default"):
            problems.append(f"{where}: {pod} runs as the namespace's default service account")
            continue
        account = accounts.get(name)
        if account is None:
            problems.append(f"{where}: {pod} runs as {name}, which this set does not create")
        elif account.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: ServiceAccount {name} mounts its token into every pod")
        tiers_of.setdefault(name, set()).add(meta.get("labels", {}).get("tier"))
    for name, tiers in tiers_of.items():
        if len(tiers) > 1:
            problems.append(f"{where}: tiers {sorted(map(str, tiers))} share ServiceAccount {name}")
    return problems


# 14: rolling updates.


def rolling_update_problems(where: str, deployment: dict) -> list[str]:
    """A rollout that never lowers the Ready servers: maxUnavailable 0 with a surge, readiness
    to gate it, and a preStop sleep so that an old pod leaves the endpoints before it stops."""
    strategy = deployment["spec"].get("strategy", {})
    update = strategy.get("rollingUpdate", {})
    problems = []
    if strategy.get("type") != "RollingUpdate":
        problems.append(f"{where}: strategy {strategy.get('type')}, not an explicit RollingUpdate")
    if str(update.get("maxUnavailable")) not in ("0", "0%"):
        problems.append(f"{where}: maxUnavailable {update.get('maxUnavailable')}, not 0")
    if str(update.get("maxSurge", "0")).rstrip("%") in ("0", ""):
        problems.append(f"{where}: no maxSurge: with maxUnavailable 0 the rollout cannot move")
    for c in template_spec(deployment)["containers"]:
        if c.get("ports") and "readinessProbe" not in c:
            problems.append(f"{where}: {c['name']} has no readiness probe to gate the rollout")
        if c.get("ports") and not prestop_seconds(c):
            problems.append(f"{where}: {c['name']} has no preStop sleep before it stops")
    return problems


def strategic_merge(target: dict, patch: dict) -> dict:
    """What `kubectl patch` (strategic merge) makes of `target`: maps merged, lists of named
    items (containers, env) merged by name, other values replaced."""
    merged = copy.deepcopy(target)
    for key, value in patch.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key] = strategic_merge(old, value)
        elif isinstance(value, list) and isinstance(old, list) and all("name" in v for v in value):
            items = {item["name"]: item for item in old}
            for item in value:
                items[item["name"]] = strategic_merge(items.get(item["name"], {}), item)
            merged[key] = list(items.values())
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def update_problems(where: str, before: dict, after: dict) -> list[str]:
    """An update that makes a new revision (a changed template) and says why."""
    problems = []
    if before["spec"]["template"] == after["spec"]["template"]:
        problems.append(f"{where}: the template is unchanged: no new revision, no rollout")
    cause = after["metadata"].get("annotations", {}).get(CHANGE_CAUSE)
    if not cause or cause == before["metadata"].get("annotations", {}).get(CHANGE_CAUSE):
        problems.append(f"{where}: no change cause of its own for `rollout history`")
    return problems


# 15: a sidecar that reads what the app writes.


def shared_file_problems(where: str, spec: dict, producer: str, consumer: str) -> list[str]:
    """`producer` writes OUTPUT_FILE; `consumer` runs beside it (a native sidecar), mounts the
    same volume read-only and names the same file in its command."""
    writer, reader = container(spec, producer), container(spec, consumer)
    if writer is None or reader is None:
        return [f"{where}: no containers {producer} and {consumer} running side by side"]
    path = env(writer, "OUTPUT_FILE")
    if path is None:
        return [f"{where}: {producer} writes no OUTPUT_FILE"]
    written = mount_for(writer, path)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    problems = []
    if written[0] is None or "emptyDir" not in volumes.get(written[0], {}):
        problems.append(f"{where}: {producer} writes {path} on no emptyDir volume of the pod")
    words = " ".join(reader.get("command", []) + reader.get("args", [])).split()
    if not any(mount_for(reader, word) == written for word in words if word.startswith("/")):
        problems.append(f"{where}: {consumer} reads no path that is {producer}'s {path}")
    mounts = [m for m in reader.get("volumeMounts", []) if m["name"] == written[0]]
    if not all(m.get("readOnly") for m in mounts):
        problems.append(f"{where}: {consumer} may write to the volume it only reads")
    if reader.get("restartPolicy") != "Always":
        problems.append(f"{where}: {consumer} is not a native sidecar (restartPolicy: Always)")
    return problems


# 16: the ambassador.


def service_pods(objects: list[dict], host: str, port: int, namespace: str) -> list[tuple]:
    """(labels, spec) of the pods a Service named by `host` (name, name.namespace, up to
    name.namespace.svc.cluster.local) sends `port` to; [] if there is no such Service or port."""
    name, _, rest = host.partition(".")
    if rest and not f"{namespace}.svc.cluster.local".startswith(rest):
        return []
    service = named(objects, "Service", name, namespace)
    if service is None or port not in [p["port"] for p in service["spec"].get("ports", [])]:
        return []
    selector = service["spec"].get("selector", {})
    return [
        (labels, spec)
        for where, labels, spec in pods(objects)
        if where == namespace and selects(selector, labels)
    ]


def split_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def ambassador_problems(where: str, objects: list[dict], app: str, ambassador: str) -> list[str]:
    """The app's REDIS_URL is on the pod's loopback; the ambassador listens there, on loopback
    only, and forwards to a Service of the lesson that leads to a Redis."""
    deployment = named(objects, "Deployment", app)
    spec = template_spec(deployment)
    namespace = deployment["metadata"]["namespace"]
    server, proxy = container(spec, "server"), container(spec, ambassador)
    url = urlsplit(env(server, "REDIS_URL") or "")
    problems = []
    if url.hostname not in LOOPBACK:
        problems.append(f"{where}: the server's REDIS_URL goes to {url.hostname}, not localhost")
    if proxy is None:
        return [*problems, f"{where}: no {ambassador} container beside the server"]
    listen = split_address(env(proxy, "PROXY_LISTEN") or "127.0.0.1:6379")
    if listen != (url.hostname, url.port or 6379):
        problems.append(f"{where}: the ambassador listens on {listen}, not at {url.netloc}")
    if listen[0] not in LOOPBACK:
        problems.append(f"{where}: the ambassador listens beyond the pod ({listen[0]})")
    upstream = split_address(env(proxy, "PROXY_UPSTREAM") or ":0")
    targets = service_pods(objects, *upstream, namespace)
    if not any(is_redis(c) for _, s in targets for c in s["containers"]):
        problems.append(f"{where}: the ambassador's upstream {upstream} leads to no Redis")
    return problems


# 17: the adapter.


def adapter_problems(where: str, objects: list[dict], adapter: str) -> list[str]:
    """The adapter reads Redis on the pod's loopback and serves on a declared port, the one the
    pod's scrape annotation names."""
    [(pod, meta, spec)] = [p for p in pod_specs(objects) if container(p[2], adapter)]
    c = container(spec, adapter)
    url = urlsplit(env(c, "REDIS_URL") or "")
    redis_ports = [
        p["containerPort"]
        for other in spec["containers"]
        if is_redis(other)
        for p in other.get("ports", [])
    ]
    problems = []
    if url.hostname not in LOOPBACK or (url.port or 6379) not in redis_ports:
        problems.append(f"{where}: {pod}/{adapter} does not read the Redis of its own pod")
    port = int(env(c, "PORT") or 9121)
    if port not in [p["containerPort"] for p in c.get("ports", [])]:
        problems.append(f"{where}: {pod}/{adapter} serves on {port}, which it does not declare")
    if meta.get("annotations", {}).get("prometheus.io/port") != str(port):
        problems.append(f"{where}: {pod}'s scrape annotation does not name port {port}")
    return problems


# 18: the Service types.


def service_type_problems(where: str, objects: list[dict]) -> list[str]:
    services = [o for o in objects if o["kind"] == "Service"]
    types = {s["spec"].get("type", "ClusterIP") for s in services}
    problems = []
    missing = {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"} - types
    if missing:
        problems.append(f"{where}: no Service of type {', '.join(sorted(missing))}")
    for service in services:
        if service["spec"].get("type") != "ExternalName":
            continue
        name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
        target = service["spec"]["externalName"]
        if not service_pods(objects, target, 6379, namespace):
            problems.append(f"{where}: ExternalName {name} leads to no Service of the lesson")
        users = [
            c["name"]
            for _, _, s in pod_specs(objects)
            for c in s["containers"]
            if urlsplit(env(c, "REDIS_URL") or "").hostname == name
        ]
        if not users:
            problems.append(f"{where}: no container uses the ExternalName {name}")
    return problems


def node_port_problems(sets: list[tuple[str, list[dict]]]) -> list[str]:
    """Node ports are the cluster's, not a namespace's: two lessons may not claim one."""
    claimed: dict[int, str] = {}
    problems = []
    for where, objects in sets:
        for service in (o for o in objects if o["kind"] == "Service"):
            for port in service["spec"].get("ports", []):
                number = port.get("nodePort")
                if number is None:
                    continue
                if number not in NODE_PORTS:
                    problems.append(f"{where}: nodePort {number} is outside 30000-32767")
                if number in claimed:
                    problems.append(f"{where}: nodePort {number} is {claimed[number]}'s already")
                claimed.setdefault(number, where)
    return problems


# README blocks: the commands a lesson tells you to run, and the answers it promises.


def sh_lines(readme: Path) -> list[str]:
    """The lines of every ```sh block, in order, without their comments' `#`."""
    lines, inside = [], False
    for line in readme.read_text().splitlines():
        if line.startswith("```"):
            inside = line.startswith("```sh") and not inside
        elif inside:
            lines.append(line)
    return lines


def applied_files(command: str) -> list[Path]:
    """The files `kubectl apply -f ...` applies, in order (a folder: its YAML files by name)."""
    words = shlex.split(command)
    files = []
    for flag, value in zip(words, words[1:], strict=False):
        if flag == "-f":
            path = ROOT / value
            files += sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return files


def objects_of(paths: list[Path]) -> list[dict]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


def deployment_endpoint(objects: list[dict], name: str) -> Endpoint:
    return Endpoint(named(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"])


CAN_CONNECT = re.compile(r"can_connect (\S+) (\S+) (\d+)$")


def connection_claims(lesson: str) -> list[tuple[str, list[Path], str, str, int, bool]]:
    """(line, files applied so far, from, host, port, connected?) of each `can_connect` the
    README shows with its answer."""
    applied: list[Path] = []
    claims = []
    for line in sh_lines(ROOT / "k8s" / lesson / "README.md"):
        command, comment = split_comment(line)
        if command.startswith("kubectl apply "):
            applied += applied_files(command)
        match = CAN_CONNECT.fullmatch(command)
        if match and comment.split(":")[0] in ("connected", "blocked"):
            source, host, port = match[1], match[2], int(match[3])
            claims.append((line, list(applied), source, host, port, comment.startswith("conn")))
    return claims


def policy_claim_problems(lesson: str) -> list[str]:
    """Each `can_connect FROM HOST PORT  # connected|blocked` of the README against the
    policies applied by then: DNS for the name, then the TCP connection through the Service."""
    problems = []
    claims = connection_claims(lesson)
    if not claims:
        return [f"{lesson}: its README shows no connection tried"]
    for line, applied, source, host, port, connected in claims:
        objects = objects_of(applied)
        policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
        origin = deployment_endpoint(objects, source)
        namespace = named(objects, "Deployment", source)["metadata"]["namespace"]
        targets = service_pods(objects, host, port, namespace)
        if not targets:
            problems.append(f"{lesson}: {line!r}: no Service {host} with port {port}")
            continue
        dns = connects(policies, origin, KUBE_DNS, 53, "UDP")
        actual = dns and all(
            connects(policies, origin, Endpoint(labels), port) for labels, _ in targets
        )
        if actual != connected:
            problems.append(
                f"{lesson}: {line!r} says {'connected' if connected else 'blocked'}, the "
                f"policies applied by then say {'connected' if actual else 'blocked'}"
            )
    return problems


def selector_problems(where: str, objects: list[dict]) -> list[str]:
    """Every policy selects pods, and every pod peer it names exists: a label typo in a
    policy is silent, it just selects nothing."""
    labels = [meta.get("labels", {}) for _, meta, _ in pod_specs(objects)]
    problems = []
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        name, spec = policy["metadata"]["name"], policy["spec"]
        selector = spec["podSelector"].get("matchLabels", {})
        if not any(selects(selector, pod) for pod in labels):
            problems.append(f"{where}: NetworkPolicy {name} selects no pod ({selector})")
        for rule in spec.get("ingress", []) + spec.get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "namespaceSelector" in peer or "podSelector" not in peer:
                    continue
                wanted = peer["podSelector"].get("matchLabels", {})
                if not any(selects(wanted, pod) for pod in labels):
                    problems.append(f"{where}: NetworkPolicy {name} names no pod ({wanted})")
    return problems


# 20: what an account may do, as `kubectl auth can-i` answers.

API_GROUPS = {"pods": "", "secrets": "", "configmaps": "", "services": "", "deployments": "apps"}
CAN_I = re.compile(
    r"kubectl auth can-i (\S+) (\S+) -n (\S+) --as=system:serviceaccount:([^:\s]+):(\S+)"
)


def granted(objects: list[dict], namespace: str, account: tuple[str, str]) -> list[dict]:
    """The Role rules bound to the ServiceAccount (namespace, name) in `namespace`."""
    if any(o["kind"] in ("ClusterRole", "ClusterRoleBinding") for o in objects):
        raise ValueError("ClusterRoles are not evaluated here")
    rules = []
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        if binding["metadata"]["namespace"] != namespace:
            continue
        subjects = {
            (s.get("namespace", namespace), s["name"])
            for s in binding.get("subjects", [])
            if s["kind"] == "ServiceAccount"
        }
        role = named(objects, "Role", binding["roleRef"]["name"], namespace)
        if account in subjects and role is not None:
            rules += role.get("rules", [])
    return rules


def may(rules: list[dict], verb: str, resource: str) -> bool:
    group = API_GROUPS[resource]

    def has(values, value):
        return "*" in values or value in values

    return any(
        has(r.get("apiGroups", []), group)
        and has(r.get("resources", []), resource)
        and has(r.get("verbs", []), verb)
        and not r.get("resourceNames")
        for r in rules
    )


def rights_claims(lesson: str) -> list[tuple[str, str, str, str, tuple[str, str], bool]]:
    claims = []
    for line in sh_lines(ROOT / "k8s" / lesson / "README.md"):
        command, comment = split_comment(line)
        match = CAN_I.fullmatch(command)
        answer = comment.split(":")[0]
        if match and answer in ("yes", "no"):
            verb, resource, namespace = match[1], match[2], match[3]
            claims.append((line, verb, resource, namespace, (match[4], match[5]), answer == "yes"))
    return claims


def rights_problems(lesson: str, objects: list[dict]) -> list[str]:
    """Each `kubectl auth can-i ... # yes|no` of the README is RBAC's answer; and the Roles grant
    nothing the README does not answer `yes` for: the README says all an account may do."""
    problems = []
    claims = rights_claims(lesson)
    said_yes = set()
    for line, verb, resource, namespace, account, yes in claims:
        actual = may(granted(objects, namespace, account), verb, resource)
        if actual != yes:
            problems.append(f"{lesson}: {line!r}: RBAC says {'yes' if actual else 'no'}")
        if yes:
            said_yes.add((account, namespace, API_GROUPS[resource], resource, verb))
    accounts = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in objects
        if o["kind"] == "ServiceAccount"
    }
    namespaces = {o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"}
    for account in accounts:
        for namespace in namespaces:
            for rule in granted(objects, namespace, account):
                for group in rule.get("apiGroups", []):
                    for resource in rule.get("resources", []):
                        for verb in rule.get("verbs", []):
                            if (account, namespace, group, resource, verb) not in said_yes:
                                problems.append(
                                    f"{lesson}: {account[1]} may {verb} {resource} in "
                                    f"{namespace}, which the README does not say"
                                )
    if not claims:
        problems.append(f"{lesson}: its README asks `kubectl auth can-i` nothing")
    return problems


# Every kubectl command of the lessons' READMEs names what the lessons create.

KINDS = {
    "deploy": "Deployment",
    "deployment": "Deployment",
    "svc": "Service",
    "service": "Service",
    "networkpolicy": "NetworkPolicy",
}
KUBECTL = re.compile(r"(?:^|[\s;&|({])kubectl\s+(.*)")


def kubectl_commands(text: str) -> list[list[str]]:
    """The words of each kubectl command in `text` (a line of a README), up to the command it
    runs in a container (`--`) or the next shell separator; [] for lines it cannot split."""
    commands = []
    for match in KUBECTL.finditer(text):
        rest = re.split(r"\s--\s|\s--$|&&|\|\||[;|)]", match[1])[0]
        if "<" in rest:
            continue  # a pattern (`kubectl apply -f k8s/<lesson>/`), not a command
        try:
            commands.append(shlex.split(rest))
        except ValueError:
            continue
    return commands


def option(words: list[str], *names: str) -> str | None:
    for index, word in enumerate(words):
        for name in names:
            if word == name and index + 1 < len(words):
                return words[index + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


SLICE_SERVICE_LABEL = "kubernetes.io/service-name"


def command_problems(where: str, words: list[str], objects: list[dict]) -> list[str]:
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    namespace = option(words, "-n", "--namespace") or "default"
    problems = []
    if namespace not in namespaces | {"default", "kube-system"}:
        return [f"{where}: namespace {namespace} is no lesson's"]
    for flag in ("-f", "--patch-file"):
        path = option(words, flag)
        if path and "://" not in path and not (ROOT / path).exists():
            problems.append(f"{where}: {path} does not exist")
    deployments = []
    for word in words:
        kind, slash, name = word.partition("/")
        if slash and kind in KINDS and "$" not in name:
            if named(objects, KINDS[kind], name, namespace) is None:
                problems.append(f"{where}: no {KINDS[kind]} {name} in {namespace}")
            elif KINDS[kind] == "Deployment":
                deployments.append(name)
    wanted = option(words, "-c", "--container")
    if wanted and deployments:
        # Lessons may redefine a Deployment (11 adds an init container to 10's): any will do.
        found = {
            c["name"]
            for o in objects
            if o["kind"] == "Deployment"
            and o["metadata"]["name"] == deployments[0]
            and o["metadata"].get("namespace", "default") == namespace
            for c in containers(template_spec(o))
        }
        if wanted not in found:
            problems.append(f"{where}: {deployments[0]} has no container {wanted}")
    account = option(words, "--as")
    if account and account.startswith("system:serviceaccount:"):
        account_namespace, name = account.split(":")[2:]
        if named(objects, "ServiceAccount", name, account_namespace) is None:
            problems.append(f"{where}: no ServiceAccount {name} in {account_namespace}")
    labels = option(words, "-l", "--selector")
    if labels and "=" in labels:
        selector = dict(pair.split("=", 1) for pair in labels.split(","))
        if "endpointslices" in words:
            # The EndpointSlice controller labels each slice with its Service's name.
            service = selector.get(SLICE_SERVICE_LABEL)
            if service is None or named(objects, "Service", service, namespace) is None:
                problems.append(f"{where}: -l {labels} selects no Service's slices in {namespace}")
            return problems
        found = [pod for where_, pod, _ in pods(objects) if where_ == namespace]
        if not any(selects(selector, pod) for pod in found):
            problems.append(f"{where}: -l {labels} selects no pod in {namespace}")
    return problems


def readme_command_problems(readme: Path, objects: list[dict]) -> list[str]:
    """Every kubectl command in the README's sh blocks and inline code."""
    text = readme.read_text()
    lines = sh_lines(readme) + re.findall(r"`(kubectl [^`]+)`", text.replace("\\|", "|"))
    where = str(readme.relative_to(ROOT)) if readme.is_relative_to(ROOT) else readme.name
    return [
        problem
        for line in lines
        for words in kubectl_commands(split_comment(line)[0])
        for problem in command_problems(f"{where}: {' '.join(words)[:60]}", words, objects)
    ]


def every_lesson_object() -> list[dict]:
    return [o for lesson in LESSONS for o in lesson_objects(lesson)]


def namespace_order_problems(where: str, objects: list[dict]) -> list[str]:
    """`kubectl apply -f <folder>` goes file by file, in name order: an object whose namespace
    the lesson creates later fails on the first apply ("namespaces ... not found")."""
    created = {o["metadata"]["name"]: i for i, o in enumerate(objects) if o["kind"] == "Namespace"}
    return [
        f"{where}: {o['kind']} {o['metadata']['name']} comes before its Namespace"
        for i, o in enumerate(objects)
        if created.get(o["metadata"].get("namespace"), -1) > i
    ]


# Lessons done in order: the Pods of earlier lessons are still there.

# Where the lessons without a README say what to run: the comments of their manifests, a
# command and then, after a few spaces, a remark in parentheses.
COMMENT = re.compile(r"^\s*#\s?(.*?)(?:\s{2,}\(.*)?$")


def lesson_instructions(lesson: str) -> list[str]:
    """What a lesson tells the reader to run, in order: its README's sh blocks and inline code,
    then the comment lines of its manifests, file by file in name order."""
    folder = ROOT / "k8s" / lesson
    lines = []
    readme = folder / "README.md"
    if readme.is_file():
        text = readme.read_text().replace("\\|", "|")
        lines += [split_comment(line)[0] for line in sh_lines(readme)]
        lines += re.findall(r"`(kubectl [^`]+)`", text)
    for path in sorted(folder.glob("*.yaml")):
        lines += [m[1] for line in path.read_text().splitlines() if (m := COMMENT.match(line))]
    return lines


def pod_changes(before: dict, after: dict) -> list[str]:
    """What `kubectl apply` would change in a running Pod that the API server refuses: every
    field of the spec but the containers' images, activeDeadlineSeconds and added tolerations
    ("pod updates may not change fields other than ...")."""

    def comparable(spec: dict) -> dict:
        spec = copy.deepcopy(spec)
        spec.pop("activeDeadlineSeconds", None)
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            c.pop("image", None)
        return spec

    old, new = comparable(before), comparable(after)
    if all(t in new.get("tolerations", []) for t in old.get("tolerations", [])):
        old.pop("tolerations", None)
        new.pop("tolerations", None)
    changed = []
    for key in sorted(set(old) | set(new)):
        if key in ("containers", "initContainers"):
            mine = {c["name"]: c for c in old.get(key, [])}
            theirs = {c["name"]: c for c in new.get(key, [])}
            for name in sorted(set(mine) | set(theirs)):
                a, b = mine.get(name, {}), theirs.get(name, {})
                changed += [
                    f"{key}[{name}].{f}" for f in sorted(set(a) | set(b)) if a.get(f) != b.get(f)
                ]
        elif old.get(key) != new.get(key):
            changed.append(key)
    return changed


def deletes_pod(words: list[str], namespace: str, name: str) -> bool:
    """`kubectl delete pod NAME`, `pod/NAME` or `-f` a file that holds it, in `namespace`."""
    if not words or words[0] != "delete":
        return False
    if (option(words, "-n", "--namespace") or "default") != namespace:
        return False
    if f"pod/{name}" in words or f"pods/{name}" in words:
        return True
    if len(words) > 2 and words[1] in ("pod", "pods", "po") and name in words[2:]:
        return True
    return any(
        o["kind"] == "Pod" and o["metadata"]["name"] == name
        for o in objects_of([p for p in applied_files(shlex.join(words)) if p.is_file()])
    )


def applies_lesson(words: list[str], lesson: str) -> bool:
    path = option(words, "-f", "--filename")
    return bool(words) and words[0] == "apply" and path is not None and lesson in Path(path).parts


def pod_reuse_problems(steps: list[tuple[str, list[dict], list[str]]]) -> list[str]:
    """(lesson, its objects, its instructions) in the order the lessons are done. A Pod applied
    again, same name and namespace, changed where a running Pod cannot change, is rejected by
    `kubectl apply` ("Forbidden: pod updates may not change fields ..."): the lesson must tell
    the reader to delete it first, a `kubectl delete pod NAME` before its `kubectl apply`."""
    there: dict[tuple[str, str], tuple[str, dict]] = {}
    problems = []
    for lesson, objects, instructions in steps:
        commands = [words for line in instructions for words in kubectl_commands(line)]
        for pod in (o for o in objects if o["kind"] == "Pod"):
            namespace = pod["metadata"].get("namespace", "default")
            name = pod["metadata"]["name"]
            earlier = there.get((namespace, name))
            changes = pod_changes(earlier[1], pod["spec"]) if earlier else []
            if changes and not deleted_first(commands, namespace, name, lesson):
                problems.append(
                    f"{lesson}: Pod {name} is still there from {earlier[0]}, and a Pod's "
                    f"{', '.join(changes)} cannot change in place: say `kubectl delete pod "
                    f"{name}` before the lesson's `kubectl apply` (or name the pod anew)"
                )
            there[(namespace, name)] = (lesson, pod["spec"])
    return problems


def deleted_first(commands: list[list[str]], namespace: str, name: str, lesson: str) -> bool:
    """A delete of the Pod among the commands, before the first apply of the lesson if any."""
    for words in commands:
        if deletes_pod(words, namespace, name):
            return True
        if applies_lesson(words, lesson):
            return False
    return False


def lesson_steps() -> list[tuple[str, list[dict], list[str]]]:
    return [(lesson, lesson_objects(lesson), lesson_instructions(lesson)) for lesson in LESSONS]


# 21: draining a node, with a PodDisruptionBudget, on a multi-node kind cluster.

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def allowed_disruptions(budget: dict, replicas: int) -> int:
    """How many of `replicas` Ready pods the budget lets be evicted at once (minAvailable or
    maxUnavailable, a number or a percentage: minAvailable rounds up, maxUnavailable down)."""
    spec = budget["spec"]

    def count(value, round_up: bool) -> int:
        if isinstance(value, str) and value.endswith("%"):
            share = replicas * int(value[:-1])
            return -(-share // 100) if round_up else share // 100
        return int(value)

    if "minAvailable" in spec:
        return max(replicas - count(spec["minAvailable"], round_up=True), 0)
    return count(spec.get("maxUnavailable", 0), round_up=False)


def drain_problems(where: str, objects: list[dict], app: str) -> list[str]:
    """A PodDisruptionBudget selects the Deployment's pods (and no other's) and allows at least
    one disruption with the replicas it has, so a drain can go on; and the pods spread across
    nodes, so that one node drained leaves a server on another."""
    deployment = named(objects, "Deployment", app)
    namespace = deployment["metadata"]["namespace"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    replicas = deployment["spec"].get("replicas", 1)
    budgets = [
        o
        for o in objects
        if o["kind"] == "PodDisruptionBudget" and o["metadata"].get("namespace") == namespace
    ]
    problems = []
    mine = [b for b in budgets if selects(b["spec"]["selector"].get("matchLabels", {}), labels)]
    if not mine:
        problems.append(f"{where}: no PodDisruptionBudget selects the pods of {app}")
    for budget in mine:
        name = budget["metadata"]["name"]
        others = [pod for ns, pod, _ in pods(objects) if ns == namespace and pod != labels]
        if any(selects(budget["spec"]["selector"].get("matchLabels", {}), o) for o in others):
            problems.append(f"{where}: PodDisruptionBudget {name} selects pods beyond {app}'s")
        if allowed_disruptions(budget, replicas) < 1:
            problems.append(
                f"{where}: PodDisruptionBudget {name} allows no disruption of {app}'s "
                f"{replicas} replicas: a drain would wait for ever"
            )
    spread = template_spec(deployment).get("topologySpreadConstraints", [])
    if not any(
        c["topologyKey"] == "kubernetes.io/hostname"
        and selects(c.get("labelSelector", {}).get("matchLabels", {}), labels)
        for c in spread
    ):
        problems.append(f"{where}: {app}'s pods do not spread across nodes")
    return problems


def kind_config_problems(where: str, config: dict, workers: int = 2) -> list[str]:
    """A kind cluster with at least `workers` worker nodes, every node image pinned by digest."""
    nodes = config.get("nodes", [])
    problems = []
    if config.get("kind") != "Cluster" or not config.get("apiVersion", "").startswith("kind."):
        problems.append(f"{where}: not a kind Cluster config")
    found = sum(1 for n in nodes if n.get("role") == "worker")
    if found < workers:
        problems.append(f"{where}: {found} worker nodes, fewer than {workers}")
    for index, node in enumerate(nodes):
        if not DIGEST.search(node.get("image", "")):
            problems.append(f"{where}: node {index}'s image is not pinned by digest")
    return problems


# 22 to 24: the fault switches, thrown with curl from the README, as the server takes them.

FAULT_PATH = re.compile(r"/faults/([^/\s?]+)")
SECRET_READ = re.compile(r"get secret (\S+) -o jsonpath='\{\.data\.([\w.-]+)\}'")


def fault_calls(lesson: str) -> list[tuple[str, str, str, list[str]]]:
    """(line, method, switch, curl's words) of each curl to /faults/<switch> in the README."""
    calls = []
    for line in sh_lines(ROOT / "k8s" / lesson / "README.md"):
        command, _ = split_comment(line)
        match = FAULT_PATH.search(command)
        if not command.startswith("curl ") or not match:
            continue
        words = shlex.split(command)
        method = option(words, "-X", "--request") or ("POST" if option(words, "-d") else "GET")
        calls.append((line, method, match[1], words))
    return calls


def headers(words: list[str]) -> dict[str, str]:
    found = {}
    for flag, value in zip(words, words[1:], strict=False):
        if flag in ("-H", "--header"):
            name, _, text = value.partition(":")
            found[name.strip().lower()] = text.strip()
    return found


def fault_call_problems(lesson: str, objects: list[dict], check_body) -> list[str]:
    """Each curl that changes a switch carries the key the lesson's server is given (read from
    the Secret it comes from) and, with a body, says it is JSON; each body is one the server
    takes for that switch: check_body(switch, body) returns the server's complaint, or None."""
    problems = []
    calls = fault_calls(lesson)
    if not calls:
        return [f"{lesson}: its README throws no fault switch"]
    text = (ROOT / "k8s" / lesson / "README.md").read_text()
    read = set(SECRET_READ.findall(text))
    keys = {
        (ref["name"], ref["key"])
        for _, _, spec in pod_specs(objects)
        for c in spec["containers"]
        for e in c.get("env", [])
        if e["name"] == "API_KEY" and (ref := e.get("valueFrom", {}).get("secretKeyRef"))
    }
    if not keys & read:
        problems.append(f"{lesson}: the README reads no Secret key the server's API_KEY is from")
    for name, key in keys:
        secret = named(objects, "Secret", name)
        if secret is None or key not in {**secret.get("data", {}), **secret.get("stringData", {})}:
            problems.append(f"{lesson}: the server's API_KEY is from {name}/{key}, not here")
    for line, method, switch, words in calls:
        sent = headers(words)
        if method in ("PUT", "DELETE") and not sent.get("x-api-key"):
            problems.append(f"{lesson}: {line.strip()[:60]!r} sends no X-API-Key (a 401)")
        body = option(words, "-d", "--data")
        if body is not None and sent.get("content-type") != "application/json":
            problems.append(f"{lesson}: {line.strip()[:60]!r} sends a body not said to be JSON")
        if method == "PUT" and (complaint := check_body(switch, body or "")):
            problems.append(f"{lesson}: {line.strip()[:60]!r}: the server says {complaint}")
    return problems


def switch_seconds(lesson: str, switch: str, default: float) -> list[float]:
    """The "for" of each PUT of `switch` in the README (`default`, the server's, if none)."""
    seconds = []
    for _, method, name, words in fault_calls(lesson):
        if method == "PUT" and name == switch:
            body = json.loads(option(words, "-d", "--data") or "{}")
            seconds.append(float(body.get("for", default)))
    return seconds


def probed_server_problems(where: str, deployment: dict) -> list[str]:
    """22: servers enough that one can leave the Service while the others serve, each probed
    on the paths the switches fail."""
    problems = []
    if deployment["spec"].get("replicas", 1) < 2:
        problems.append(f"{where}: one server: taking it out of the Service empties it")
    for c in template_spec(deployment)["containers"]:
        for probe, path in (
            ("readinessProbe", "/probe/readiness"),
            ("livenessProbe", "/probe/liveness"),
        ):
            if c.get(probe, {}).get("httpGet", {}).get("path") != path:
                problems.append(f"{where}: {c['name']}'s {probe} does not ask {path}")
    return problems


def cpu_scaling_problems(lesson: str, objects: list[dict]) -> list[str]:
    """23: an HPA on the server's CPU utilisation, the CPU request and limit it is computed from
    and capped by, and the README's numbers as the manifests make them: the burning pod at
    limit/request of its request, the stabilization window it waits before scaling in."""
    text = (ROOT / "k8s" / lesson / "README.md").read_text()
    hpas = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    if len(hpas) != 1:
        return [f"{lesson}: {len(hpas)} HPAs, not one"]
    [hpa] = hpas
    target = named(objects, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
    resources = [m.get("resource", {}) for m in hpa["spec"]["metrics"]]
    problems = []
    if not any(r.get("name") == "cpu" and r["target"]["type"] == "Utilization" for r in resources):
        problems.append(f"{lesson}: the HPA does not scale on CPU utilisation")
    if target is None:
        return [*problems, f"{lesson}: the HPA scales no Deployment of the lesson"]
    server = container(template_spec(target), "server")
    limits = server.get("resources", {}).get("limits", {})
    requests = server.get("resources", {}).get("requests", {})
    if "cpu" not in limits or "cpu" not in requests:
        return [*problems, f"{lesson}: the server needs a CPU request and limit"]
    share = round(100 * k8s_bytes(limits["cpu"]) / k8s_bytes(requests["cpu"]))
    if f"{share}%" not in text:
        problems.append(f"{lesson}: the README never says a burning pod is at {share}%")
    window = hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds")
    if window is None or not window < DEFAULT_SCALE_DOWN_WINDOW:
        problems.append(f"{lesson}: the scale-down window is not shortened from 300 s")
    elif f"during the last {window} s" not in text:
        problems.append(f"{lesson}: the README does not say the window is {window} s")
    return problems


# Lesson 24: how long the stall stays visible after the deadline is reported.
STALL_SEEN_MARGIN = 120


def stalled_rollout_problems(
    where: str, deployment: dict, readiness_seconds: list[float]
) -> list[str]:
    """24: a rollout gated by readiness, a minReadySeconds long enough to throw the switch in,
    a deadline beyond it, and a switch that outlasts the deadline: the stall must be reported
    before the switch turns itself off and the rollout heals. The deadline counts from the last
    progress, the new pod turning Ready, which comes before the switch is thrown; the margin
    is for the controller to notice and the reader to look."""
    spec = deployment["spec"]
    ready, deadline = spec.get("minReadySeconds", 0), spec.get("progressDeadlineSeconds", 600)
    problems = rolling_update_problems(where, deployment)
    if ready < 30:
        problems.append(f"{where}: minReadySeconds {ready}: no time to switch the new pod off")
    if not deadline > ready:
        problems.append(f"{where}: progressDeadlineSeconds {deadline} <= minReadySeconds")
    if not readiness_seconds:
        problems.append(f"{where}: no readiness switch thrown")
    for seconds in readiness_seconds:
        if not seconds >= deadline + STALL_SEEN_MARGIN:
            problems.append(
                f"{where}: the readiness switch ({seconds:g} s) ends before the deadline is "
                f"reported and seen ({deadline} s after the pod turned Ready, + "
                f"{STALL_SEEN_MARGIN} s): the rollout would heal unseen"
            )
    return problems
