"""scripts/sbom (`make sbom`, and the CI step that keeps an SBOM of each image): a CycloneDX SBOM
of a Python environment, valid against CycloneDX's schema, that lists every package installed
there at its version, and nothing else. CI runs it on the images' /opt/venv; here it runs on
environments that need no image: .venv-sbom, made from its lock, and environments planted on
disk with no interpreter, as an image's is once copied out of it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tests.lint import tools
from tests.manifests.render import ROOT

SBOM = ROOT / "scripts/sbom"
# What `python -m venv` puts into every environment besides what the lock installs.
VENV_SEED = {"pip", "setuptools"}
VALIDATE = """\
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
print(error or "", end="")
"""


def sbom(out: Path, environment: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SBOM, "--venv", environment, name],
        env=os.environ | {"SBOM_DIR": str(out)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def bom_of(out: Path, environment: Path, name: str) -> dict:
    result = sbom(out, environment, name)
    assert result.returncode == 0, result.stderr
    path = out / f"{name}.cdx.json"
    assert validation_error(path) == ""
    return json.loads(path.read_text())


def validation_error(path: Path) -> str:
    """CycloneDX's JSON schema (1.6, strict), as cyclonedx-python-lib ships it: '' if valid."""
    result = tools.run(tools.SBOM_BIN, "python", "-c", VALIDATE, path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def components(bom: dict) -> dict[str, str]:
    return {normal(c["name"]): c["version"] for c in bom["components"]}


def locked(lock: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9][\w.-]*)==(\S+)", lock.read_text(), re.MULTILINE)
    return {normal(name): version for name, version in pins}


def plant(environment: Path, packages: dict[str, str], python: str = "python3.13") -> Path:
    """A virtual environment's packages as they lie on disk (their *.dist-info), no
    interpreter: what scripts/sbom copies out of an image."""
    site = environment / "lib" / python / "site-packages"
    for name, version in packages.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nLicense-Expression: MIT\n"
        )
    return environment


def test_the_sbom_of_an_environment_lists_its_lock(tmp_path):
    """.venv-sbom, installed from tools/lint/sbom.txt: every locked package at its version,
    with its package URL, and only what venv adds besides."""
    bom = bom_of(tmp_path, ROOT / ".venv-sbom", "sbom-tools")
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    lock = locked(ROOT / "tools/lint/sbom.txt")
    listed = components(bom)
    assert len(lock) > 10
    assert {name: listed.get(name) for name in lock} == lock
    assert set(listed) - set(lock) <= VENV_SEED
    for component in bom["components"]:
        name, version = component["name"], component["version"]
        assert component["purl"] == f"pkg:pypi/{name.lower().replace('_', '-')}@{version}"
    refs = {c["bom-ref"] for c in bom["components"]}
    assert {d["ref"] for d in bom["dependencies"]} <= refs


def test_the_sbom_of_a_copied_environment_lists_what_lies_there(tmp_path):
    """An environment with no interpreter, whatever its Python's version (an image's, copied
    out): the SBOM reads what is on disk, and a package planted there shows."""
    planted = {"flask": "3.1.3", "planted-package": "0.0.1"}
    environment = plant(tmp_path / "venv", planted)
    bom = bom_of(tmp_path / "out", environment, "copied")
    assert components(bom) == planted


def test_sbom_refuses_what_is_no_environment(tmp_path):
    (tmp_path / "empty").mkdir()
    result = sbom(tmp_path / "out", tmp_path / "empty", "empty")
    assert result.returncode != 0
    assert "not a virtual environment" in result.stderr
    assert not (tmp_path / "out/empty.cdx.json").exists()


def test_the_validation_reports_a_planted_defect(tmp_path):
    """The schema check behind both tests bites: a component without a name."""
    bom = bom_of(tmp_path, plant(tmp_path / "venv", {"flask": "3.1.3"}), "planted")
    del bom["components"][0]["name"]
    (tmp_path / "broken.cdx.json").write_text(json.dumps(bom))
    assert "'name' is a required property" in validation_error(tmp_path / "broken.cdx.json")
