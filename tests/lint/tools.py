"""The environments that tests/lint runs its tools from, each made by `make install` (make
lint-env) from its lock in tools/lint/ with hashes: .venv-lint (checkov, hadolint, zizmor,
bandit, check-jsonschema, uv) and .venv-sbom (cyclonedx-bom). Not the test environment:
checkov's pins do not install beside the dev extra's, nor beside cyclonedx-bom's."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.manifests.render import ROOT

LINT_BIN = ROOT / ".venv-lint" / "bin"
SBOM_BIN = ROOT / ".venv-sbom" / "bin"


def tool(bin_dir: Path, name: str) -> Path:
    path = bin_dir / name
    assert path.exists(), f"{path} is missing: make lint-env makes it (make install does)"
    return path


def run(
    bin_dir: Path, *argv: str | Path, cwd: Path = ROOT, timeout: int = 120
) -> subprocess.CompletedProcess:
    command = [str(tool(bin_dir, str(argv[0]))), *map(str, argv[1:])]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
