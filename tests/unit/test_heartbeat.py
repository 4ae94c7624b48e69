import os
import time

from microservices_common.heartbeat import Heartbeat, main


def test_fresh_file_is_alive(tmp_path):
    path = tmp_path / "hb"
    Heartbeat(str(path)).beat()
    assert main(["--file", str(path), "--max-age", "30"]) == 0


def test_stale_or_missing_file_is_dead(tmp_path, capsys):
    path = tmp_path / "hb"
    assert main(["--file", str(path)]) == 1
    Heartbeat(str(path)).beat()
    old = time.time() - 120
    os.utime(path, (old, old))
    assert main(["--file", str(path), "--max-age", "30"]) == 1
    assert "old" in capsys.readouterr().err


def test_unwritable_heartbeat_does_not_raise(tmp_path):
    Heartbeat(str(tmp_path / "missing-dir" / "hb")).beat()
