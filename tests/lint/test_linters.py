"""Linters as guard rails: checkov on every rendered overlay, every lesson and every Dockerfile;
hadolint on every Dockerfile; zizmor on the GitHub workflows; bandit on services/. All run
offline, from their own environment (.venv-lint, tests/lint/tools.py). For each, a test plants
a defect and sees the linter report it: the rail bites."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from concurrent.futures import ThreadPoolExecutor
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from tests.lint import tools
from tests.manifests.render import ROOT

CHECKOV_SKIPS = yaml.safe_load((Path(__file__).parent / "checkov-skips.yaml").read_text())
# Folders that hold no Dockerfile of ours: environments (.venv, .venv-lint, ...), caches, git's own.
NOT_OURS = {".git", "venv", "node_modules", ".pytest_cache", ".ruff_cache", ".hypothesis"}
NOQA = re.compile(r"#\s*noqa:\s*([A-Z0-9, ]+)")


def run(*argv: str | Path, cwd: Path = ROOT, timeout: int = 120) -> subprocess.CompletedProcess:
    return tools.run(tools.LINT_BIN, *argv, cwd=cwd, timeout=timeout)


def ours(folder: str) -> bool:
    return folder not in NOT_OURS and not folder.startswith(".venv")


def dockerfiles(root: Path = ROOT) -> list[Path]:
    """Every Dockerfile of the repository, wherever it is: services/*/Dockerfile, a root
    Dockerfile with targets, Dockerfile.<name> or <name>.Dockerfile."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [s for s in subfolders if ours(s)]
        for name in files:
            lower = name.lower()
            if (
                lower == "dockerfile"
                or lower.startswith("dockerfile.")
                or lower.endswith(".dockerfile")
            ):
                found.append(Path(folder, name))
    return sorted(found)


def test_there_are_dockerfiles_to_lint():
    found = dockerfiles()
    assert found, "no Dockerfile found: the glob or the layout changed"
    assert not [p for p in found if not all(map(ours, p.relative_to(ROOT).parts[:-1]))]


# checkov


def checkov(directory: Path) -> list[dict]:
    """checkov's reports (one per framework) on a directory of Kubernetes manifests and
    Dockerfiles. --skip-download: offline, no policies or guidelines fetched. Every check runs;
    the skip list is applied afterwards, so that a skip that no longer matches shows."""
    result = run(
        "checkov",
        "--directory",
        directory,
        "--framework",
        "kubernetes",
        "dockerfile",
        "--skip-download",
        "--quiet",
        "--compact",
        "--output",
        "json",
        cwd=directory,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    reports = json.loads(result.stdout)
    return [r for r in (reports if isinstance(reports, list) else [reports]) if "check_type" in r]


def where(finding: dict) -> str:
    return f"{finding['file_path'].lstrip('/')}:{finding['resource']}"


def skip_for(finding: dict) -> str | None:
    """The check's id when the skip list explains this finding, else None."""
    skip = CHECKOV_SKIPS.get(finding["check_id"])
    if skip is None:
        return None
    scopes = skip.get("only")
    if scopes and not any(fnmatch(where(finding), scope) for scope in scopes):
        return None
    return finding["check_id"]


def failures(reports: list[dict]) -> list[dict]:
    return [f for r in reports for f in r["results"]["failed_checks"]]


def readable(findings: list[dict]) -> str:
    return "\n".join(f"{f['check_id']} {f['check_name']}: {where(f)}" for f in findings)


def stage(directory: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_text(text)
    return directory


JOINED_KINDS = ("NetworkPolicy", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


def lesson_scans() -> list[dict[str, str]]:
    """The lessons' files (patches too) as checkov runs: a lesson with objects that graph
    checks join to pods (policies, RBAC) alone, the others together."""
    alone, together = [], {}
    for folder in sorted(p for p in (ROOT / "k8s").iterdir() if p.is_dir()):
        files = {str(p.relative_to(ROOT)): p.read_text() for p in folder.rglob("*.yaml")}
        kinds = {
            doc.get("kind") for text in files.values() for doc in yaml.safe_load_all(text) if doc
        }
        if kinds & set(JOINED_KINDS):
            alone.append(files)
        else:
            together |= files
    return [together, *alone]


@pytest.fixture(scope="module")
def checkov_reports(rendered, tmp_path_factory) -> list[dict]:
    """checkov on each overlay rendered, on the lessons, and on the Dockerfiles, at their paths
    in the repository. Its graph checks (CKV2_*) join the resources of every file in a run
    whatever their namespace: scanned together, dev (no NetworkPolicy) would pass on
    staging's. So one run per overlay, one per lesson that has policies or RBAC (19, 20), one
    for the other lessons and one for the Dockerfiles; in parallel, they take the time of
    about three."""
    scans = [
        {f"overlays/{overlay}.yaml": yaml.safe_dump_all(objects)}
        for overlay, objects in rendered.items()
    ]
    scans += lesson_scans()
    scans.append({str(p.relative_to(ROOT)): p.read_text() for p in dockerfiles()})
    folders = [stage(tmp_path_factory.mktemp("checkov"), files) for files in scans]
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return [report for reports in pool.map(checkov, folders) for report in reports]


def test_every_checkov_skip_has_a_one_line_reason():
    for check, skip in CHECKOV_SKIPS.items():
        assert re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", check), check
        assert set(skip) <= {"reason", "only"}, check
        assert skip["reason"].strip() and "\n" not in skip["reason"].strip(), check


def test_checkov_scanned_everything(checkov_reports):
    assert all(r["summary"]["parsing_errors"] == 0 for r in checkov_reports)
    scanned = {f["file_path"].lstrip("/").split("/")[0] for f in failures(checkov_reports)}
    assert {"overlays", "k8s"} <= scanned
    docker = [r for r in checkov_reports if r["check_type"] == "dockerfile"]
    assert sum(r["summary"]["resource_count"] for r in docker) >= len(dockerfiles())


@pytest.mark.parametrize("part", ["overlays", "k8s", "dockerfiles"])
def test_checkov_finds_nothing_unexplained(checkov_reports, part):
    def in_part(finding):
        top = finding["file_path"].lstrip("/").split("/")[0]
        return top == part or (part == "dockerfiles" and top not in ("overlays", "k8s"))

    found = [f for f in failures(checkov_reports) if in_part(f) and not skip_for(f)]
    assert not found, "checkov, not in tests/lint/checkov-skips.yaml:\n" + readable(found)


def test_no_checkov_skip_is_stale(checkov_reports):
    used = {skip_for(f) for f in failures(checkov_reports)}
    assert set(CHECKOV_SKIPS) - used == set(), "skips that match no finding: remove them"


POD_WITHOUT_LIMITS = """\
apiVersion: v1
kind: Pod
metadata:
  name: planted
  namespace: planted
spec:
  containers:
    - name: app
      image: microservices/server:1.1.0
"""


def test_checkov_reports_a_planted_defect(tmp_path):
    """A pod with no resource limits among the overlays, the same in a lesson (where the skip
    list explains it), and a Dockerfile with no USER."""
    (tmp_path / "overlays").mkdir()
    (tmp_path / "overlays/planted.yaml").write_text(POD_WITHOUT_LIMITS)
    (tmp_path / "k8s/99-planted").mkdir(parents=True)
    (tmp_path / "k8s/99-planted/pod.yaml").write_text(POD_WITHOUT_LIMITS)
    (tmp_path / "Dockerfile").write_text('FROM python:3.11.11-slim-bookworm\nCMD ["python"]\n')
    found = failures(checkov(tmp_path))
    reported = {(f["check_id"], f["file_path"].lstrip("/")) for f in found if not skip_for(f)}
    assert ("CKV_K8S_13", "overlays/planted.yaml") in reported  # memory limits
    assert ("CKV_K8S_13", "k8s/99-planted/pod.yaml") not in reported
    assert ("CKV_DOCKER_3", "Dockerfile") in reported  # no USER


# hadolint


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    # Warnings fail, as errors do; "info" and "style" (such as SC2086 on $PIP_INSTALL_FLAGS,
    # split on purpose) only inform.
    return run("hadolint", "--no-color", "--failure-threshold", "warning", dockerfile)


def test_hadolint_passes_every_dockerfile():
    failed = {}
    for dockerfile in dockerfiles():
        result = hadolint(dockerfile)
        if result.returncode != 0:
            failed[str(dockerfile.relative_to(ROOT))] = result.stdout + result.stderr
    assert not failed, "\n".join(f"{path}:\n{out}" for path, out in failed.items())


def test_hadolint_reports_a_planted_defect(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM python:latest\nUSER root\nCMD ["python"]\n')
    result = hadolint(dockerfile)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the latest tag
    assert "DL3002" in result.stdout  # the last USER is root


# zizmor


def zizmor(path: Path) -> tuple[int, list[dict]]:
    """zizmor's findings, offline (no audit that asks GitHub), with its default persona."""
    result = run("zizmor", "--offline", "--no-progress", "--format", "json", path)
    assert result.stdout.strip(), result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout)


def test_zizmor_passes_the_workflows():
    code, findings = zizmor(ROOT / ".github/workflows")
    described = [f"{f['ident']}: {f['desc']} ({f['locations'][0]['symbolic']})" for f in findings]
    assert (code, described) == (0, [])


def test_every_checkout_keeps_no_credentials():
    for workflow in (ROOT / ".github/workflows").glob("*.y*ml"):
        for job in yaml.safe_load(workflow.read_text())["jobs"].values():
            for step in job["steps"]:
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step.get("with", {}).get("persist-credentials") is False, workflow.name


PLANTED_WORKFLOW = """\
name: planted
on: push
permissions: {}
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
      - run: make test
"""


def test_zizmor_reports_a_planted_defect(tmp_path):
    """A checkout that leaves its token in .git/config (no persist-credentials: false)."""
    workflow = tmp_path / ".github/workflows/planted.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(PLANTED_WORKFLOW)
    code, findings = zizmor(workflow)
    assert code != 0
    assert "artipacked" in {f["ident"] for f in findings}


# bandit


def ruff_exemptions() -> set[str]:
    """The flake8-bandit (S) rules ruff ignores project-wide, each with its reason there."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {code for code in config["tool"]["ruff"]["lint"]["ignore"] if code.startswith("S")}


def exempted(issue: dict, global_codes: set[str]) -> bool:
    """ruff's S rules are bandit's checks under the same numbers (S108 is B108): a finding that
    ruff's configuration or a `# noqa: S108` on its line already exempts, with a reason, is
    not exempted a second time with `# nosec`."""
    code = "S" + issue["test_id"].removeprefix("B")
    if code in global_codes:
        return True
    lines = Path(issue["filename"]).read_text().splitlines()
    for number in issue["line_range"]:
        match = NOQA.search(lines[number - 1])
        if match and code in {c.strip() for c in match[1].split(",")}:
            return True
    return False


def bandit(path: Path) -> list[dict]:
    """bandit's unexempted findings. Every severity (the exemption is per line, with a reason,
    so there is nothing to gain by hiding low ones); medium confidence and up, since the low
    ones are guesses from names (a variable called token) that ruff's S105/S106 cover."""
    result = run("bandit", "-r", "-q", "-f", "json", "-l", "-ii", path)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert not report["errors"], report["errors"]
    codes = ruff_exemptions()
    return [issue for issue in report["results"] if not exempted(issue, codes)]


def readable_issues(issues: list[dict]) -> str:
    return "\n".join(
        f"{i['filename']}:{i['line_number']} {i['test_id']} {i['issue_text']} "
        f"({i['issue_severity']} severity, {i['issue_confidence']} confidence)"
        for i in issues
    )


def test_bandit_passes_the_services():
    issues = bandit(ROOT / "services")
    assert not issues, "bandit:\n" + readable_issues(issues)


def test_bandit_reports_a_planted_defect(tmp_path):
    (tmp_path / "planted.py").write_text(
        "import subprocess\n\n\n"
        "def run(command):\n"
        "    # noqa for another rule exempts nothing here\n"
        "    return subprocess.call(command, shell=True)  # noqa: S108\n"
        "\n\n"
        "DIRECTORY = '/tmp/planted'  # noqa: S108\n"
    )
    issues = bandit(tmp_path)
    ids = {i["test_id"] for i in issues}
    assert "B602" in ids  # a shell with a command from a variable
    assert "B108" not in ids  # exempted by its noqa, as in the services
