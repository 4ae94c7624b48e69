"""The poller's OUTPUT_FILE (what the sidecar of k8s/15-sidecar ships) with a real server and
Redis: one line per count, appended, rotated past OUTPUT_MAX_BYTES, a bad path refused at start,
a failing write survived; and the lesson's own log-shipping command following the file."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading

import pytest
import requests

from tests.manifests.render import lesson_objects
from tests.support import Server, Service, wait_for

LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ Current counter: (\d+)")


@pytest.fixture
def server(redis_url):
    server = Server(redis_url).wait_ready()
    yield server
    server.kill()


@pytest.fixture
def poller(server):
    """poller(**env): the real poller against the real server, every 0.05 s."""
    started: list[Service] = []

    def start(**env: str) -> Service:
        settings = {"API_URL": server.url, "INTERVAL": "0.05", "LOG_FORMAT": "json"}
        started.append(Service("microservices-poller", settings | env))
        return started[-1]

    yield start
    for service in started:
        service.kill()


def counts_in(text: str) -> list[int]:
    lines = text.splitlines()
    assert all(LINE.fullmatch(line) for line in lines), lines
    return [int(LINE.fullmatch(line)[1]) for line in lines]


def test_each_count_is_appended_as_a_line(server, poller, tmp_path):
    output = tmp_path / "counts.log"
    output.write_text("2026-01-01T00:00:00Z Current counter: 0\n")  # kept: appended to
    requests.post(server.url + "/", json={"increment": 7}, timeout=5)
    running = poller(OUTPUT_FILE=str(output))
    wait_for(lambda: len(output.read_text().splitlines()) >= 6, what="five lines appended")
    assert running.stop() == 0
    written = counts_in(output.read_text())
    assert written[0] == 0 and set(written[1:]) == {7}
    assert written[1:] == [e["count"] for e in running.events("count")], "one line per count"


def test_the_file_is_rotated_past_its_bound(poller, tmp_path):
    output = tmp_path / "counts.log"
    running = poller(OUTPUT_FILE=str(output), OUTPUT_MAX_BYTES="1024", INTERVAL="0.01")
    rotated = tmp_path / "counts.log.1"
    wait_for(rotated.exists, 30, what="the first rotation")
    first = rotated.read_text()
    wait_for(lambda: rotated.read_text() != first, 30, what="the second rotation")
    assert running.stop() == 0
    for path in (output, rotated):
        assert path.stat().st_size <= 1024
        counts_in(path.read_text())  # whole lines only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.log", "counts.log.1"]


def test_a_file_it_cannot_open_stops_it_at_start(poller, tmp_path):
    running = poller(OUTPUT_FILE=str(tmp_path / "missing-folder" / "counts.log"))
    assert running.wait(10) == 2
    [line] = running.lines
    assert line.startswith("configuration error: OUTPUT_FILE=")
    assert line.endswith("cannot append to it: No such file or directory")


def test_a_failing_write_is_logged_once_and_the_loop_goes_on(poller, tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    running = poller(OUTPUT_FILE=str(folder / "counts.log"))
    wait_for(lambda: (folder / "counts.log").exists(), what="the file")
    shutil.rmtree(folder)
    wait_for(lambda: running.events("output_failed"), what="the failure logged")
    seen = len(running.events("count"))
    wait_for(lambda: len(running.events("count")) > seen + 5, what="polling to go on")
    assert len(running.events("output_failed")) == 1
    folder.mkdir()
    wait_for(lambda: running.events("output_resumed"), what="writing again")
    wait_for(lambda: (folder / "counts.log").read_text(), what="lines in the new file")
    assert running.proc.poll() is None


def lesson_containers() -> dict[str, dict]:
    """The containers (init ones too) of k8s/15-sidecar's support tier, by name."""
    [pod] = [
        o["spec"]["template"]["spec"]
        for o in lesson_objects("15-sidecar")
        if o["metadata"]["name"] == "support-tier"
    ]
    return {c["name"]: c for c in pod["containers"] + pod["initContainers"]}


def test_the_lessons_shipper_follows_the_pollers_file_and_stops_on_sigterm(poller, tmp_path):
    """The sidecar's own command (from the lesson) and the poller's OUTPUT_FILE, with their
    shared folder moved to a test path: the shipper prints every line the poller writes,
    those written before it started too, and exits 0 at once on SIGTERM (as PID 1 in its
    container it would otherwise ignore it, and hold the pod's deletion for the grace period)."""
    containers = lesson_containers()
    shipper, writer = containers["log-shipper"], containers["poller"]
    [folder] = [m["mountPath"] for m in shipper["volumeMounts"]]
    [output] = [e["value"] for e in writer["env"] if e["name"] == "OUTPUT_FILE"]
    running = poller(OUTPUT_FILE=output.replace(folder, str(tmp_path)))
    wait_for(lambda: running.events("count"), what="a first count")
    command = [part.replace(folder, str(tmp_path)) for part in shipper["command"] + shipper["args"]]
    shipped: list[str] = []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    reader = threading.Thread(target=lambda: shipped.extend(process.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: len(running.events("count")) >= 10, what="more counts")
        assert running.stop() == 0
        counts = [e["count"] for e in running.events("count")]
        wait_for(lambda: len(shipped) == len(counts), what=f"{len(counts)} lines shipped")
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
    finally:
        process.kill()
    reader.join(5)
    assert counts_in("".join(shipped)) == counts
