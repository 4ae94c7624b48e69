"""An image's own files on this machine, to run what it ships as a plain child process.

`docker run` puts the docker client between us and the service: a signal the tests send, or a
CPU second the benchmark counts, would be the client's. A chroot of the image's exported root
filesystem runs exactly the image's interpreter and /opt/venv, as the image's user, but as our
child, in our network and process namespaces: loopback, pids, signals and /proc work as for any
process. Used by the benchmark (scripts/benchmark, each image a row) and by the tests that run
the server of another image (tests/support.Server with SERVER_IMAGE). Needs root and Docker.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

ROOTS = Path(tempfile.gettempdir()) / "microservices-image-roots"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
# Mounted inside each root: /proc for the interpreter and gunicorn, /dev for /dev/null,
# /dev/urandom and /dev/shm.
MOUNTS = (("proc", ["-t", "proc", "proc"]), ("dev", ["--rbind", "/dev"]))


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _mounted(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)]).returncode == 0


@cache
def image_config(image: str) -> dict:
    """The image's configuration (its User, WorkingDir, Env, Entrypoint...), read once a
    process: the images are built before they are run."""
    return json.loads(_docker("image", "inspect", image))[0]["Config"]


def image_env(image: str) -> dict[str, str]:
    """The environment the image gives its entrypoint, as `docker run` sets it: its ENV (its
    PATH, PYPY_GC_MAX...), and HOME "/" for a user without a home."""
    return {"HOME": "/", **dict(item.split("=", 1) for item in image_config(image)["Env"] or [])}


def image_root(image: str) -> Path:
    """The root filesystem of `image` (as built now: one folder per image id), exported once,
    /proc and /dev mounted in it."""
    inspect = json.loads(_docker("image", "inspect", image))[0]
    root = ROOTS / inspect["Id"].removeprefix("sha256:")[:16]
    ROOTS.mkdir(parents=True, exist_ok=True)
    with (ROOTS / ".lock").open("w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)  # one export at a time, across processes
        if not (root / ".exported").exists():
            _unmount(root)
            subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)
            root.mkdir()
            container = _docker("create", image)
            try:
                export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
                subprocess.run(["tar", "-C", str(root), "-x"], stdin=export.stdout, check=True)
                if export.wait() != 0:
                    raise RuntimeError(f"docker export of {image} failed")
            finally:
                _docker("rm", container)
            (root / ".exported").write_text(image + "\n")
            _remove_stale_roots()
        # Docker writes /etc/hosts into every container; an exported root has it empty, and
        # "localhost" would not resolve.
        (root / "etc/hosts").write_text(HOSTS)
        for name, how in MOUNTS:
            target = root / name
            target.mkdir(exist_ok=True)
            if not _mounted(target):
                subprocess.run(["mount", *how, str(target)], check=True)
    return root


def _unmount(root: Path) -> None:
    for name, _ in MOUNTS:
        if _mounted(root / name):
            subprocess.run(["umount", "-R", "-l", str(root / name)], check=True)


def _remove_stale_roots() -> None:
    """The roots of images that no longer exist (rebuilt since): each is a whole image."""
    present = {line.removeprefix("sha256:")[:16] for line in
               _docker("image", "ls", "-q", "--no-trunc").split()}  # fmt: skip
    for root in ROOTS.iterdir():
        if root.is_dir() and root.name not in present:
            _unmount(root)
            subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)


def in_image(image: str, argv: list[str]) -> list[str]:
    """argv run inside `image`'s root filesystem as its USER (and that group as its only
    supplementary group, as Docker does), from its WORKDIR: a command line for Popen, chroot
    named by its path (the environment given to Popen is often the image's, whose PATH is for
    inside the root)."""
    config = image_config(image)
    user = config.get("User") or "0:0"
    group = user.partition(":")[2] or "0"
    workdir = ["/usr/bin/env", f"--chdir={config['WorkingDir']}"] if config["WorkingDir"] else []
    root = str(image_root(image))
    return [CHROOT, f"--userspec={user}", f"--groups={group}", root, *workdir, *argv]
