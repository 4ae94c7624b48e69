"""Every setting of every command: a bad value stops the command at start with exit code 2
and one line naming the variable, never a traceback, never a silent default."""

import pytest

from tests.support import Service

SERVER_AND_AWAIT = [
    ("REDIS_URL", "http://data-tier:6379"),
    ("REDIS_URL", "redis://data-tier:port/0"),
    ("REDIS_URL", "redis://data-tier:6379/abc"),
    ("REDIS_URL", "redis://data-tier:6379/0?socket_timeout=abc"),
    ("REDIS_URL", "redis://data-tier:6379/0?socket_timeout=30"),
    ("REDIS_URL", "redis://data-tier:6379/0?db=x"),
    ("REDIS_URL", "redis://data-tier:6379/0?no_such_option=1"),
    ("REDIS_URL", "redis://data-tier:6379/0?socket_keepalive=maybe"),
    ("REDIS_TIMEOUT", "0"),
    ("REDIS_TIMEOUT", "soon"),
    ("MAX_INCREMENT", "0"),
    ("IDEMPOTENCY_TTL", "-5"),
    ("CLIENT_STALE_AFTER", "0"),
    ("LOG_FORMAT", "xml"),
    ("LOG_LEVEL", "loud"),
]
SERVER = [
    ("PORT", "70000"),
    ("WEB_CONCURRENCY", "many"),
    ("GUNICORN_THREADS", "0"),
    ("GUNICORN_WORKER_CLASS", "sync"),
    ("ACCESS_LOG", "some"),
    ("GUNICORN_TIMEOUT", "1.5"),
    ("GRACEFUL_TIMEOUT", "0"),
    ("DRAIN_DELAY", "-1"),
    ("BODY_TIMEOUT", "0"),
    ("PROMETHEUS_MULTIPROC_DIR", "/proc/nope"),
    ("FAULTS_ENABLED", "maybe"),
]
AWAIT = [("AWAIT_TIMEOUT", "-1"), ("AWAIT_MAX_DELAY", "0.1"), ("AWAIT_MAX_DELAY", "nan")]
WORKERS = [
    ("API_URL", "app-tier:8080"),
    ("API_URL", "ftp://app-tier"),
    ("API_URL", "http://app-tier:port"),
    ("INTERVAL", "abc"),
    ("INTERVAL", "0"),
    ("REQUEST_TIMEOUT", "inf"),
    ("REQUEST_TIMEOUT", "60"),
    ("LOG_FORMAT", "xml"),
    ("LOG_LEVEL", "loud"),
]
COUNTER = [
    ("MAX_INCREMENT", "0"),
    ("RETRY_BASE", "0"),
    ("RETRY_CAP", "x"),
    ("RETRY_DEADLINE", "0"),
]

CASES = (
    [("microservices-server", name, value) for name, value in SERVER_AND_AWAIT + SERVER]
    + [("microservices-await-redis", name, value) for name, value in SERVER_AND_AWAIT + AWAIT]
    + [("microservices-counter", name, value) for name, value in WORKERS + COUNTER]
    + [("microservices-poller", name, value) for name, value in WORKERS]
)


@pytest.mark.parametrize(("command", "name", "value"), CASES)
def test_bad_value_exits_2_naming_the_variable(command, name, value):
    service = Service(command, {name: value})
    assert service.wait(30) == 2, service.output
    assert service.output.startswith(f"configuration error: {name}="), service.output
    assert len(service.lines) == 1, service.output


def test_retry_cap_below_retry_base_names_the_cap():
    service = Service("microservices-counter", {"RETRY_BASE": "2", "RETRY_CAP": "1"})
    assert service.wait(30) == 2
    assert service.output == "configuration error: RETRY_CAP='1': must be at least RETRY_BASE (2)"


@pytest.mark.parametrize(
    "args",
    [
        ["--concurrency", "0"],
        ["--concurrency", "many"],
        ["--rate", "nan"],
        ["--rate", "inf"],
        ["--rate", "-1"],
        ["--rate", "1e-300"],
        ["--duration", "-5"],
    ],
)
def test_bad_load_mode_flags_exit_2_naming_the_flag(args):
    service = Service("microservices-counter", {}, args)
    assert service.wait(30) == 2, service.output
    assert args[0] in service.output
    assert "Traceback" not in service.output


def test_retry_base_above_the_default_cap_names_the_base():
    service = Service("microservices-counter", {"RETRY_BASE": "10"})
    assert service.wait(30) == 2
    assert service.output == "configuration error: RETRY_BASE='10': must be at most RETRY_CAP (5)"
