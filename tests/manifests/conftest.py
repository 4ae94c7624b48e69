"""Every supported combination of the base and the components, rendered once per session."""

from __future__ import annotations

import shutil

import pytest

from tests.manifests.render import COMBINATIONS, ROOT, combination_name, render_combination


@pytest.fixture(scope="session")
def combinations(tmp_path_factory) -> dict[str, list[dict]]:
    tree = tmp_path_factory.mktemp("combinations") / "kustomize"
    shutil.copytree(ROOT / "kustomize", tree)
    return {combination_name(c): render_combination(tree, c) for c in COMBINATIONS}
