import pytest
from microservices_common.config import ConfigError, env_choice, env_float, env_int, env_url


def test_defaults_when_unset_or_empty(monkeypatch):
    monkeypatch.delenv("INTERVAL", raising=False)
    assert env_float("INTERVAL", 1.0) == 1.0
    monkeypatch.setenv("INTERVAL", "")
    assert env_float("INTERVAL", 1.0) == 1.0


@pytest.mark.parametrize("value", ["abc", "1,5", "nan", "inf", "-1"])
def test_bad_number_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("INTERVAL", value)
    with pytest.raises(ConfigError, match="INTERVAL"):
        env_float("INTERVAL", 1.0, minimum=0.01)


def test_int_range(monkeypatch):
    monkeypatch.setenv("PORT", "70000")
    with pytest.raises(ConfigError, match="at most 65535"):
        env_int("PORT", 8080, 1, 65535)
    monkeypatch.setenv("PORT", " 9090 ")
    assert env_int("PORT", 8080, 1, 65535) == 9090


@pytest.mark.parametrize(
    "url", ["http://app-tier.my-namespace:8080", "http://app-tier", "https://10.0.0.1:8443/"]
)
def test_urls_with_dotted_hosts_are_fine(monkeypatch, url):
    monkeypatch.setenv("API_URL", url)
    assert env_url("API_URL", "http://localhost", ("http", "https")) == url.rstrip("/")


@pytest.mark.parametrize("url", ["app-tier:8080", "ftp://app-tier", "http://", "http://x:port"])
def test_malformed_urls(monkeypatch, url):
    monkeypatch.setenv("API_URL", url)
    with pytest.raises(ConfigError, match="API_URL"):
        env_url("API_URL", "http://localhost", ("http", "https"))


def test_choice(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert env_choice("LOG_FORMAT", "text", ("text", "json")) == "json"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        env_choice("LOG_FORMAT", "text", ("text", "json"))
