"""The version in one place: pyproject.toml's. Every image tag of the project's own images
(kustomize's base, compose, the lessons, READMEs, scripts, tests), the installed package (the
page shows it) and CHANGELOG.md say the same; scripts/set-version changes them all."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from microservices_common.identity import version as installed_version

ROOT = Path(__file__).resolve().parents[2]
# `microservices/server:<version>` (or server-pypy, counter, poller), and the shapes naming the
# three at once: `{server,counter,poller}` in prose, `{service}` in an f-string.
IMAGE_TAG = re.compile(
    r"microservices/(?:server(?:-pypy)?|counter|poller|\{[a-z,]+\}):([0-9A-Za-z][0-9A-Za-z.+-]*)"
)
COMPOSE_TAG = re.compile(r"\$\{TAG:-([0-9][^}]*)\}")
# Lesson 14 moves the app to another version on purpose: its second version, one patch above
# the version (set-version moves it along), and 9.9.9 that exists nowhere. Tests plant other
# tags to see a rule bite (set-version still moves their copies of the version, as everywhere).
SECOND_VERSION_LESSON = "k8s/14-rolling-updates/README.md"
BROKEN_VERSION = "k8s/14-rolling-updates/patches/broken-version.yaml"


def held_to_the_version(name: str) -> bool:
    return name not in (SECOND_VERSION_LESSON, BROKEN_VERSION) and not name.startswith("tests/")


def project_version(root: Path = ROOT) -> str:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]


def second_version(version: str) -> str:
    """Lesson 14's second version: one patch above `version`, never a downgrade."""
    major, minor, patch = version.split(".")
    return f"{major}.{minor}.{int(patch) + 1}"


def files(root: Path) -> list[str]:
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    return [name for name in names if name and (root / name).is_file()]


def mismatches(root: Path = ROOT) -> list[str]:
    """Every place under root that names a version of the project other than pyproject's."""
    version = project_version(root)
    found = []
    for name in files(root):
        if not held_to_the_version(name):
            continue
        try:
            text = (root / name).read_text()
        except UnicodeDecodeError:
            continue
        for pattern in (IMAGE_TAG, COMPOSE_TAG):
            for match in pattern.finditer(text):
                if match[1] != version:
                    line = text.count("\n", 0, match.start()) + 1
                    found.append(f"{name}:{line}: {match[0]} (the version is {version})")
    lesson = (root / SECOND_VERSION_LESSON).read_text()
    second = second_version(version)
    for tag in [m[1] for m in IMAGE_TAG.finditer(lesson)] + re.findall(r"\bTAG=(\S+)", lesson):
        if tag not in (second, "9.9.9"):  # 9.9.9: the broken update's, nowhere
            found.append(f"{SECOND_VERSION_LESSON}: {tag} (the second version is {second})")
    # The base's images, and those a component switches to (the PyPy server).
    kustomizations = ["kustomize/base/kustomization.yaml"] + [
        str(path.relative_to(root))
        for path in sorted((root / "kustomize/components").glob("*/kustomization.yaml"))
    ]
    for name in kustomizations:
        for image in yaml.safe_load((root / name).read_text()).get("images", []):
            if image["name"].startswith("microservices/") and image.get("newTag") != version:
                found.append(f"{name}: {image['name']} {image.get('newTag')}")
    if f"## [{version}]" not in (root / "CHANGELOG.md").read_text():
        found.append(f"CHANGELOG.md: no '## [{version}]' section")
    return found


def test_every_file_names_pyprojects_version():
    assert mismatches() == []


def test_the_installed_package_is_pyprojects_version():
    """The page and the User-Agent show this one (`make install` after a change of version)."""
    assert installed_version() == project_version(), "run make install: it reinstalls .venv"


def test_scripts_version_prints_it():
    out = subprocess.run([ROOT / "scripts/version"], capture_output=True, text=True, check=True)
    assert out.stdout == project_version() + "\n"


def copy_of_the_repository(destination: Path) -> Path:
    for name in files(ROOT):
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination / name)
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    return destination


def test_set_version_rewrites_every_place_and_the_rule_sees_each(tmp_path):
    copy = copy_of_the_repository(tmp_path)
    old = project_version(copy)
    # The rule bites: pyproject alone moved, every other place is a mismatch.
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(f'"{old}"', '"9.8.7"', 1))
    stale = mismatches(copy)
    for place in ("docker-compose.yml", "kustomize/base/kustomization.yaml", "k8s/", "CHANGELOG"):
        assert any(p.startswith(place) for p in stale), (place, stale)
    pyproject.write_text(pyproject.read_text().replace('"9.8.7"', f'"{old}"', 1))

    result = subprocess.run(
        [sys.executable, copy / "scripts/set-version", "9.8.7"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert project_version(copy) == "9.8.7"
    assert mismatches(copy) == []
    changelog = (copy / "CHANGELOG.md").read_text()
    assert changelog.index("## [Unreleased]") < changelog.index("## [9.8.7] - ")


def set_version(copy: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, copy / "scripts/set-version", *args], capture_output=True, text=True
    )


def contents(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_set_version_refuses_what_is_not_a_version(tmp_path):
    copy = copy_of_the_repository(tmp_path)
    before = contents(copy)
    for bad in ("1.1", "v1.1.0", "1.1.0 ", "latest", "01.1.0", "1.01.0", "1.1.00"):
        result = set_version(copy, bad)
        assert result.returncode != 0 and "usage: scripts/set-version" in result.stderr, bad
    assert contents(copy) == before


def test_set_version_goes_back_only_with_force_and_moves_the_second_version_along(tmp_path):
    copy = copy_of_the_repository(tmp_path)
    old = project_version(copy)
    # One patch up: the version takes the second version's place, which moves on one more.
    assert set_version(copy, second_version(old)).returncode == 0
    assert mismatches(copy) == []
    assert set_version(copy, "9.8.7").returncode == 0
    assert "microservices/server:9.8.8" in (copy / SECOND_VERSION_LESSON).read_text()
    before = contents(copy)
    refused = set_version(copy, "9.8.6")
    assert refused.returncode == 1
    assert (
        refused.stderr == "set-version: 9.8.6 is lower than the current 9.8.7; --force to go back\n"
    )
    assert contents(copy) == before
    # One patch down, then back to where it was: the second version stays one patch above.
    for version in ("9.8.6", old):
        assert set_version(copy, "--force", version).returncode == 0
        assert project_version(copy) == version
        assert mismatches(copy) == [], version


@pytest.mark.parametrize("broken", ["no Unreleased section", "no git checkout"])
def test_set_version_stops_before_writing_anything(tmp_path, broken):
    copy = copy_of_the_repository(tmp_path)
    if broken == "no Unreleased section":
        changelog = copy / "CHANGELOG.md"
        changelog.write_text(changelog.read_text().replace("## [Unreleased]", "## Unreleased"))
        said = "CHANGELOG.md has no '## [Unreleased]' section"
    else:
        shutil.rmtree(copy / ".git")
        said = "is not a git checkout"
    before = contents(copy)
    result = set_version(copy, "9.8.7")
    assert result.returncode == 1 and said in result.stderr
    assert "Traceback" not in result.stderr
    assert contents(copy) == before
