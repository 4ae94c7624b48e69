"""The README's command blocks, read as a user would copy them, and checked against the
answers its comments promise. Used by tests/integration/test_readme.py (without containers)
and tests/e2e/test_readme.py (the compose stack)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def block_after(marker: str) -> list[str]:
    """The lines of the first ```sh block after the line starting with `marker`."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(marker))
    opening = next(i for i in range(start, len(lines)) if lines[i].startswith("```sh"))
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith("```"))
    return lines[opening + 1 : closing]


def split_comment(line: str) -> tuple[str, str]:
    """('command', 'comment') of a line `command   # comment` (a # inside quotes stays)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and line[index - 1 : index].isspace():
            return line[:index].rstrip(), line[index + 1 :].strip()
    return line.rstrip(), ""


def expected_pattern(comment: str) -> re.Pattern:
    """A comment like `{"count": N}  HTTP 200` as a pattern: N any count, ... anything."""
    parts = re.split(r"(\bN\b|\.\.\.)", comment)
    regex = "".join(
        r"-?\d+" if part == "N" else ".*" if part == "..." else re.escape(part) for part in parts
    )
    return re.compile(regex, re.DOTALL)


def run_try_it(base_url: str, api_key: str, marker: str = "Try it") -> list[tuple[str, str]]:
    """Run the "Try it" block (or the one after `marker`) line by line against `base_url` (in
    place of localhost:8080) with `api_key` (in place of dev-api-key); check each answer
    against its comment. Returns (command, output) pairs."""
    lines = block_after(marker)
    prelude, commands = lines[0], lines[1:]
    assert prelude.startswith("api() {"), "the block starts by defining api"
    host = base_url.removeprefix("http://")
    results: list[tuple[str, str]] = []
    for line in commands:
        command, comment = split_comment(line)
        command = command.replace("localhost:8080", host).replace("dev-api-key", api_key)
        output = subprocess.run(
            ["bash", "-c", f"{prelude}\n{command}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        output = " ".join(output.split())  # the status is on a line of its own
        if comment.startswith("the same answer again"):
            assert output == results[-1][1], (line, output)
        else:
            assert expected_pattern(comment).fullmatch(output), (line, comment, output)
            body = output.split(" HTTP ")[0]
            if body.startswith("{"):
                json.loads(body)  # the body is JSON, whatever the comment elides
        results.append((command, output))
    return results
