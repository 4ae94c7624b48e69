"""renovate.json, held to what Renovate needs to keep every pin of the repository current: valid
against Renovate's published schema (check-jsonschema's vendored copy, offline) with no option
the schema does not know, patterns that still find the files they are about, and locks whose
header carries a command Renovate can run again. Each rail has its planted defect."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
from pathlib import Path

import pytest

from tests.lint import tools
from tests.manifests.render import ROOT

CONFIG = json.loads((ROOT / "renovate.json").read_text())

# Renovate's own patterns for the managers that need no configuration here
# (lib/modules/manager/<manager>/index.ts, defaultConfig.managerFilePatterns).
DEFAULT_PATTERNS = {
    "dockerfile": [
        r"/(^|/|\.)([Dd]ocker|[Cc]ontainer)file$/",
        r"/(^|/)([Dd]ocker|[Cc]ontainer)file[^/]*$/",
    ],
    "docker-compose": [r"/(^|/)(?:docker-)?compose[^/]*\.ya?ml$/"],
    "kustomize": [r"/(^|/)kustomization\.ya?ml$/"],
    "github-actions": [
        r"/(^|/)(workflow-templates|\.(?:github|gitea|forgejo)/(?:workflows|actions))/.+\.ya?ml$/"
    ],
}

# What Renovate's pip-compile manager accepts in a lock's header, from its source
# (lib/modules/manager/pip-compile/common.ts, renovatebot/renovate at c2dd4f8): the command on
# the first line indented by four spaces after the comment lines that open the file; the
# options it knows, those that take a value written with '='. Any other option, a value after
# a space, or a header that is missing or names another command (`make lock`) and Renovate
# cannot compile the lock again.
HEADER = re.compile(r"^(#.*?\r?\n)+# {4}(?P<command>\S*)(?P<arguments> .*?)?\r?\n")
COMMON_VALUE_OPTIONS = ["--output-file", "--extra", "--extra-index-url"]
VALUE_OPTIONS = {
    "pip-compile": ["--resolver", "--constraint", *COMMON_VALUE_OPTIONS],
    "uv": [
        *["--constraints", "--constraint", "--python-version", "--no-emit-package"],
        *["--prerelease", "--format", "--resolution", "--fork-strategy", "--exclude-newer"],
        *["--exclude-newer-package", "--group", "--override", "--overrides"],
        *COMMON_VALUE_OPTIONS,
    ],
}
COMMON_FLAGS = ["-v", "--generate-hashes", "--emit-index-url", "--index-url", "--all-extras"]
FLAGS = {
    "pip-compile": [
        "--allow-unsafe",
        "--generate-hashes",
        "--no-emit-index-url",
        "--strip-extras",
        *COMMON_FLAGS,
    ],
    "uv": ["--no-strip-extras", "--universal", *COMMON_FLAGS],
}

# The files that must stay in Renovate's hands, by manager.
LOCKS = ["requirements/*.txt", "tools/lint/*.txt"]
NAMED_LOCKS = {
    "requirements/server.txt",
    "requirements/counter.txt",
    "requirements/poller.txt",
    "requirements/dev.txt",
    "tools/lint/lint.txt",
    "tools/lint/sbom.txt",
}
NOT_OURS = {".git", "node_modules", "build", "e2e-artifacts", ".wheelhouse", "__pycache__"}


def repository_files() -> list[str]:
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [
            s
            for s in subfolders
            if s not in NOT_OURS and not s.startswith((".venv", ".pytest", ".ruff", ".hyp"))
        ]
        found += [Path(folder, name).relative_to(ROOT).as_posix() for name in files]
    return sorted(found)


FILES = repository_files()


def regex(pattern: str) -> re.Pattern:
    """A Renovate pattern written as a regular expression (/.../), as every one here is:
    JavaScript's syntax, which for these is Python's once named groups are spelled (?P<...>)."""
    assert pattern.startswith("/") and pattern.endswith("/"), f"not a /regex/: {pattern}"
    return re.compile(pattern[1:-1].replace("(?<", "(?P<"))


def glob(pattern: str) -> re.Pattern:
    """A Renovate glob (minimatch): `**/` any folders, none too; `*` within one name."""
    parts = re.split(r"(\*\*/|/\*\*|\*)", pattern)
    wildcards = {"**/": "(?:.*/)?", "/**": "(?:/.*)?", "*": "[^/]*"}
    return re.compile("".join(wildcards.get(part, re.escape(part)) for part in parts))


def ignored(path: str, config: dict = CONFIG) -> bool:
    return any(glob(pattern).fullmatch(path) for pattern in config.get("ignorePaths", []))


def matched(patterns: list[str], config: dict = CONFIG) -> list[str]:
    return [
        f for f in FILES if not ignored(f, config) and any(regex(p).search(f) for p in patterns)
    ]


def manager_files(manager: str, config: dict = CONFIG) -> list[str]:
    if config.get(manager, {}).get("enabled") is False:
        return []
    patterns = DEFAULT_PATTERNS.get(manager, []) + config.get(manager, {}).get(
        "managerFilePatterns", []
    )
    return matched(patterns, config)


# Schema


def check_jsonschema(config: dict, tmp_path: Path) -> tuple[int, str]:
    path = tmp_path / "renovate.json"
    path.write_text(json.dumps(config))
    result = tools.run(
        tools.LINT_BIN, "check-jsonschema", "--builtin-schema", "vendor.renovate", path
    )
    return result.returncode, result.stdout + result.stderr


def renovate_schema() -> dict:
    """The schema check-jsonschema validates against (Renovate's, vendored at its release)."""
    found = list(
        (ROOT / ".venv-lint/lib").glob(
            "python3*/site-packages/check_jsonschema/builtin_schemas/vendor/renovate.json"
        )
    )
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def unknown_options(config: dict, schema: dict) -> list[str]:
    """Options the schema does not name. It lets an unknown key pass where its value is an
    object (at the top, where managers' objects are) and anywhere inside a manager's object, a
    package rule or a custom manager (additionalProperties is not false there); Renovate then
    ignores it with at most a line in its log, and a misspelt option does nothing, silently.
    So every key is looked up: at the top, in each manager's object (which takes the top
    level's options too), in each package rule and each custom manager."""
    top = set(schema["properties"]) | {"$schema"}
    definitions = schema["definitions"]

    def item_options(name: str) -> set[str]:
        return set(definitions[name]["items"]["allOf"][0]["properties"])

    unknown = [key for key in config if key not in top]
    for key, value in config.items():
        definition = definitions.get(key, {})
        if key in top and isinstance(value, dict) and definition.get("$ref") == "#":
            known = top | set(definition["allOf"][0]["properties"])
            unknown += [f"{key}.{k}" for k in value if k not in known]
    for name in ("packageRules", "customManagers"):
        for i, item in enumerate(config.get(name, [])):
            unknown += [f"{name}[{i}].{k}" for k in item if k not in item_options(name)]
    return unknown


def test_renovate_config_matches_renovates_schema(tmp_path):
    code, output = check_jsonschema(CONFIG, tmp_path)
    assert code == 0, output


def test_renovate_config_names_only_options_renovate_knows():
    assert unknown_options(CONFIG, renovate_schema()) == []


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param(lambda c: c.update(pinDigests="yes"), id="a string for a boolean"),
        pytest.param(lambda c: c.update(pinDigest=True), id="an unknown option"),
        pytest.param(
            lambda c: c.update(packageRules={"enabled": False}), id="an object for a list"
        ),
        pytest.param(
            lambda c: c["customManagers"][0].update(customType="regexp"), id="no such value"
        ),
    ],
)
def test_the_schema_check_reports_a_planted_defect(tmp_path, plant):
    config = copy.deepcopy(CONFIG)
    plant(config)
    code, output = check_jsonschema(config, tmp_path)
    assert code != 0, output
    assert "Schema validation errors" in output


