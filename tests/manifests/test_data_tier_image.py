"""One data-tier server, named in one place: kustomize/base/kustomization.yaml's `images:`
entry for valkey/valkey. Every other file that names a Redis or Valkey image (compose, the
lessons, the tests, the docs) names that same one, or the air-gapped image that
scripts/airgap-images makes; anything else fails here, with the file and line."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.manifests.render import ROOT
from tests.support import data_tier_image

# An image reference of a Redis-protocol server: an optional registry and path, one of the
# names such images are published under, then a tag and/or a digest. Not after a `/` or `@`:
# `redis://redis:6379/0` is a URL, its `redis:6379` a host and a port.
IMAGE = re.compile(
    r"(?<![\w./@])(?:\w[\w.-]*(?::\d+)?/)*"
    r"(?:redis|valkey|keydb|redis-stack(?:-server)?)"
    # Their tags start with a version or a distribution's name (`valkey:valkey` is a chown).
    r"(?::(?:\d|latest|alpine|unstable|bookworm|trixie|bullseye)[\w.-]*)?"
    r"(?:@sha256:[0-9a-f]{64})?(?![\w./-])"
)
# `image: redis`: an image without a tag or digest (kubectl and compose then take `latest`).
UNTAGGED = re.compile(r"\bimage:\s*[\"']?((?:\w[\w.-]*/)*(?:redis|valkey|keydb))[\"']?\s*$")
NOT_SCANNED = {"tests/manifests/test_data_tier_image.py"}
# Where kustomize sets the tag (from the images: list that pinned_image() reads).
TAGGED_BY_KUSTOMIZE = {
    "kustomize/base/data-tier/deployment.yaml": "valkey/valkey",
    # Replaced by the base's data-tier image (components/redis-ha/same-image).
    "kustomize/components/redis-ha/statefulset.yaml": "valkey/valkey",
}


def pinned_image() -> str:
    """valkey/valkey:TAG, from kustomize/base (a digest Renovate adds there left out)."""
    kustomization = yaml.safe_load((ROOT / "kustomize/base/kustomization.yaml").read_text())
    [entry] = [i for i in kustomization["images"] if i["name"].endswith("valkey")]
    return f"{entry['name']}:{entry['newTag']}".split("@")[0]


def airgap_image() -> str:
    script = (ROOT / "scripts/airgap-images").read_text()
    return re.search(r"AIRGAP_REDIS_IMAGE:-([^}]+)\}", script).group(1)


def references(text: str) -> list[tuple[int, str]]:
    """(line number, image) for every image reference of a Redis-protocol server."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        # A bare word "redis" is prose, or a name (a service, a container), not an image.
        found += [(number, m.group(0)) for m in IMAGE.finditer(line) if re.search("[:@]", m[0])]
        found += [(number, m.group(1)) for m in UNTAGGED.finditer(line)]
    return found


def strays(text: str, allowed: set[str]) -> list[tuple[int, str]]:
    return [(n, image) for n, image in references(text) if image.split("@")[0] not in allowed]


def tracked_text_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [p for p in listed if p not in NOT_SCANNED and not p.startswith("requirements/")]


def test_the_data_tier_is_valkey_at_a_release_with_the_known_fixes():
    """9.1.2 carries every fix the README lists: the 2025 Lua ones (CVE-2025-49844, CVSS 10;
    46817/46818/46819, fixed from 8.1.4) and those of 2026 up to CVE-2026-86227."""
    name, tag = pinned_image().split(":", 1)
    assert name == "valkey/valkey"
    version = tuple(int(n) for n in re.match(r"(\d+)\.(\d+)\.(\d+)", tag).groups())
    assert version >= (9, 1, 2)


def test_every_file_names_the_one_data_tier_image():
    allowed = {pinned_image(), airgap_image()}
    found = {}
    for path in tracked_text_files():
        try:
            text = (ROOT / path).read_text()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        if bad := strays(text, allowed | {TAGGED_BY_KUSTOMIZE.get(path, "")}):
            found[path] = bad
    assert not found, f"only {sorted(allowed)} may be named: {found}"
    # And it is named where it must be: compose, the lessons, the tests' default.
    for path in ["docker-compose.yml", "k8s/06-multi-container-pods/pod.yaml"]:
        assert pinned_image() in (ROOT / path).read_text(), path
    assert data_tier_image() == pinned_image()


@pytest.mark.parametrize(
    "line",
    [
        "image: redis:7.4.2-bookworm",
        "    image: docker.io/library/redis:7.4@sha256:" + "a" * 64,
        "FROM valkey/valkey:8.0.1",
        'REDIS_IMAGE = "bitnami/redis:7.2"',
        "image: ghcr.io/valkey-io/valkey:9.1.2",
        "kind load docker-image microservices-airgap/redis:7.0-bookworm",
        "    image: ${CACHE_IMAGE:-redis:7.4.2}",
        "REDIS_IMAGE=${REDIS_IMAGE:-redis:7}",
        "public.ecr.aws/docker/library/redis:7.4",
        "registry.example.com/team/infra/valkey:8.0",
        "localhost:5001/valkey:9",
        "image: redis:16",
        "docker run -d valkey:9.1.2",
        "    image: redis",
        '      image: "valkey/valkey"',
        "$(docker run --rm redis:7 redis-cli ping)",
    ],
)
def test_another_image_is_caught(line):
    assert strays(line, {pinned_image(), airgap_image()}), line


@pytest.mark.parametrize(
    "line",
    [
        "REDIS_URL: redis://redis:6379/0",
        "redis://data-tier:6379/0",
        "redis://:secret@redis:6379/0",
        "import redis",
        "the Redis protocol",
        "  redis:",
        "- name: redis",
        "kubectl exec deploy/data-tier -c redis -- valkey-cli ping",
        "chroot $dir chown -R valkey:valkey /data",
        "redis.set('redis:count', 5)",
        "valkey/valkey:9.1.2-trixie is pinned",
        # What Renovate's digest pinning writes.
        "    image: valkey/valkey:9.1.2-trixie@sha256:" + "b" * 64,
    ],
)
def test_urls_and_prose_are_not_images(line):
    assert not strays(line.replace("9.1.2-trixie", pinned_image().split(":")[1]), {pinned_image()})
