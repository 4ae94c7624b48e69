"""The lessons' images, with or without a registry (k8s/README.md): the commands it gives load
every image a lesson names, the air-gapped stand-in for Valkey gets exactly the name the
lessons use, and what a lesson builds is built the way that honours the local base images."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

from tests.manifests.render import LESSONS, ROOT, lesson_objects
from tests.manifests.rules import containers, pod_specs

SECTION = "## Images, with or without a registry"
# Lesson 14's broken update names a tag that exists nowhere, on purpose; its second version
# (one patch above the project's: scripts/set-version keeps it there) is built by the lesson
# itself (checked below).
VERSION = subprocess.run(
    [ROOT / "scripts/version"], capture_output=True, text=True, check=True
).stdout.strip()
MAJOR_MINOR, PATCH = VERSION.rsplit(".", 1)
SECOND_VERSION = f"{MAJOR_MINOR}.{int(PATCH) + 1}"
NOT_LOADED = {"microservices/server:9.9.9", f"microservices/server:{SECOND_VERSION}"}


def section_commands() -> list[list[str]]:
    """The sh blocks of the section: a list of commands (comments dropped) per block."""
    text = (ROOT / "k8s" / "README.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return [
        [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
        for block in blocks
    ]


def lesson_images() -> set[str]:
    images = set()
    for lesson in LESSONS:
        for _, _, spec in pod_specs(lesson_objects(lesson)):
            images.update(c["image"] for c in containers(spec))
    return images


def loaded(commands: list[str]) -> set[str]:
    (load,) = [c for c in commands if c.startswith("kind load docker-image ")]
    return set(shlex.split(load)[3:])


def test_both_paths_load_every_image_a_lesson_names():
    with_registry, air_gapped = section_commands()
    wanted = lesson_images() - NOT_LOADED
    valkey = {image for image in wanted if image.startswith("valkey/")}
    assert len(valkey) == 1, "one data tier image across the lessons"
    assert loaded(with_registry) == wanted - valkey, "with a registry the cluster pulls Valkey"
    assert loaded(air_gapped) == wanted, "air-gapped, everything is loaded"
    for commands in (with_registry, air_gapped):
        assert "docker compose build" in commands, "compose builds from .env's base images"


def test_the_air_gapped_valkey_takes_the_lessons_name_from_the_image_the_script_makes():
    _, air_gapped = section_commands()
    (tag,) = [shlex.split(c) for c in air_gapped if c.startswith("docker tag ")]
    made = re.search(
        r"REDIS_IMAGE=\$\{AIRGAP_REDIS_IMAGE:-([^}]+)\}",
        (ROOT / "scripts/airgap-images").read_text(),
    )
    assert tag[2] == made.group(1)
    assert {tag[3]} == {image for image in lesson_images() if image.startswith("valkey/")}
    assert air_gapped[0] == 'eval "$(scripts/airgap-images)"', "the local images come first"


def test_no_lesson_builds_with_plain_docker_build():
    """`docker build` ignores .env (it would reach for a registry's Python); compose does not."""
    for readme in (ROOT / "k8s").glob("*/README.md"):
        assert "docker build" not in readme.read_text(), readme


def test_lesson_14s_second_version_is_the_image_compose_builds_with_that_tag():
    readme = (ROOT / "k8s/14-rolling-updates/README.md").read_text()
    build = re.search(r"^TAG=(\S+) docker compose build server ", readme, re.MULTILINE)
    assert build, "lesson 14 builds its second version with compose"
    assert build.group(1) == SECOND_VERSION, "one patch above the version: never a downgrade"
    config = subprocess.run(
        ["docker", "compose", "config", "--format", "json"],
        cwd=ROOT,
        env={**os.environ, "TAG": build.group(1)},
        capture_output=True,
        text=True,
        check=True,
    )
    image = json.loads(config.stdout)["services"]["server"]["image"]
    assert image == f"microservices/server:{build.group(1)}"
    assert f"kind load docker-image {image}" in readme
    assert f"server={image}" in readme, "the rollout asks for the image built"
