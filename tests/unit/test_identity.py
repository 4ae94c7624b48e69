"""The support tier's User-Agent: what the counter and the poller send, what the server
accepts (and so may show on the page), and nothing else."""

import re
from pathlib import Path

import pytest
from microservices_common import identity
from microservices_common.identity import Client

PAGE_JS = Path(identity.__file__).parents[2] / "server/microservices_server/static/page.js"


def test_workers_introduce_themselves_with_version_and_hostname(monkeypatch):
    monkeypatch.setattr(identity.socket, "gethostname", lambda: "counter-7c9f-x2kq")
    version = identity.version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)  # the installed package's
    assert identity.user_agent("counter") == f"microservices-counter/{version} (counter-7c9f-x2kq)"
    assert Client.from_user_agent(identity.user_agent("poller")) == Client(
        "poller", "counter-7c9f-x2kq", version
    )


@pytest.mark.parametrize(
    ("given", "sent"),
    [("my_laptop.local", "my_laptop.local"), ("bad host<x>", "bad-host-x-"), ("-x", "x")],
)
def test_an_odd_hostname_is_sent_in_hostname_characters(monkeypatch, given, sent):
    monkeypatch.setattr(identity.socket, "gethostname", lambda: given)
    assert identity.hostname() == sent
    assert Client.from_user_agent(identity.user_agent("counter")).host == sent


@pytest.mark.parametrize(
    ("user_agent", "client"),
    [
        ("microservices-counter", Client("counter")),  # before the page
        ("microservices-poller/1.0.0", Client("poller", "", "1.0.0")),
        ("microservices-poller/2.1.0rc1 (poller-a)", Client("poller", "poller-a", "2.1.0rc1")),
    ],
)
def test_support_tier_user_agents(user_agent, client):
    assert Client.from_user_agent(user_agent) == client
    assert Client.from_member(client.member) == client


@pytest.mark.parametrize(
    "user_agent",
    [
        None,
        "",
        "curl/8.5.0",
        "microservices-server/1.0.0 (x)",
        "microservices-counter/1.0.0 (x) extra",
        "microservices-counter/1.0.0 (<script>alert(1)</script>)",
        'microservices-counter/1.0.0 (a"b)',
        "microservices-counter/1 0 (x)",
        "microservices-counter/1.0.0 (" + "a" * 65 + ")",
    ],
)
def test_anything_else_is_no_support_tier_client(user_agent):
    assert Client.from_user_agent(user_agent) is None


@pytest.mark.parametrize("member", ["", "counter", "server x 1.0", "counter a b c"])
def test_a_record_of_another_shape_is_ignored(member):
    assert Client.from_member(member) is None


def test_the_page_script_never_parses_strings_as_html():
    script = PAGE_JS.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    assert re.search(r"\.textContent = ", script)