def test_the_option_check_reports_a_planted_defect(tmp_path):
    """Misspellings that the schema lets pass: a manager's name at the top (any unknown key
    whose value is an object passes, as a manager's would), an option in a manager's object,
    an option in a rule."""
    config = copy.deepcopy(CONFIG)
    config["pip_compile"] = {"managerFilePatterns": ["/x/"]}
    config["pip-compile"]["managerFilePattern"] = ["/x/"]
    config["packageRules"][0]["matchPackageName"] = ["x"]
    assert check_jsonschema(config, tmp_path)[0] == 0
    assert unknown_options(config, renovate_schema()) == [
        "pip_compile",
        "pip-compile.managerFilePattern",
        "packageRules[0].matchPackageName",
    ]


# The files Renovate is about


def test_every_lock_is_renovates():
    locks = {f for f in FILES if any(glob(pattern).fullmatch(f) for pattern in LOCKS)}
    assert locks >= NAMED_LOCKS, NAMED_LOCKS - locks
    assert set(manager_files("pip-compile")) == locks


def test_every_image_is_renovates():
    """The images of the lessons (kubernetes), of kustomize/ (its images: list), of compose,
    the Dockerfile's base and kind's node: each file that names one is some manager's."""
    assert "Dockerfile" in manager_files("dockerfile")
    assert "docker-compose.yml" in manager_files("docker-compose")
    assert "kustomize/base/kustomization.yaml" in manager_files("kustomize")
    with_images = {
        f
        for f in FILES
        if f.startswith(("k8s/", "tests/e2e/"))
        and f.endswith((".yaml", ".yml"))
        and re.search(r"^\s*-?\s*image:\s*\S", (ROOT / f).read_text(), re.MULTILINE)
    }
    assert "tests/e2e/kind-config.yaml" in with_images
    assert with_images <= set(manager_files("kubernetes")), with_images - set(
        manager_files("kubernetes")
    )


