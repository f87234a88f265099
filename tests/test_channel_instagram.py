"""The Instagram channel against a local server that checks requests as the Graph API documents."""

import json
import socket
from dataclasses import replace

import pytest
from courtship_instagram import InstagramChannel

from courtship.channels import ChannelConfigError
from courtship.testing import ChannelContract, HTTPPeer, PeerResponse, sample_message

IG_USER_ID = "17841400000000001"
IGSID = "6543210987654321"
TOKEN = "IGQWR-instagram-user-access-token"
PATH = f"/v25.0/{IG_USER_ID}/messages"


def graph_error(status, code, message, subcode=None, kind="OAuthException"):
    """An error document shaped as the Graph API answers it."""
    error = {"message": message, "type": kind, "code": code, "fbtrace_id": "AbCdEfGhIjK"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return PeerResponse(status, {"error": error})


class FakeGraph:
    """Answers ``POST /{version}/{ig_user_id}/messages`` like the Graph API does."""

    def __init__(self):
        self.answer = None
        self.accepted = []
        self.path = PATH

    def __call__(self, request):
        if request.method != "POST" or request.path != self.path:
            return graph_error(400, 100, "Unsupported post request.", kind="GraphMethodException")
        if request.header("Authorization") != f"Bearer {TOKEN}":
            return graph_error(400, 190, "Invalid OAuth access token - Cannot parse access token")
        assert request.header("Content-Type") == "application/json"
        body = request.json()
        if set(body) != {"recipient", "message"} or set(body["recipient"]) != {"id"}:
            return graph_error(400, 100, "(#100) Invalid parameter")
        assert set(body["message"]) == {"text"}
        if self.answer is not None:
            return self.answer
        self.accepted.append(body)
        return PeerResponse(
            200,
            {"recipient_id": body["recipient"]["id"], "message_id": f"aWdfZ{len(self.accepted)}"},
        )


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("COURTSHIP_TEST_IG_TOKEN", TOKEN)


@pytest.fixture
def fake():
    return FakeGraph()


@pytest.fixture
def peer(fake):
    with HTTPPeer(fake) as running:
        yield running


def make(base_url, **extra):
    return InstagramChannel(
        {
            "ig_user_id": IG_USER_ID,
            "access_token_env": "COURTSHIP_TEST_IG_TOKEN",
            "base_url": base_url,
            "timeout": 2,
            **extra,
        }
    )


def closed_port_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.usefixtures("token")
class TestInstagramChannel(ChannelContract):
    @pytest.fixture
    def channel(self, peer):
        channel = make(peer.url)
        yield channel
        channel.close()

    @pytest.fixture
    def message(self):
        return sample_message(
            channel="instagram",
            to=IGSID,
            text="Hi Ada! Yes, it comes in green.",
            hours_since_last_inbound=3.5,
        )

    @pytest.fixture
    def received(self, fake):
        return lambda: fake.accepted

    @pytest.fixture
    def unreachable_channel(self):
        return make(closed_port_url())

    @pytest.fixture
    def secrets(self):
        return [TOKEN]

    def test_posts_the_documented_json(self, channel, message, peer, fake):
        delivery = channel.send(message)
        assert (delivery.status, delivery.provider_id) == ("delivered", "aWdfZ1")
        (request,) = peer.requests
        assert request.path == PATH
        assert request.json() == {"recipient": {"id": IGSID}, "message": {"text": message.text}}

    @pytest.mark.parametrize("hours", [None, 24.01, 100.0])
    def test_outside_the_window_check_refuses(self, channel, message, fake, hours):
        late = replace(message, hours_since_last_inbound=hours)
        assert channel.check(late) == "outside the 24-hour messaging window"
        assert channel.send(late).status == "failed"
        assert fake.accepted == []

    def test_the_window_includes_24_hours(self, channel, message):
        assert channel.check(replace(message, hours_since_last_inbound=24.0)) is None

    def test_text_is_limited_to_1000_bytes_of_utf8(self, channel, message):
        assert channel.check(replace(message, text="a" * 1000)) is None
        assert channel.check(replace(message, text="é" * 500)) is None  # 1000 bytes
        assert channel.check(replace(message, text="é" * 501)) == (
            "the text is 1002 bytes of UTF-8; Instagram takes at most 1000"
        )

    @pytest.mark.parametrize(
        ("code", "text"),
        [
            (4, "(#4) Application request limit reached"),
            (17, "(#17) User request limit reached"),
            (32, "(#32) Page request limit reached"),
            (613, "(#613) Calls to this api have exceeded the rate limit."),
        ],
    )
    def test_rate_limits_are_retries(self, channel, message, fake, code, text):
        fake.answer = graph_error(400, code, text)
        delivery = channel.send(message)
        assert delivery.status == "retry"
        assert delivery.reason == f"Instagram error {code}: {text} (HTTP 400)"

    def test_other_graph_errors_fail(self, channel, message, fake):
        fake.answer = graph_error(
            400, 10, "(#10) This message is sent outside of allowed window.", subcode=2534022
        )
        delivery = channel.send(message)
        assert delivery.status == "failed"
        assert delivery.reason == (
            "Instagram error 10/2534022: (#10) This message is sent outside of allowed window. "
            "(HTTP 400)"
        )

    def test_an_invalid_token_fails_without_showing_it(self, peer, message, monkeypatch):
        monkeypatch.setenv("COURTSHIP_TEST_IG_TOKEN", "a-wrong-token")
        delivery = make(peer.url).send(message)
        assert delivery.status == "failed"
        assert delivery.reason.startswith("Instagram error 190:")
        assert "a-wrong-token" not in delivery.reason

    def test_5xx_is_a_retry(self, channel, message, fake):
        fake.answer = graph_error(500, 2, "An unexpected error has occurred.")
        assert channel.send(message).status == "retry"
        fake.answer = PeerResponse(503, "Service Unavailable", {"Retry-After": "30"})
        delivery = channel.send(message)
        assert (delivery.status, delivery.retry_after) == ("retry", 30.0)

    def test_malformed_json_is_a_retry(self, channel, message, fake):
        fake.answer = PeerResponse(200, '{"recipient_id": "1", ', {"Content-Type": "text/json"})
        delivery = channel.send(message)
        assert delivery.status == "retry"
        assert (
            delivery.reason == "Instagram answered HTTP 200 with a body that is not a JSON object"
        )

    @staticmethod
    def throttled(headers, code=4, status=400):
        error = {
            "message": "(#4) Application request limit reached",
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "Ab",
        }
        return PeerResponse(status, {"error": error}, headers)

    def test_business_use_case_usage_says_when_to_retry(self, channel, message, fake):
        usage = {
            "17841400000000001": [
                {
                    "type": "instagram",
                    "call_count": 100,
                    "total_cputime": 12,
                    "total_time": 9,
                    "estimated_time_to_regain_access": 7,
                },
                {"type": "messenger", "call_count": 40, "estimated_time_to_regain_access": 0},
            ]
        }
        fake.answer = self.throttled({"X-Business-Use-Case-Usage": json.dumps(usage)})
        delivery = channel.send(message)
        assert (delivery.status, delivery.retry_after) == ("retry", 7 * 60.0)

    def test_app_usage_and_retry_after_the_longest_wins(self, channel, message, fake):
        usage = {"call_count": 100, "total_time": 30, "estimated_time_to_regain_access": 1}
        fake.answer = self.throttled({"X-App-Usage": json.dumps(usage), "Retry-After": "90"})
        assert channel.send(message).retry_after == 90.0
        fake.answer = self.throttled({"X-App-Usage": json.dumps(usage), "Retry-After": "10"})
        assert channel.send(message).retry_after == 60.0

    def test_a_throttling_estimate_makes_any_error_a_retry(self, channel, message, fake):
        usage = {"1": [{"type": "instagram", "estimated_time_to_regain_access": 3}]}
        fake.answer = self.throttled({"X-Business-Use-Case-Usage": json.dumps(usage)}, 80002)
        assert channel.send(message).status == "retry"
        fake.answer = self.throttled({"X-Business-Use-Case-Usage": json.dumps(usage)}, 100)
        assert channel.send(message).status == "retry"

    @pytest.mark.parametrize(
        "header",
        [
            "not json",
            "[]",
            '{"1": [{"estimated_time_to_regain_access": "soon"}]}',
            '{"estimated_time_to_regain_access": -5}',
            "1e999",
        ],
    )
    def test_an_unreadable_usage_header_is_ignored(self, channel, message, fake, header):
        fake.answer = self.throttled({"X-Business-Use-Case-Usage": header})
        delivery = channel.send(message)
        assert (delivery.status, delivery.retry_after) == ("retry", None)

    def test_usage_headers_on_success_change_nothing(self, channel, message, fake):
        usage = {"1": [{"type": "instagram", "estimated_time_to_regain_access": 0}]}
        fake.answer = PeerResponse(
            200,
            {"recipient_id": IGSID, "message_id": "m1"},
            {"X-Business-Use-Case-Usage": json.dumps(usage)},
        )
        assert channel.send(message).status == "delivered"

    def test_a_slow_answer_times_out_into_a_retry(self, peer, fake, message):
        fake.answer = PeerResponse(200, {"message_id": "late"}, delay=0.5)
        delivery = make(peer.url, timeout=0.2).send(message)
        assert delivery.status == "retry"
        assert delivery.reason == "Instagram did not answer within 0.2 s"


class TestSettings:
    def test_a_missing_token_variable_names_setting_and_variable(self, monkeypatch):
        monkeypatch.delenv("NO_SUCH_IG_TOKEN", raising=False)
        with pytest.raises(ChannelConfigError) as error:
            make("http://127.0.0.1", access_token_env="NO_SUCH_IG_TOKEN")
        assert "access_token_env" in str(error.value)
        assert "NO_SUCH_IG_TOKEN" in str(error.value)

    def test_defaults(self, token):
        channel = InstagramChannel(
            {"ig_user_id": IG_USER_ID, "access_token_env": "COURTSHIP_TEST_IG_TOKEN"}
        )
        assert channel.base_url == "https://graph.instagram.com"
        assert channel.path == PATH
        channel.close()
        assert channel.version == "v25.0"

    def test_api_version_is_a_setting(self, token, peer, fake):
        fake.path = f"/v23.0/{IG_USER_ID}/messages"
        channel = make(peer.url, api_version="v23.0")
        message = sample_message(channel="instagram", to=IGSID, hours_since_last_inbound=1.0)
        assert channel.send(message).status == "delivered"
        assert peer.requests[0].path == fake.path
        channel.close()
        assert make(peer.url, version="v22.0").path.startswith("/v22.0/")  # its first name

    @pytest.mark.parametrize("version", ["21.0", "v21", "v21.0/", "latest", "v21.0.1"])
    def test_a_malformed_api_version_is_refused(self, token, version):
        with pytest.raises(ChannelConfigError, match="setting 'api_version' must be"):
            make("http://127.0.0.1", api_version=version)

    @pytest.mark.parametrize(
        ("token", "words"),
        [
            ("IGQ-token-0123\r\n", "holds a line break at character 15"),
            ("IGQ-tökén-0123", "character outside ASCII at character 6"),
        ],
    )
    def test_a_token_that_cannot_travel_in_a_header_is_refused(self, monkeypatch, token, words):
        monkeypatch.setenv("COURTSHIP_TEST_IG_TOKEN", token)
        with pytest.raises(ChannelConfigError) as error:
            make("http://127.0.0.1")
        assert "COURTSHIP_TEST_IG_TOKEN" in str(error.value) and words in str(error.value)
        assert token.strip() not in str(error.value) and "tökén" not in str(error.value)
