"""Rendering manifests: every overlay through real kustomize (kubectl kustomize), and every
lesson of k8s/ as kubectl apply -f would read it."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["dev", "staging", "prod"]
LESSONS = sorted(p.name for p in (ROOT / "k8s").iterdir() if p.is_dir())
KUBERNETES_VERSION = "1.32.0"  # the schemas manifests are validated against (kind v1.32 node)


def kustomize(path: Path) -> list[dict]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def copy_with_prod_secrets(destination: Path) -> Path:
    """A copy of kustomize/ with a prod secrets.env, as an operator would have it."""
    tree = destination / "kustomize"
    shutil.copytree(ROOT / "kustomize", tree)
    (tree / "overlays/prod/secrets.env").write_text("REDIS_PASSWORD=p\nAPI_KEY=k\n")
    return tree


def lesson_objects(lesson: str) -> list[dict]:
    objects = []
    for path in sorted((ROOT / "k8s" / lesson).glob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def all_sets(rendered: dict[str, list[dict]]):
    """(where, objects) of every overlay (rendered) and every lesson."""
    yield from ((f"overlay {o}", rendered[o]) for o in OVERLAYS)
    yield from ((f"lesson {lesson}", lesson_objects(lesson)) for lesson in LESSONS)


# Every combination of components a user may put together (Online Boutique renders each of
# its own in CI): monitoring's allow-scrapers policies and ingress' policy for the ingress
# controller need network-policies beside them (alone, each would isolate the server; their
# READMEs say so), every other subset goes.
COMPONENTS = [
    "network-policies",
    "persistence",
    "autoscaling",
    "monitoring",
    "local-images",
    "ingress",
    "redis-ha",
    "pypy",
]
NEED_NETWORK_POLICIES = ("monitoring", "ingress")
# redis-ha replaces the single data node that persistence (a volume) and monitoring (an
# exporter beside it) patch: it keeps a volume per node itself (its README says so).
NOT_WITH_REDIS_HA = ("persistence", "monitoring")


def supported(combination: tuple[str, ...]) -> bool:
    if "redis-ha" in combination and set(NOT_WITH_REDIS_HA) & set(combination):
        return False
    return "network-policies" in combination or not set(NEED_NETWORK_POLICIES) & set(combination)


COMBINATIONS = [
    combination
    for size in range(len(COMPONENTS) + 1)
    for combination in itertools.combinations(COMPONENTS, size)
    if supported(combination)
]


def combination_name(combination: tuple[str, ...]) -> str:
    return "+".join(("base", *combination))


def render_combination(tree: Path, combination: tuple[str, ...]) -> list[dict]:
    """The base and these components, in a kustomization of their own inside `tree` (a copy of
    kustomize/), with a restricted Namespace and the Secret the pods need. These two carry the
    common labels themselves: every other object must get them from the base or a component."""
    folder = tree / "combinations" / combination_name(combination)
    folder.mkdir(parents=True)
    namespace = "microservices-combination"
    (folder / "namespace.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    "labels": {
                        **common_labels(),
                        **{f"pod-security.kubernetes.io/{m}": "restricted" for m in RESTRICTED},
                    },
                },
            }
        )
    )
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace,
        "resources": ["namespace.yaml", "../../base"],
        "components": [f"../../components/{c}" for c in combination],
        "secretGenerator": [
            {
                "name": "microservices-secrets",
                "literals": ["REDIS_PASSWORD=p", "API_KEY=k"],
                "options": {"labels": common_labels()},
            }
        ],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kustomize(folder)


RESTRICTED = ("enforce", "audit", "warn")


def common_labels() -> dict[str, str]:
    """The labels the base gives every object (its `labels:` pairs)."""
    base = yaml.safe_load((ROOT / "kustomize/base/kustomization.yaml").read_text())
    return {k: v for entry in base["labels"] for k, v in entry["pairs"].items()}