def test_every_workflow_is_renovates():
    workflows = {f for f in FILES if f.startswith(".github/workflows/")}
    assert workflows and workflows <= set(manager_files("github-actions"))


def test_every_pattern_finds_a_file():
    """A pattern that finds nothing is a file renamed away from Renovate."""
    patterns = [
        p for m in CONFIG.values() if isinstance(m, dict) for p in m.get("managerFilePatterns", [])
    ]
    patterns += [p for c in CONFIG["customManagers"] for p in c["managerFilePatterns"]]
    assert patterns
    assert [p for p in patterns if not matched([p])] == []


def custom_dependencies(manager: dict) -> list[dict]:
    found = []
    for path in matched(manager["managerFilePatterns"]):
        text = (ROOT / path).read_text()
        for pattern in manager["matchStrings"]:
            found += [m.groupdict() | {"file": path} for m in regex(f"/{pattern}/").finditer(text)]
    return found


def compose_manager(compose_file: str = "docker-compose.yml") -> dict:
    """The custom manager of a compose file's base image build argument (PYTHON_IMAGE;
    docker-compose.pypy.yml's PYPY_IMAGE)."""
    (manager,) = [
        c for c in CONFIG["customManagers"] if compose_file in matched(c["managerFilePatterns"])
    ]
    return manager


@pytest.mark.parametrize(
    "manager", CONFIG["customManagers"], ids=[c["description"] for c in CONFIG["customManagers"]]
)
def test_every_custom_manager_finds_its_dependency(manager):
    """Each regular expression finds what it is written for, with a name and a version; a file
    reworded (PYTHON_IMAGE renamed, kind installed another way) and Renovate would stop
    updating it without a word."""
    found = custom_dependencies(manager)
    assert found, manager["description"]
    assert all(d["depName"] and d["currentValue"] for d in found), found


