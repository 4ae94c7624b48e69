"""Fixtures: a real Redis in a container (testcontainers) and apps built on it.

testcontainers' reaper (Ryuk) needs an image no registry gives us here, so the Makefile turns
it off (TESTCONTAINERS_RYUK_DISABLED=true) and every fixture stops what it starts.
"""

from __future__ import annotations

import pytest
import redis
from microservices_server.app import create_app
from microservices_server.settings import Settings
from microservices_server.store import CounterStore
from testcontainers.community.redis import RedisContainer

from tests.manifests.render import OVERLAYS, copy_with_prod_secrets, kustomize
from tests.support import REDIS_IMAGE, free_port

API_KEY = "test-key"


def redis_url_of(container: RedisContainer) -> str:
    host = container.get_container_host_ip()
    return f"redis://{host}:{container.get_exposed_port(6379)}/0"


@pytest.fixture(scope="session")
def redis_container():
    with RedisContainer(REDIS_IMAGE) as container:
        yield container


@pytest.fixture
def redis_url(redis_container) -> str:
    """A real Redis, emptied before each test."""
    url = redis_url_of(redis_container)
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def own_redis():
    """A Redis of the test's own, on a fixed host port so that it keeps its address when the
    test stops and starts it again (an outage)."""
    container = RedisContainer(REDIS_IMAGE).with_bind_ports(6379, free_port())
    with container:
        yield container


def make_app(redis_url: str, store: CounterStore | None = None, draining=None, **overrides):
    settings = Settings(**{"redis_url": redis_url, "api_key": API_KEY, **overrides})
    app = create_app(settings, store=store, draining=draining)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def store(redis_url):
    store = CounterStore.from_settings(Settings(redis_url=redis_url))
    yield store
    store.close()


@pytest.fixture
def app(redis_url, store):
    return make_app(redis_url, store=store)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    """Every overlay rendered by kubectl kustomize (prod with a secrets.env of its own)."""
    tree = copy_with_prod_secrets(tmp_path_factory.mktemp("rendered"))
    return {overlay: kustomize(tree / "overlays" / overlay) for overlay in OVERLAYS}
