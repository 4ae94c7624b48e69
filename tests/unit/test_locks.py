"""The locks (requirements/*.txt, made by `make lock`) agree with pyproject.toml: every package
pyproject pins is in its lock at that version, every line of a lock is pinned and hashed, and
the images install nothing else (install-service reads the locks with --require-hashes)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support import ROOT

LOCKS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
PROJECT = "microservices"


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: list[str]) -> dict[str, str]:
    """{name: version} of the `name==version` requirements (the project's own extras left out)."""
    found = {}
    for requirement in requirements:
        match = PIN.match(requirement.replace(" ", ""))
        if match is None:
            if not requirement.startswith(f"{PROJECT}["):
                found[requirement] = "(not pinned with ==)"
            continue
        found[normal(match.group(1))] = match.group(2)
    return found


def read_lock(text: str) -> tuple[dict[str, str], list[str]]:
    """The lock's {name: version} and the names of the entries without a hash."""
    entries, unhashed = {}, []
    for block in re.split(r"\n(?=\S)", text):
        match = PIN.match(block)
        if match is None:
            continue
        entries[normal(match.group(1))] = match.group(2)
        if "--hash=sha256:" not in block:
            unhashed.append(match.group(1))
    return entries, unhashed


def expected_locks(project: dict) -> dict[str, dict[str, str]]:
    """What each lock must hold at least, from pyproject.toml."""
    extras = project["project"]["optional-dependencies"]
    services = {name: pins(extras[name]) for name in ("server", "counter", "poller")}
    dev = pins(extras["dev"])
    for service in services.values():
        dev.update(service)
    return {**services, "dev": dev, "build": pins(project["build-system"]["requires"])}


def disagreements(project: dict, locks: dict[str, str]) -> list[str]:
    problems = []
    for lock, wanted in expected_locks(project).items():
        entries, unhashed = read_lock(locks[lock])
        problems += [f"{lock}.txt: {name} has no hash" for name in unhashed]
        for name, version in wanted.items():
            if entries.get(name) != version:
                found = entries.get(name, "absent")
                problems.append(f"{lock}.txt: {name} is {found}, pyproject pins {version}")
    return problems


def current() -> tuple[dict, dict[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    locks = {path.stem: path.read_text() for path in LOCKS.glob("*.txt")}
    return project, locks


def test_the_locks_agree_with_pyproject():
    project, locks = current()
    assert set(locks) == {"server", "counter", "poller", "dev", "build"}
    assert disagreements(project, locks) == [], "run `make lock`"


def test_every_direct_dependency_is_pinned_exactly():
    project, _ = current()
    for lock, wanted in expected_locks(project).items():
        loose = [name for name, version in wanted.items() if version.startswith("(")]
        assert loose == [], f"{lock}: pin with == in pyproject.toml"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda p, _: p["project"]["optional-dependencies"]["server"].append("flask==0"), "flask"),
        (lambda _, locks: locks.update(server=locks["server"].replace("--hash=", "#")), "no hash"),
        (lambda p, _: p["build-system"].update(requires=["setuptools==1.0"]), "setuptools"),
        (lambda p, _: p["project"]["optional-dependencies"]["dev"].append("pytest>=1"), "pinned"),
    ],
    ids=["pyproject-moved-on", "hash-removed", "build-backend-moved-on", "a-range"],
)
def test_a_disagreement_is_caught(edit, problem):
    project, locks = current()
    edit(project, locks)
    found = disagreements(project, locks) + [
        f"{name}: {version}"
        for wanted in expected_locks(project).values()
        for name, version in wanted.items()
        if version.startswith("(")
    ]
    assert any(problem in line for line in found), found


# What the images' install (services/install-service) does with a lock, on a real pip.
INSTALL = [sys.executable, "-m", "pip", "install", "--dry-run", "--disable-pip-version-check",
           "--require-hashes", "--only-binary=:all:", "--python-version=3.13",
           "--target=/nonexistent"]  # fmt: skip


def one_entry(lock: str, name: str) -> str:
    return next(b for b in re.split(r"\n(?=\S)", lock) if b.startswith(f"{name}=="))


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """blinker's wheel, as the server's lock names it (PyPI, checked against the lock)."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    lock = folder / "blinker.txt"
    lock.write_text(one_entry((LOCKS / "server.txt").read_text(), "blinker") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--require-hashes", "--no-deps", "--dest", str(folder), "-r", str(lock)],
        check=True, timeout=120,
    )  # fmt: skip
    return folder


def test_a_file_that_differs_from_the_lock_fails_the_install_naming_it(wheelhouse, tmp_path):
    entry = one_entry((LOCKS / "server.txt").read_text(), "blinker")
    tampered = tmp_path / "tampered.txt"
    tampered.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, entry) + "\n")
    result = subprocess.run(
        [*INSTALL, "--no-index", f"--find-links={wheelhouse}", "-r", str(tampered)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "DO NOT MATCH THE HASHES" in result.stderr and "blinker" in result.stderr


def test_an_air_gapped_build_without_a_wheel_of_the_lock_fails_naming_it(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(one_entry((LOCKS / "server.txt").read_text(), "blinker") + "\n")
    empty = tmp_path / "wheelhouse"
    empty.mkdir()
    result = subprocess.run(
        [*INSTALL, "--no-index", f"--find-links={empty}", "-r", str(lock)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "No matching distribution found for blinker" in result.stderr


def test_the_locked_wheel_installs(wheelhouse, tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(one_entry((LOCKS / "server.txt").read_text(), "blinker") + "\n")
    result = subprocess.run(
        [*INSTALL, "--no-index", f"--find-links={wheelhouse}", "-r", str(lock)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
