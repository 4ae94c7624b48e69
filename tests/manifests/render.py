"""Rendering manifests: every overlay through real kustomize (kubectl kustomize), and every
lesson of k8s/ as kubectl apply -f would read it."""

from __future__ import annotations

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
