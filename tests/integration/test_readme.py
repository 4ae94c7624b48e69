"""The README without containers: its commands, run as it gives them (with a real Redis of
the test's own and free ports), do what it says; and scripts/set-env, which keeps the
air-gapped settings in .env for docker compose."""

import json
import os
import re
import shlex
import subprocess

from tests.readme import ROOT, block_after, run_try_it, split_comment
from tests.support import Service, free_port, wait_for


def without_containers() -> tuple[dict[str, str], list[list[str]], list[str]]:
    """The block's exported settings, its three service commands and their comments."""
    env, services, comments = {}, [], []
    for line in block_after("### Without containers"):
        command, comment = split_comment(line)
        if command.startswith("export "):
            env.update(item.split("=", 1) for item in shlex.split(command)[1:])
        elif command.startswith(".venv/bin/microservices-"):
            services.append(shlex.split(command.removesuffix("&").strip()))
            comments.append(comment)
    return env, services, comments


def promised(comment: str) -> re.Pattern:
    """What a worker's comment says it prints ("Incremented by k, count is now N, every
    second"), as a pattern: k and N numbers."""
    parts = re.split(r"\b([kN])\b", comment.split(", every")[0])
    return re.compile("".join(r"\d+" if p in ("k", "N") else re.escape(p) for p in parts))


def test_without_containers_as_the_readme_says(redis_url):
    env, commands, comments = without_containers()
    assert env["PORT"] != "8080", "compose may hold 8080: the README uses another port"
    assert f"0.0.0.0:{env['PORT']}" in comments[0], "the README says where the server listens"
    assert [c[0] for c in commands] == [
        ".venv/bin/microservices-server",
        ".venv/bin/microservices-counter",
        ".venv/bin/microservices-poller",
    ]
    assert env["API_URL"].endswith(":" + env["PORT"]), "the workers find the server"
    port = str(free_port())  # the README's 8081 may be taken on this machine
    env.update(PORT=port, API_URL=f"http://127.0.0.1:{port}", REDIS_URL=redis_url)
    processes = [Service(c[0].removeprefix(".venv/bin/"), env, c[1:]) for c in commands]
    server, counter, poller = processes
    try:
        wait_for(lambda: promised(comments[2]).search(poller.output), 30, what=poller.output)
        wait_for(lambda: promised(comments[1]).search(counter.output), 30, what=counter.output)
        assert f"Listening at: http://0.0.0.0:{port}" in server.output
        run_try_it(env["API_URL"], env["API_KEY"])
    finally:
        for process in reversed(processes):
            assert process.stop() == 0, process.output


def load_set_env():
    namespace = {"__name__": "set_env"}
    exec(compile((ROOT / "scripts/set-env").read_text(), "set-env", "exec"), namespace)  # noqa: S102
    return namespace["set_env"]


def test_set_env_replaces_in_place_and_keeps_the_rest():
    set_env = load_set_env()
    before = "API_KEY=mine\n# PYTHON_IMAGE=old\nREDIS_PASSWORD=secret\n"
    after = set_env(
        before,
        {"PYTHON_IMAGE": "local/python:3.11", "PIP_INSTALL_FLAGS": "--no-index --find-links=/w"},
    )
    assert after == (
        "API_KEY=mine\nPYTHON_IMAGE=local/python:3.11\nREDIS_PASSWORD=secret\n"
        "PIP_INSTALL_FLAGS='--no-index --find-links=/w'\n"
    )
    assert set_env(after, {"PYTHON_IMAGE": "local/python:3.11"}) == after, "idempotent"


def test_compose_builds_from_what_set_env_wrote(tmp_path):
    """A new shell (no exported variables) still builds from the local images."""
    env_file = tmp_path / ".env"
    subprocess.run(
        [
            ROOT / "scripts/set-env",
            env_file,
            "PYTHON_IMAGE=local/python:3.11",
            "REDIS_IMAGE=local/valkey-for-test",
            "PIP_INSTALL_FLAGS=--no-index --find-links=/wheelhouse",
        ],
        check=True,
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHON_IMAGE", "REDIS_IMAGE")}
    clean.pop("PIP_INSTALL_FLAGS", None)
    config = subprocess.run(
        ["docker", "compose", "--env-file", str(env_file), "config", "--format", "json"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    services = json.loads(config)["services"]
    assert services["redis"]["image"] == "local/valkey-for-test"
    args = services["server"]["build"]["args"]
    assert args["PYTHON_IMAGE"] == "local/python:3.11"
    assert args["PIP_INSTALL_FLAGS"] == "--no-index --find-links=/wheelhouse"