@pytest.mark.parametrize(
    "arg, compose_file",
    [("PYTHON_IMAGE", "docker-compose.yml"), ("PYPY_IMAGE", "docker-compose.pypy.yml")],
)
def test_compose_builds_from_the_dockerfiles_base(arg, compose_file):
    """The base image groups move the Dockerfile's ARG and compose's default together: from
    the same image, else compose builds from another base."""
    dockerfile = re.search(rf"^ARG {arg}=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    (compose,) = custom_dependencies(compose_manager(compose_file))
    image = f"{compose['depName']}:{compose['currentValue']}"
    if compose["currentDigest"]:
        image += f"@{compose['currentDigest']}"
    assert dockerfile and dockerfile[1] == image


def test_the_custom_manager_check_reports_a_planted_defect():
    manager = copy.deepcopy(compose_manager())
    manager["matchStrings"] = [
        p.replace("PYTHON_IMAGE", "BASE_IMAGE") for p in manager["matchStrings"]
    ]
    assert custom_dependencies(manager) == []


def test_the_file_checks_report_a_planted_defect():
    """A lesson the kubernetes patterns no longer reach, a lock left out, a pattern that finds
    nothing."""
    config = copy.deepcopy(CONFIG)
    config["kubernetes"]["managerFilePatterns"] = ["/^k8s/0[1-5][^/]*/.+\\.ya?ml$/"]
    config["pip-compile"]["managerFilePatterns"] = ["/^requirements/[^/]+\\.txt$/"]
    assert "k8s/08-deployments/2-data-tier.yaml" not in manager_files("kubernetes", config)
    assert "tools/lint/lint.txt" not in manager_files("pip-compile", config)
    assert not matched(["/^requirement/[^/]+\\.txt$/"])
    config = copy.deepcopy(CONFIG)
    config["ignorePaths"].append("**/tests/**")  # as config:recommended has it
    assert "tests/e2e/kind-config.yaml" in manager_files("kubernetes")
    assert "tests/e2e/kind-config.yaml" not in manager_files("kubernetes", config)


# Locks that Renovate can compile again


def header_problems(path: str, text: str) -> list[str]:
    header = HEADER.match(text)
    if not header:
        return [f"{path}: no header with the command that made it (uv: leave out --no-header)"]
    argv = shlex.split(header["command"] + (header["arguments"] or ""))
    if argv[:3] == ["uv", "pip", "compile"]:
        kind, arguments = "uv", argv[3:]
    elif argv[:1] == ["pip-compile"]:
        kind, arguments = "pip-compile", argv[1:]
    else:
        return [f"{path}: made by {' '.join(argv)!r}, not uv pip compile or pip-compile"]
    problems, sources, output = [], [], None
    for argument in arguments:
        option, equals, value = argument.partition("=")
        if not argument.startswith("-"):
            sources.append(argument)
        elif option in VALUE_OPTIONS[kind] and equals:
            output = value if option == "--output-file" else output
        elif option in VALUE_OPTIONS[kind]:
            problems.append(f"{path}: {option} takes its value after '=' ({option}=...)")
        elif option not in FLAGS[kind]:
            problems.append(f"{path}: Renovate does not run {kind} with {argument}")
    if output != path:
        problems.append(f"{path}: --output-file={output}, not --output-file={path}")
    problems += [f"{path}: source {s} is missing" for s in sources if not (ROOT / s).is_file()]
    return problems + ([] if sources else [f"{path}: no source file named"])


def test_every_lock_carries_a_command_renovate_runs_again():
    problems = [
        p for f in manager_files("pip-compile") for p in header_problems(f, (ROOT / f).read_text())
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("", "no header"),
        ("#    make lock\n", "not uv pip compile"),
        ("#    uv pip compile -o x.txt pyproject.toml\n", "does not run uv with -o"),
        ("#    uv pip compile --extra dev --output-file=x.txt pyproject.toml\n", "after '='"),
        ("#    uv pip compile --output-file=y.txt pyproject.toml\n", "not --output-file=x.txt"),
        ("#    uv pip compile --output-file=x.txt nowhere.in\n", "nowhere.in is missing"),
    ],
)
def test_the_header_check_reports_a_planted_defect(header, problem):
    text = f"# This file was autogenerated by uv via the following command:\n{header}a==1\n"
    if not header:
        text = "a==1\n"
    problems = header_problems("x.txt", text)
    assert any(problem in p for p in problems), problems


def unlocked(source: str, lock: str) -> list[str]:
    """The pins of a source that its lock does not hold at that version."""
    pins = re.findall(r"^([\w.-]+==\S+)", source, re.MULTILINE)
    assert pins
    return [pin for pin in pins if not re.search(rf"^{re.escape(pin)} ", lock, re.MULTILINE)]


def test_the_tool_locks_pin_what_their_sources_pin():
    """tools/lint/*.in changed without `make lint-lock`: the environment would not have it."""
    for source in sorted((ROOT / "tools/lint").glob("*.in")):
        assert unlocked(source.read_text(), source.with_suffix(".txt").read_text()) == [], source


def test_the_tool_lock_check_reports_a_planted_defect():
    source = (ROOT / "tools/lint/lint.in").read_text()
    moved_on = re.sub(r"^checkov==\S+", "checkov==99.0.0", source, flags=re.MULTILINE)
    assert unlocked(moved_on, (ROOT / "tools/lint/lint.txt").read_text()) == ["checkov==99.0.0"]
