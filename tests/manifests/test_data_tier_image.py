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

# An image reference of a Redis-protocol server: an optional registry, then one of the
# repositories such images are published under, then a tag and/or a digest.
IMAGE = re.compile(
    r"(?<![\w./-])(?:\w[\w.-]*\.\w+(?::\d+)?/)?(?:library/)?"
    r"(?:redis|valkey/valkey|bitnami/redis|bitnami/valkey|redis/redis-stack(?:-server)?"
    r"|eqalpha/keydb|\w[\w.-]*/(?:redis|valkey))"
    r"(?::[\w][\w.-]*)?(?:@sha256:[0-9a-f]{64})?(?![\w./-])"
)
# `redis:6379` in a URL or a compose link is a host and a port, not an image.
HOST_AND_PORT = re.compile(r"redis:\d{2,5}$")
NOT_SCANNED = {"tests/manifests/test_data_tier_image.py"}


def pinned_image() -> str:
    kustomization = yaml.safe_load((ROOT / "kustomize/base/kustomization.yaml").read_text())
    [entry] = [i for i in kustomization["images"] if i["name"].endswith("valkey")]
    return f"{entry['name']}:{entry['newTag']}"


def airgap_image() -> str:
    script = (ROOT / "scripts/airgap-images").read_text()
    return re.search(r"AIRGAP_REDIS_IMAGE:-([^}]+)\}", script).group(1)


def references(text: str) -> list[tuple[int, str]]:
    """(line number, image) for every image reference of a Redis-protocol server."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in IMAGE.finditer(line):
            image = match.group(0)
            # A bare word "redis" is prose, not an image.
            if (":" in image or "@" in image) and not HOST_AND_PORT.search(image):
                found.append((number, image))
    return found


def strays(text: str, allowed: set[str]) -> list[tuple[int, str]]:
    return [(n, image) for n, image in references(text) if image.split("@")[0] not in allowed]


def tracked_text_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [p for p in listed if p not in NOT_SCANNED and not p.startswith("requirements/")]


def test_the_data_tier_is_valkey_at_a_release_with_the_2025_lua_fixes():
    """CVE-2025-49844 (CVSS 10) and CVE-2025-46817/46818/46819 are fixed in Valkey 8.1.4 and
    later; CVE-2025-21605 in 8.1.1."""
    name, tag = pinned_image().split(":", 1)
    assert name == "valkey/valkey"
    version = tuple(int(n) for n in re.match(r"(\d+)\.(\d+)\.(\d+)", tag).groups())
    assert version >= (8, 1, 4)


def test_every_file_names_the_one_data_tier_image():
    allowed = {pinned_image(), airgap_image()}
    found = {}
    for path in tracked_text_files():
        try:
            text = (ROOT / path).read_text()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        if bad := strays(text, allowed):
            found[path] = bad
    assert not found, f"only {sorted(allowed)} may be named: {found}"
    # And it is named where it must be: compose, the lessons, the tests' default.
    for path in ["docker-compose.yml", "k8s/06-multi-container-pods/pod.yaml", "tests/support.py"]:
        assert pinned_image() in (ROOT / path).read_text(), path


@pytest.mark.parametrize(
    "line",
    [
        "image: redis:7.4.2-bookworm",
        "    image: docker.io/library/redis:7.4@sha256:" + "a" * 64,
        "FROM valkey/valkey:8.0.1",
        'REDIS_IMAGE = "bitnami/redis:7.2"',
        "image: ghcr.io/valkey-io/valkey:9.1.2",
        "kind load docker-image microservices-airgap/redis:7.0-bookworm",
    ],
)
def test_another_image_is_caught(line):
    assert strays(line, {pinned_image(), airgap_image()}), line


@pytest.mark.parametrize(
    "line",
    [
        "REDIS_URL: redis://redis:6379/0",
        "redis://data-tier:6379/0",
        "import redis",
        "the Redis protocol",
        "valkey/valkey:9.1.2-trixie is pinned",
    ],
)
def test_urls_and_prose_are_not_images(line):
    assert not strays(line.replace("9.1.2-trixie", pinned_image().split(":")[1]), {pinned_image()})
