"""Every component README's overlay of your own, rendered as written (in a temporary folder,
beside a copy of kustomize/): each object it makes lands in the project overlay's namespace.
An outer overlay's components are outside the inner overlay's `namespace:`, which covers only
the inner overlay's own objects; without a `namespace:` of its own, an Ingress or PodMonitor
it adds would be applied wherever kubectl defaults to."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.manifests.render import ROOT, copy_with_prod_secrets, kustomize
from tests.manifests.rules import namespace_problems

PLACEHOLDER = "../relative/path/to/kustomize"


def outer_overlays() -> list[tuple[str, str]]:
    """(README, yaml block) of every snippet that takes one of the project's overlays."""
    found = []
    for readme in sorted((ROOT / "kustomize/components").rglob("README.md")):
        for block in re.findall(r"```yaml\n(.*?)```", readme.read_text(), re.S):
            if f"{PLACEHOLDER}/overlays/" in block:
                found.append((str(readme.relative_to(ROOT)), block))
    return found


def test_the_ingress_and_operator_readmes_have_such_a_snippet():
    readmes = {readme for readme, _ in outer_overlays()}
    assert {
        "kustomize/components/ingress/README.md",
        "kustomize/components/monitoring/operator/README.md",
    } <= readmes


@pytest.mark.parametrize(("readme", "block"), outer_overlays(), ids=lambda v: v[:40])
def test_every_object_lands_in_the_overlays_namespace(tmp_path, readme, block):
    copy_with_prod_secrets(tmp_path)
    overlay = re.search(rf"{re.escape(PLACEHOLDER)}/overlays/(\w+)", block)[1]
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(block.replace(PLACEHOLDER, "../kustomize"))
    kustomization = yaml.safe_load(block)
    objects = kustomize(folder)
    added = {o["kind"] for o in objects if o["kind"] in ("Ingress", "PodMonitor", "PrometheusRule")}
    if any("ingress" in c or "operator" in c for c in kustomization.get("components", [])):
        assert added, f"{readme}: the component's objects are missing"
    assert namespace_problems(objects, f"microservices-{overlay}") == [], readme
