"""components/redis-ha replaces the single data node that persistence and monitoring patch:
with either of them, in either order, the render fails rather than drop their changes without
a word (refuse-single-node-patches.yaml; README.md of the component)."""

from __future__ import annotations

import shutil

import pytest

from tests.manifests.render import ROOT, render_combination


@pytest.mark.parametrize(
    ("combination", "complaint"),
    [
        # redis-ha last: its test of the node it deletes fails.
        (("persistence", "redis-ha"), "testing value /spec/template/spec/volumes/0 failed"),
        (("network-policies", "monitoring", "redis-ha"), "testing value /spec/template/metadata"),
        # redis-ha first: their own patch finds no single node.
        (("redis-ha", "persistence"), "no matches for Id Deployment.v1.apps/data-tier"),
        (("network-policies", "redis-ha", "monitoring"), "no matches for Id Deployment.v1.apps"),
    ],
    ids=lambda value: "+".join(value) if isinstance(value, tuple) else None,
)
def test_redis_ha_with_a_single_node_component_does_not_render(tmp_path, combination, complaint):
    shutil.copytree(ROOT / "kustomize", tmp_path / "kustomize")
    with pytest.raises(RuntimeError, match=complaint.replace(".", r"\.")):
        render_combination(tmp_path / "kustomize", combination)


def test_redis_ha_alone_renders_its_nodes(tmp_path):
    shutil.copytree(ROOT / "kustomize", tmp_path / "kustomize")
    objects = render_combination(tmp_path / "kustomize", ("redis-ha",))
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "StatefulSet"] == ["data-tier"]
    assert not [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "data-tier"
    ]
