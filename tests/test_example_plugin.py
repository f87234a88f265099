"""The example plugin of docs/plugins/example-webhook.md, tested as its author would."""

import importlib
import re
import socket
from pathlib import Path

import pytest

from courtship.channels import ChannelConfigError
from courtship.plugins import Registry, get_plugin_manager
from courtship.testing import ChannelContract, HTTPPeer, PeerResponse, sample_message

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "team-webhook-token-42"


@pytest.fixture(scope="module")
def example():
    """The example plugin's module (it is not an installed entry point: it is an example)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "plugins"))
        return importlib.import_module("courtship_webhook_example")


@pytest.fixture
def plugin_manager(example):
    """A fresh plugin manager with the example registered, unregistered afterwards."""
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(example, name="courtship_webhook_example")
    try:
        yield pm
    finally:
        pm.unregister(example)


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("TEAM_WEBHOOK_TOKEN", TOKEN)


@pytest.fixture
def peer():
    with HTTPPeer(lambda request: PeerResponse(200, "ok", {"X-Request-Id": "req-1"})) as running:
        yield running


@pytest.mark.usefixtures("token")
class TestWebhookChannel(ChannelContract):
    @pytest.fixture
    def channel(self, plugin_manager, peer):
        spec = Registry(plugin_manager).channels()["webhook"]
        assert spec.plugin == "courtship_webhook_example"
        return spec.create({"url": f"{peer.url}/hooks/team", "token_env": "TEAM_WEBHOOK_TOKEN"})

    @pytest.fixture
    def message(self):
        return sample_message(
            channel="webhook",
            to="#team",
            subject="Ada is waiting",
            text="Ada wrote 26 hours ago and nobody answered.",
        )

    @pytest.fixture
    def received(self, peer):
        return lambda: peer.requests

    @pytest.fixture
    def unreachable_channel(self, example):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return example.WebhookChannel(
            {"url": f"http://127.0.0.1:{port}/hook", "token_env": "TEAM_WEBHOOK_TOKEN"}
        )

    @pytest.fixture
    def secrets(self):
        return [TOKEN]

    def test_posts_json_with_the_key_and_the_token(self, channel, message, peer):
        delivery = channel.send(message)
        assert (delivery.status, delivery.provider_id) == ("delivered", "req-1")
        (request,) = peer.requests
        assert (request.method, request.path) == ("POST", "/hooks/team")
        assert request.header("Authorization") == f"Bearer {TOKEN}"
        assert request.header("Idempotency-Key") == message.key
        assert request.json() == {
            "text": "*Ada is waiting*\nAda wrote 26 hours ago and nobody answered.",
            "key": message.key,
            "customer_id": "c-001",
            "playbook": "welcome",
        }

    @pytest.mark.parametrize(
        ("status", "expected"), [(500, "retry"), (503, "retry"), (429, "retry"), (404, "failed")]
    )
    def test_http_errors(self, channel, message, peer, status, expected):
        peer.respond = lambda request: PeerResponse(status, "no", {"Retry-After": "3"})
        delivery = channel.send(message)
        assert delivery.status == expected
        assert delivery.reason.startswith(f"webhook answered HTTP {status}")
        assert delivery.retry_after == (3.0 if expected == "retry" else None)

    def test_a_slow_webhook_is_a_retry(self, example, message, peer):
        peer.respond = lambda request: PeerResponse(200, "late", delay=0.5)
        channel = example.WebhookChannel({"url": peer.url, "timeout": 0.2})
        assert channel.send(message).status == "retry"

    def test_the_url_must_be_http(self, example):
        with pytest.raises(ChannelConfigError, match="'url'"):
            example.WebhookChannel({"url": "ftp://example.org"})


def test_the_docs_show_the_plugin_as_it_is():
    page = (ROOT / "docs" / "plugins" / "example-webhook.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    source = (ROOT / "plugins" / "courtship_webhook_example" / "__init__.py").read_text()
    assert source in blocks
