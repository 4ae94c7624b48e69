"""The README's air-gapped snippet (item 15), run as written: it renders the dev overlay with
Valkey from the local image, through an overlay of the user's own in a temporary folder, and
edits no tracked file."""

from __future__ import annotations

import os
import subprocess

import yaml

from tests.manifests.render import ROOT, copy_with_prod_secrets
from tests.manifests.rules import containers, pod_specs


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


def test_the_air_gapped_snippet_renders_without_editing_a_tracked_file(tmp_path):
    [block] = [b for b in deploying_blocks() if "local-images" in b]
    repository = tmp_path / "repository"
    repository.mkdir()
    tree = copy_with_prod_secrets(repository)
    before = {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    out = tmp_path / "rendered.yaml"
    # A temporary folder behind a symlink one level shallower than the real one, as macOS'
    # /var/folders -> /private/var/folders: relative paths must be made between real folders.
    (tmp_path / "private" / "var").mkdir(parents=True)
    (tmp_path / "var").symlink_to(tmp_path / "private" / "var")
    # kind and kubectl as stand-ins: `kubectl apply -k DIR` renders DIR instead.
    stubs = (
        "kind() { :; }\n"
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
    images = {c["image"] for _, _, s in pod_specs(objects) for c in containers(s)}
    assert "microservices-airgap/valkey:9.1-forky" in images
    assert not any(i.startswith("valkey/") for i in images)
    assert {p: p.read_bytes() for p in tree.rglob("*") if p.is_file()} == before


def test_no_readme_appends_to_a_tracked_kustomization():
    for block in deploying_blocks():
        assert ">> kustomize/" not in block
