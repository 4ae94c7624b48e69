"""scripts/build-wheels' lock, written alone (--lock-only, no container): the server's lock with
each built wheel's hash added, its first line the sha256 of the lock it was made from, which
the Dockerfile's server-pypy stage checks against requirements/server.txt. A wheel missing is
an error, and nothing is written."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

from tests.support import ROOT

LOCK = ROOT / "requirements/server.txt"
GEVENT = re.search(r"^gevent==(\S+)", LOCK.read_text(), re.MULTILINE).group(1)


def lock_only(dest) -> subprocess.CompletedProcess:
    script = ROOT / "scripts/build-wheels"
    argv = [sys.executable, script, "--lock-only", "no-image", "pypy3", LOCK, dest, "gevent"]
    return subprocess.run(argv, capture_output=True, text=True)


def test_the_lock_names_the_sha256_of_its_source_and_adds_the_built_wheels_hash(tmp_path):
    wheel = b"a wheel built here"
    (tmp_path / f"gevent-{GEVENT}-pp311-pypy311_pp73-linux_x86_64.whl").write_bytes(wheel)
    assert lock_only(tmp_path).returncode == 0
    first, rest = (tmp_path / "server.txt").read_text().split("\n", 1)
    assert first == f"# scripts/build-wheels, from the lock of sha256:{sha256(LOCK.read_bytes())}"
    added = f"    --hash=sha256:{sha256(wheel)} \\\n"
    assert rest.count(added) == 1 and rest.replace(added, "") == LOCK.read_text()
    assert rest.index(f"gevent=={GEVENT}") < rest.index(added)


def test_without_the_wheel_it_fails_naming_it_and_writes_nothing(tmp_path):
    done = lock_only(tmp_path)
    assert done.returncode != 0 and f"no wheel of gevent=={GEVENT}" in done.stderr
    assert list(tmp_path.iterdir()) == []


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
