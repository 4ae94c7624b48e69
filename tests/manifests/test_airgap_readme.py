"""The README's overlays of the user's own, run as written: the air-gapped one (item 15)
renders the dev overlay with Valkey from the local image, the registry one every overlay with
the app's images from $REGISTRY under the project's version; through an overlay in a temporary
folder, editing no tracked file."""

from __future__ import annotations

import os
import subprocess
import tomllib

import pytest
import yaml

from tests.manifests.render import OVERLAYS, ROOT, copy_with_prod_secrets
from tests.manifests.rules import containers, namespace_problems, pod_specs


def deploying_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Deploying to Kubernetes") :]
    section = section[: section.index("\n## ", 1)]
    blocks, inside, lines = [], False, []
    for line in section.splitlines():
        if line.startswith("```"):
            if inside:
                blocks.append("\n".join(lines))
            inside, lines = line.startswith("```sh") and not inside, []
        elif inside:
            lines.append(line)
    return blocks


def run_block(tmp_path, block: str, overlay: str) -> list[str]:
    """The images of what the block applies, run in a copy of the repository's kustomize/
    (with a prod secrets.env); the copy is checked unchanged, and every object is in the
    namespace of the project's `overlay`."""
    repository = tmp_path / "repository"
    repository.mkdir()
    tree = copy_with_prod_secrets(repository)
    before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    out = tmp_path / "rendered.yaml"
    # A temporary folder behind a symlink one level shallower than the real one, as macOS'
    # /var/folders -> /private/var/folders: relative paths must be made between real folders.
    (tmp_path / "private" / "var").mkdir(parents=True)
    (tmp_path / "var").symlink_to(tmp_path / "private" / "var")
    # kind, make and kubectl as stand-ins: `kubectl apply -k DIR` renders DIR instead.
    stubs = (
        "kind() { :; }\nmake() { :; }\n"
        'kubectl() { [ "$1 $2" = "apply -k" ] && command kubectl kustomize "$3" > "$OUT"; }\n'
    )
    subprocess.run(
        ["bash", "-euc", stubs + block],
        cwd=repository,
        env={**os.environ, "OUT": str(out), "TMPDIR": str(tmp_path / "var")},
        check=True,
        timeout=120,
    )
    objects = [o for o in yaml.safe_load_all(out.read_text()) if o]
    assert {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()} == before
    assert namespace_problems(objects, f"microservices-{overlay}") == []
    return sorted({c["image"] for _, _, s in pod_specs(objects) for c in containers(s)})


def test_the_air_gapped_snippet_renders_without_editing_a_tracked_file(tmp_path):
    [block] = [b for b in deploying_blocks() if "local-images" in b]
    images = run_block(tmp_path, block, "dev")
    assert "microservices-airgap/valkey:9.1-forky" in images
    assert not any(i.startswith("valkey/") for i in images)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_registry_snippet_points_every_overlay_at_the_registry(tmp_path, overlay):
    [block] = [b for b in deploying_blocks() if "make push" in b]
    assert "overlays/prod" in block
    images = run_block(tmp_path, block.replace("overlays/prod", f"overlays/{overlay}"), overlay)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    version = pyproject["project"]["version"]
    app = [i for i in images if "valkey" not in i]
    assert app == [
        f"registry.example.com/team/{s}:{version}" for s in ("counter", "poller", "server")
    ]


def test_no_readme_appends_to_a_tracked_kustomization():
    for block in deploying_blocks():
        assert ">> kustomize/" not in block
