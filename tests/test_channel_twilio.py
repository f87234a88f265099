"""The Twilio channel against a local server that checks requests as Twilio documents them."""

import base64
import socket
from dataclasses import replace

import pytest
from courtship_twilio import TwilioChannel, count_segments

from courtship.channels import ChannelConfigError
from courtship.testing import ChannelContract, HTTPPeer, PeerResponse, sample_message

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "twilio-auth-token-0123456789abcdef"
PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
TO = "+14155552671"
FROM = "+15017122661"


def twilio_error(status, code, message, headers=None):
    """An error document shaped as Twilio's REST API answers it."""
    return PeerResponse(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        headers or {},
    )


class FakeTwilio:
    """Answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` like Twilio does."""

    def __init__(self):
        self.answer = None  # a PeerResponse that overrides the normal answer
        self.accepted = []

    def __call__(self, request):
        if request.method != "POST" or request.path != PATH:
            return twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.header("Authorization") != expected:
            return twilio_error(401, 20003, "Authenticate")
        assert request.header("Content-Type") == "application/x-www-form-urlencoded"
        form = request.form()
        allowed = {"To", "From", "MessagingServiceSid", "Body", "StatusCallback"}
        assert set(form) <= allowed, f"undocumented fields: {set(form) - allowed}"
        if "To" not in form:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not ({"From", "MessagingServiceSid"} & set(form)):
            return twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' is required.")
        if not form.get("Body"):
            return twilio_error(400, 21602, "Message body is required.")
        if len(form["Body"]) > 1600:
            return twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if self.answer is not None:
            return self.answer
        sid = f"SM{len(self.accepted):032d}"
        self.accepted.append(form)
        return PeerResponse(
            201,
            {
                "sid": sid,
                "account_sid": ACCOUNT_SID,
                "to": form["To"],
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "body": form["Body"],
                "status": "queued",
                "num_segments": str(count_segments(form["Body"]).count),
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "error_code": None,
                "error_message": None,
                "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            },
        )


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("COURTSHIP_TEST_TWILIO_TOKEN", AUTH_TOKEN)


@pytest.fixture
def fake():
    return FakeTwilio()


@pytest.fixture
def peer(fake):
    with HTTPPeer(fake) as running:
        yield running


def make(base_url, **extra):
    return TwilioChannel(
        {
            "account_sid": ACCOUNT_SID,
            "auth_token_env": "COURTSHIP_TEST_TWILIO_TOKEN",
            "from": FROM,
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
class TestTwilioChannel(ChannelContract):
    @pytest.fixture
    def channel(self, peer):
        channel = make(peer.url)
        yield channel
        channel.close()

    @pytest.fixture
    def message(self):
        return sample_message(channel="sms", to=TO, text="Hi Ada, your order is on its way.")

    @pytest.fixture
    def received(self, fake):
        return lambda: fake.accepted

    @pytest.fixture
    def unreachable_channel(self):
        return make(closed_port_url())

    @pytest.fixture
    def secrets(self):
        return [AUTH_TOKEN]

    def test_posts_the_documented_form(self, channel, message, peer, fake):
        delivery = channel.send(message)
        assert (delivery.status, delivery.provider_id) == ("delivered", "SM" + "0" * 32)
        (request,) = peer.requests
        assert request.path == PATH
        assert request.form() == {"To": TO, "From": FROM, "Body": message.text}

    def test_messaging_service_and_status_callback(self, peer, fake, message):
        channel = make(
            peer.url,
            **{"from": None},
            messaging_service_sid="MG" + "1" * 32,
            status_callback="https://lotus.example.org/twilio/status",
        )
        assert channel.send(message).status == "delivered"
        assert fake.accepted == [
            {
                "To": TO,
                "MessagingServiceSid": "MG" + "1" * 32,
                "Body": message.text,
                "StatusCallback": "https://lotus.example.org/twilio/status",
            }
        ]

    @pytest.mark.parametrize(
        ("code", "text", "note"),
        [
            (21211, "The 'To' number +1555 is not a valid phone number.", "invalid 'To'"),
            (21610, "Attempt to send to unsubscribed recipient", "unsubscribed"),
            (21408, "Permission to send an SMS has not been enabled for the region", "region"),
            (21614, "'To' number is not a valid mobile number", "not a mobile number"),
        ],
    )
    def test_documented_400_errors_fail_with_code_and_message(
        self, channel, message, fake, code, text, note
    ):
        fake.answer = twilio_error(400, code, text)
        delivery = channel.send(message)
        assert delivery.status == "failed"
        assert delivery.reason.startswith(f"Twilio {code} (")
        assert note in delivery.reason
        assert text in delivery.reason

    def test_wrong_credentials_fail(self, peer, message, monkeypatch):
        monkeypatch.setenv("COURTSHIP_TEST_TWILIO_TOKEN", "not-the-token")
        delivery = make(peer.url).send(message)
        assert delivery.status == "failed"
        assert delivery.reason.startswith("Twilio 20003 (authentication failed")
        assert "not-the-token" not in delivery.reason

    def test_429_retries_after_the_servers_delay(self, channel, message, fake):
        fake.answer = twilio_error(429, 20429, "Too Many Requests", {"Retry-After": "7"})
        delivery = channel.send(message)
        assert (delivery.status, delivery.retry_after) == ("retry", 7.0)
        assert "20429" in delivery.reason

    def test_500_is_a_retry(self, channel, message, fake):
        fake.answer = twilio_error(500, 20500, "Internal Server Error")
        delivery = channel.send(message)
        assert delivery.status == "retry"
        assert delivery.reason == "Twilio 20500: Internal Server Error (HTTP 500)"

    def test_malformed_json_is_a_retry_with_a_clear_reason(self, channel, message, fake):
        fake.answer = PeerResponse(201, '{"sid": "SM1", "status":', {"Content-Type": "text/json"})
        delivery = channel.send(message)
        assert delivery.status == "retry"
        assert delivery.reason == "Twilio answered HTTP 201 with a body that is not a JSON object"

    def test_an_html_error_page_is_a_retry(self, channel, message, fake):
        fake.answer = PeerResponse(502, "<html>Bad Gateway</html>")
        assert channel.send(message).status == "retry"

    def test_a_slow_answer_times_out_into_a_retry(self, peer, fake, message):
        fake.answer = PeerResponse(201, {"sid": "SMlate"}, delay=0.5)
        delivery = make(peer.url, timeout=0.2).send(message)
        assert delivery.status == "retry"
        assert delivery.reason == "Twilio did not answer within 0.2 s"

    def test_check_refuses_too_many_segments(self, peer, message, fake):
        channel = make(peer.url, max_segments=1)
        long = replace(message, text="a" * 161)
        assert channel.check(long) == (
            "the text takes 2 SMS segments (GSM-7, 161 characters), more than max_segments 1"
        )
        assert channel.check(replace(long, max_segments=2)) is None  # the message's own limit
        assert channel.send(long).status == "failed"
        assert fake.accepted == []

    def test_check_refuses_what_is_not_e164(self, channel, message):
        assert "E.164" in channel.check(replace(message, to="0555 867 5310"))
        assert "E.164" in channel.check(replace(message, to="ada@example.org"))

    @pytest.mark.parametrize("number", ["+10000000000", "+12", "+15558675310", "+4477009001"])
    def test_check_refuses_a_number_no_country_assigns(self, channel, message, fake, number):
        assert channel.check(replace(message, to=number)).startswith(
            "the recipient is not a valid phone number"
        )
        assert channel.send(replace(message, to=number)).status == "failed"
        assert fake.accepted == []

    @pytest.mark.parametrize("number", ["+14155552671", "+447911123456", "+4915123456789"])
    def test_check_takes_valid_numbers(self, channel, message, number):
        assert channel.check(replace(message, to=number)) is None

    def test_a_body_over_1600_characters_never_reaches_twilio(self, channel, message, fake):
        assert channel.check(replace(message, text="a" * 1600)) is None
        long = replace(message, text="a" * 1601)
        assert channel.check(long) == (
            "the text is 1601 characters; Twilio takes at most 1,600 in one message"
        )
        assert channel.send(long).status == "failed"
        assert fake.accepted == []

    @pytest.mark.parametrize(
        ("code", "status", "retry_after", "note"),
        [
            (21611, 400, None, "queue holds 10 hours"),
            (14107, 400, 30.0, "30 messages between two numbers"),
            (63017, 429, None, "rate limit"),
            (60728, 400, 3600.0, "hourly message limit"),
            (63038, 400, 86400.0, "daily message limit"),
        ],
    )
    def test_codes_that_pass_with_time_are_retries(
        self, channel, message, fake, code, status, retry_after, note
    ):
        fake.answer = twilio_error(status, code, "This 'From' number has exceeded the maximum")
        delivery = channel.send(message)
        assert (delivery.status, delivery.retry_after) == ("retry", retry_after)
        assert delivery.reason.startswith(f"Twilio {code} (") and note in delivery.reason

    def test_retry_after_counts_when_longer_than_the_codes_own_wait(self, channel, message, fake):
        fake.answer = twilio_error(429, 14107, "SMS send rate limit", {"Retry-After": "45"})
        assert channel.send(message).retry_after == 45.0


class TestSegments:
    @pytest.mark.parametrize(
        ("text", "encoding", "units", "count"),
        [
            ("", "GSM-7", 0, 0),
            ("a" * 160, "GSM-7", 160, 1),
            ("a" * 161, "GSM-7", 161, 2),
            ("a" * 306, "GSM-7", 306, 2),
            ("a" * 307, "GSM-7", 307, 3),
            ("€" * 80, "GSM-7", 160, 1),  # extension characters take two septets
            ("{}" * 41, "GSM-7", 164, 2),
            ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),  # an escape is never split
            ("Grüße, Ådé\u0430", "UCS-2", 11, 1),  # one Cyrillic letter forces UCS-2
            ("ç" * 70, "UCS-2", 70, 1),  # only the capital Ç is in GSM-7
            ("Ç" * 70, "GSM-7", 70, 1),
            ("я" * 71, "UCS-2", 71, 2),
            ("я" * 134, "UCS-2", 134, 2),
            ("я" * 135, "UCS-2", 135, 3),
            ("😀" * 35, "UCS-2", 70, 1),  # outside the BMP: two code units
            ("😀" * 36, "UCS-2", 72, 2),
            ("a" * 66 + "😀" + "я" * 66, "UCS-2", 134, 3),  # a surrogate pair is never split
        ],
    )
    def test_count(self, text, encoding, units, count):
        segments = count_segments(text)
        assert (segments.encoding, segments.units, segments.count) == (encoding, units, count)


class TestSettings:
    def test_a_missing_token_variable_names_setting_and_variable(self, monkeypatch):
        monkeypatch.delenv("NO_SUCH_TWILIO_TOKEN", raising=False)
        with pytest.raises(ChannelConfigError) as error:
            make("http://127.0.0.1", auth_token_env="NO_SUCH_TWILIO_TOKEN")
        assert "auth_token_env" in str(error.value)
        assert "NO_SUCH_TWILIO_TOKEN" in str(error.value)

    def test_a_sender_is_required(self, token):
        with pytest.raises(ChannelConfigError, match="messaging_service_sid"):
            make("http://127.0.0.1", **{"from": None})

    def test_default_base_url(self, token):
        channel = make(None)
        assert channel.base_url == "https://api.twilio.com"
        channel.close()

    @pytest.mark.parametrize(
        ("setting", "value"),
        [
            ("account_sid", "AC123"),
            ("account_sid", "SK" + "0" * 32),
            ("account_sid", "AC" + "g" * 32),
            ("messaging_service_sid", "MG123"),
            ("messaging_service_sid", "AC" + "0" * 32),
        ],
    )
    def test_sids_are_checked_at_setup(self, token, setting, value):
        with pytest.raises(ChannelConfigError, match=f"setting '{setting}' must be"):
            make("http://127.0.0.1", **{setting: value})

    @pytest.mark.parametrize(
        "sender", ["+10000000000", "15017122661", "Lotus & Co", "TooLongSender1"]
    )
    def test_the_sender_is_checked_at_setup(self, token, sender):
        with pytest.raises(ChannelConfigError, match="setting 'from'"):
            make("http://127.0.0.1", **{"from": sender})

    def test_an_alphanumeric_sender_is_taken(self, token):
        make("http://127.0.0.1", **{"from": "Lotus Co"}).close()

    @pytest.mark.parametrize(
        ("value", "words"),
        [
            (AUTH_TOKEN + "\r\n", "holds a line break at character 35"),
            ("tøken-0123456789", "character outside ASCII at character 2"),
        ],
    )
    def test_a_token_that_cannot_travel_in_a_header_is_refused(self, monkeypatch, value, words):
        monkeypatch.setenv("COURTSHIP_TEST_TWILIO_TOKEN", value)
        with pytest.raises(ChannelConfigError) as error:
            make("http://127.0.0.1")
        message = str(error.value)
        assert "COURTSHIP_TEST_TWILIO_TOKEN" in message and words in message
        assert value.strip() not in message
