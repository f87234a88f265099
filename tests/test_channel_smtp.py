"""The SMTP channel against a real SMTP server (aiosmtpd) on 127.0.0.1."""

import socket
import ssl
from dataclasses import replace
from email import message_from_bytes, policy

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from courtship_smtp import SMTPChannel

from courtship.channels import ChannelConfigError
from courtship.testing import ChannelContract, sample_message

PASSWORD = "s3cret-smtp-password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Recorder:
    """An aiosmtpd handler that keeps what it receives, or answers with a code it is given."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.messages = []
        self.data_answer = None
        self.rcpt_answer = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_answer:
            return self.rcpt_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_answer:
            return self.data_answer
        email = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(
            {
                "raw": envelope.content,
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "email": email,
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "authenticated": bool(session.authenticated),
                "session": session.peer,  # the client's end of the connection
            }
        )
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data == (
        b"mailer",
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A throwaway CA, a certificate for 127.0.0.1, and the CA's file for the client."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_context, str(ca_file)


def start(handler, **kwargs):
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), server_hostname="localhost", **kwargs
    )
    controller.start()
    return controller


@pytest.fixture(scope="module")
def plain_server():
    recorder = Recorder()
    controller = start(recorder)
    yield controller, recorder
    controller.stop()


@pytest.fixture(scope="module")
def starttls_server(tls):
    recorder = Recorder()
    controller = start(
        recorder,
        tls_context=tls[0],
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticator,
    )
    yield controller, recorder
    controller.stop()


@pytest.fixture(scope="module")
def ssl_server(tls):
    recorder = Recorder()
    controller = start(recorder, ssl_context=tls[0])
    yield controller, recorder
    controller.stop()


@pytest.fixture
def plain(plain_server):
    controller, recorder = plain_server
    recorder.reset()
    return controller, recorder


def settings(port, **extra):
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": "Lotus & Co <hello@lotus.example.org>",
        "reply_to": "Sam <sam@lotus.example.org>",
        "timeout": 2,
        "local_hostname": "courtship.test",  # no FQDN lookup per connection
        **extra,
    }


class TestSMTPChannel(ChannelContract):
    @pytest.fixture
    def channel(self, plain):
        return SMTPChannel(settings(plain[0].port))

    @pytest.fixture
    def message(self):
        return sample_message(channel="email", to="ada@example.org")

    @pytest.fixture
    def received(self, plain):
        return lambda: plain[1].messages

    @pytest.fixture
    def unreachable_channel(self):
        return SMTPChannel(settings(free_port()))

    def test_transactional_email_is_plain_text(self, channel, message, received):
        delivery = channel.send(message)
        assert delivery.status == "delivered"
        (got,) = received()
        email = got["email"]
        assert got["mail_from"] == "hello@lotus.example.org"
        assert got["rcpt_tos"] == ["ada@example.org"]
        assert email["From"] == "Lotus & Co <hello@lotus.example.org>"
        assert email["To"] == "ada@example.org"
        assert email["Reply-To"] == "Sam <sam@lotus.example.org>"
        assert email["Subject"] == "Welcome, Ada"
        assert email["X-Courtship-Key"] == message.key
        assert email["Message-ID"] == delivery.provider_id
        assert email["Message-ID"].endswith("@lotus.example.org>")
        assert email["Date"]
        assert email.get_content_type() == "text/plain"
        assert email.get_content().rstrip() == message.text
        assert "List-Unsubscribe" not in email
        assert "List-Unsubscribe-Post" not in email

    def test_marketing_email_with_html_and_unsubscribe(self, plain, message, received):
        channel = SMTPChannel(
            settings(plain[0].port, unsubscribe_mailto="unsubscribe@lotus.example.org")
        )
        marketing = replace(
            message,
            category="marketing",
            html="<p>Hi <b>Ada</b></p>",
            unsubscribe_url="https://lotus.example.org/u/abc",
        )
        assert channel.send(marketing).status == "delivered"
        email = received()[0]["email"]
        assert email["List-Unsubscribe"] == (
            "<https://lotus.example.org/u/abc>, "
            "<mailto:unsubscribe@lotus.example.org?subject=unsubscribe>"
        )
        assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert email.get_content_type() == "multipart/alternative"
        parts = {part.get_content_type(): part for part in email.iter_parts()}
        assert list(parts) == ["text/plain", "text/html"]
        # The template placed no link: a visible footer does, in both parts.
        assert parts["text/plain"].get_content().replace("\r\n", "\n") == (
            f"{message.text}\n\n--\nUnsubscribe from these emails: "
            "https://lotus.example.org/u/abc\n"
        )
        assert parts["text/html"].get_content().replace("\r\n", "\n").rstrip() == (
            "<p>Hi <b>Ada</b></p>\n"
            '<p style="font-size:small"><a href="https://lotus.example.org/u/abc">'
            "Unsubscribe from these emails</a></p>"
        )

    def test_a_template_that_shows_the_link_gets_no_footer(self, channel, message, received):
        url = "https://lotus.example.org/unsubscribe?token=1.abc.email.sig"
        marketing = replace(
            message, category="marketing", text=f"Hi Ada.\nStop these: {url}", unsubscribe_url=url
        )
        assert channel.send(marketing).status == "delivered"
        body = received()[0]["email"].get_content().replace("\r\n", "\n")
        assert body.rstrip() == marketing.text

    def test_one_click_needs_an_https_link(self, channel, message, received):
        marketing = replace(message, category="marketing", unsubscribe_url="http://x.example/u")
        assert "one-click unsubscribe link (https" in channel.check(marketing)
        assert channel.send(marketing).status == "failed"
        assert received() == []

    def test_a_mailto_alone_is_not_enough_for_marketing(self, plain, message, received):
        channel = SMTPChannel(settings(plain[0].port, unsubscribe_mailto="u@lotus.example.org"))
        marketing = replace(message, category="marketing")
        assert "COURTSHIP_UNSUBSCRIBE_SECRET" in channel.check(marketing)
        assert received() == []

    def test_non_ascii_names_and_bodies_go_out_7bit_and_decode_back(
        self, channel, message, received
    ):
        text = "Chère Zoë, ça fait longtemps. 🌸 Ωμέγα — 日本語のテキスト\n" + "ß" * 120
        html = "<p>Chère <b>Zoë</b> 🌸</p>"
        url = "https://lotus.example.org/unsubscribe?token=1.Yy0wMDE.email.sig"
        sent = replace(
            message,
            to="Zoë Ångström <zoe@example.org>",
            subject="Zoë, un cadeau pour vous 🎁 — ça vous dit ?",
            text=text,
            html=html,
            category="marketing",
            unsubscribe_url=url,
        )
        assert channel.send(sent).status == "delivered"
        (got,) = received()
        raw: bytes = got["raw"]
        for line in raw.split(b"\r\n"):
            assert line.isascii(), line
            assert len(line) <= 998
        assert b"8bit" not in raw.lower()
        email = got["email"]
        assert email["Subject"] == sent.subject
        assert email["To"] == "Zoë Ångström <zoe@example.org>"
        parts = {part.get_content_type(): part for part in email.iter_parts()}
        assert parts["text/plain"]["Content-Transfer-Encoding"] == "quoted-printable"
        assert parts["text/plain"].get_content().replace("\r\n", "\n").startswith(text)
        assert parts["text/html"].get_content().replace("\r\n", "\n").startswith(html)
        assert got["rcpt_tos"] == ["zoe@example.org"]

    def test_marketing_without_unsubscribe_is_refused(self, channel, message, received):
        marketing = replace(message, category="marketing")
        assert "unsubscribe" in channel.check(marketing)
        assert channel.send(marketing).status == "failed"
        assert received() == []

    def test_check_refuses_what_is_not_an_address(self, channel, message):
        assert channel.check(replace(message, to="+15551234567")) == (
            "the recipient is not an email address"
        )
        assert channel.check(replace(message, to="ada@example.org\r\nBcc: x@y.org"))

    def test_4xx_on_data_is_a_retry(self, channel, message, plain):
        plain[1].data_answer = "451 4.3.0 Try again later"
        delivery = channel.send(message)
        assert delivery.status == "retry"
        assert delivery.reason == "SMTP 451 4.3.0 Try again later"

    def test_5xx_on_data_fails_with_the_servers_reason(self, channel, message, plain):
        plain[1].data_answer = "554 5.7.1 Message rejected as spam"
        delivery = channel.send(message)
        assert delivery.status == "failed"
        assert delivery.reason == "SMTP 554 5.7.1 Message rejected as spam"

    def test_refused_recipient_fails(self, channel, message, plain):
        plain[1].rcpt_answer = "550 5.1.1 No such user here"
        delivery = channel.send(message)
        assert delivery.status == "failed"
        assert delivery.reason == "SMTP 550 5.1.1 No such user here"

    def test_refused_connection_is_a_retry(self, unreachable_channel, message):
        delivery = unreachable_channel.send(message)
        assert delivery.status == "retry"
        assert "cannot reach 127.0.0.1" in delivery.reason

    def test_a_silent_server_times_out_into_a_retry(self, message):
        with socket.socket() as silent:  # listens, never greets
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            channel = SMTPChannel(settings(silent.getsockname()[1], timeout=0.3))
            delivery = channel.send(message)
        assert delivery.status == "retry"
        assert "timed out" in delivery.reason


class TestSMTPChannelStartTLS(ChannelContract):
    """STARTTLS to a server with a certificate from a test CA, and AUTH with a password."""

    @pytest.fixture(autouse=True)
    def password(self, monkeypatch):
        monkeypatch.setenv("COURTSHIP_TEST_SMTP_PASSWORD", PASSWORD)

    @pytest.fixture
    def server(self, starttls_server):
        starttls_server[1].reset()
        return starttls_server

    def make(self, port, ca_file, **extra):
        return SMTPChannel(
            settings(
                port,
                security="starttls",
                username="mailer",
                password_env="COURTSHIP_TEST_SMTP_PASSWORD",
                ca_file=ca_file,
                **extra,
            )
        )

    @pytest.fixture
    def channel(self, server, tls):
        return self.make(server[0].port, tls[1])

    @pytest.fixture
    def message(self):
        return sample_message(channel="email")

    @pytest.fixture
    def received(self, server):
        return lambda: server[1].messages

    @pytest.fixture
    def unreachable_channel(self, tls):
        return self.make(free_port(), tls[1])

    @pytest.fixture
    def secrets(self):
        return [PASSWORD]

    def test_sends_over_tls_after_authenticating(self, channel, message, received):
        assert channel.send(message).status == "delivered"
        (got,) = received()
        assert got["tls"]
        assert got["authenticated"]

    def test_a_wrong_password_fails(self, server, tls, message, monkeypatch):
        monkeypatch.setenv("COURTSHIP_TEST_SMTP_PASSWORD", "wrong")
        delivery = self.make(server[0].port, tls[1]).send(message)
        assert delivery.status == "failed"
        assert delivery.reason.startswith("SMTP 535")
        assert "wrong" not in delivery.reason

    def test_an_untrusted_certificate_fails(self, server, message):
        delivery = self.make(server[0].port, None).send(message)
        assert delivery.status == "failed"
        assert "not trusted" in delivery.reason

    def test_implicit_tls(self, ssl_server, tls, message):
        controller, recorder = ssl_server
        recorder.reset()
        channel = SMTPChannel(settings(controller.port, security="ssl", ca_file=tls[1]))
        assert channel.send(message).status == "delivered"
        assert recorder.messages[0]["tls"]


class TestSettings:
    def test_a_missing_password_variable_names_setting_and_variable(self, monkeypatch):
        monkeypatch.delenv("NO_SUCH_SMTP_PASSWORD", raising=False)
        with pytest.raises(ChannelConfigError) as error:
            SMTPChannel(settings(25, username="u", password_env="NO_SUCH_SMTP_PASSWORD"))
        assert "password_env" in str(error.value)
        assert "NO_SUCH_SMTP_PASSWORD" in str(error.value)

    def test_a_username_needs_a_password_variable(self):
        with pytest.raises(ChannelConfigError, match="password_env"):
            SMTPChannel(settings(25, username="u"))

    def test_security_must_be_known(self):
        with pytest.raises(ChannelConfigError, match="security"):
            SMTPChannel(settings(25, security="tls"))

    def test_from_is_required_and_must_be_an_address(self):
        with pytest.raises(ChannelConfigError, match="'from'"):
            SMTPChannel({"host": "127.0.0.1"})
        with pytest.raises(ChannelConfigError, match="'from'"):
            SMTPChannel(settings(25, **{"from": "nobody"}))

    def test_default_ports_follow_security(self):
        assert SMTPChannel(settings(None, security="ssl") | {"port": None}).port == 465
        assert SMTPChannel({"from": "a@b.org"}).port == 587

    def test_repr_shows_no_password(self, monkeypatch):
        monkeypatch.setenv("COURTSHIP_TEST_SMTP_PASSWORD", PASSWORD)
        channel = SMTPChannel(
            settings(25, username="u", password_env="COURTSHIP_TEST_SMTP_PASSWORD")
        )
        assert PASSWORD not in repr(channel)


# ── one session for many messages ─────────────────────────────────────────────────────────


def test_many_messages_go_over_one_session_and_close_quits_it(plain):
    controller, recorder = plain
    channel = SMTPChannel(settings(controller.port))
    for n in range(5):
        assert channel.send(sample_message(key=f"k{n}", to="ada@example.org")).status == (
            "delivered"
        )
    assert len({m["session"] for m in recorder.messages}) == 1
    assert [m["email"]["X-Courtship-Key"] for m in recorder.messages] == [f"k{n}" for n in range(5)]
    channel.close()
    assert channel._smtp is None
    channel.close()  # twice is harmless


def test_login_and_starttls_once_for_many_messages(starttls_server, tls, monkeypatch):
    controller, recorder = starttls_server
    recorder.reset()
    monkeypatch.setenv("COURTSHIP_TEST_SMTP_PASSWORD", PASSWORD)
    channel = SMTPChannel(
        settings(
            controller.port,
            security="starttls",
            username="mailer",
            password_env="COURTSHIP_TEST_SMTP_PASSWORD",
            ca_file=tls[1],
        )
    )
    for n in range(3):
        assert channel.send(sample_message(key=f"k{n}", to="ada@example.org")).status == (
            "delivered"
        )
    channel.close()
    assert len({m["session"] for m in recorder.messages}) == 1
    assert all(m["tls"] and m["authenticated"] for m in recorder.messages)


@pytest.mark.parametrize("pipelined", [False, True])
def test_a_session_the_server_dropped_is_opened_again_before_the_next_message(pipelined):
    """The server goes away between two messages (a restart, an idle timeout): the next message
    finds the session dead at MAIL, before anything of it was sent, and goes out on a new one,
    once; with PIPELINING too (MAIL, RCPT and DATA sent together on both sessions)."""
    recorder = PipeliningRecorder() if pipelined else Recorder()
    port = free_port()
    first = Controller(recorder, hostname="127.0.0.1", port=port)
    first.start()
    channel = SMTPChannel(settings(port))
    assert channel.send(sample_message(key="k1", to="ada@example.org")).status == "delivered"
    first.stop()
    second = Controller(recorder, hostname="127.0.0.1", port=port)
    second.start()
    try:
        assert channel.send(sample_message(key="k2", to="ada@example.org")).status == "delivered"
    finally:
        channel.close()
        second.stop()
    assert [m["email"]["X-Courtship-Key"] for m in recorder.messages] == ["k1", "k2"]
    assert len({m["session"] for m in recorder.messages}) == 2
    if pipelined:
        assert recorder.ahead == [True, True]


def test_a_server_that_is_gone_for_good_is_a_retry_not_a_hang():
    recorder = Recorder()
    port = free_port()
    server = Controller(recorder, hostname="127.0.0.1", port=port)
    server.start()
    channel = SMTPChannel(settings(port))
    assert channel.send(sample_message(key="k1", to="ada@example.org")).status == "delivered"
    server.stop()
    after = channel.send(sample_message(key="k2", to="ada@example.org"))
    assert after.status == "retry" and f"cannot reach 127.0.0.1:{port}" in after.reason
    channel.close()


# ── the email's bytes, and PIPELINING ─────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"to": "Ada Lovelace <ada@example.org>", "subject": "Hello, Ada (again) — your order"},
        {"subject": "Zoë, un cadeau pour vous 🎁", "to": "Zoë Ångström <zoe@example.org>"},
        {"subject": "A subject " + "that goes on " * 12, "text": "one\n\ntwo\r\nthree\r"},
        {"text": ".a line with a dot\n.\n..two\n", "key": "k:with spaces & ünïcode"},
        {"text": ""},
        {
            "category": "marketing",
            "unsubscribe_url": "https://lotus.example.org/unsubscribe?token=1.Yy0w.email.sig",
        },
        {"text": "Chère Zoë\n" + "long " * 30},  # quoted-printable: built whole
    ],
)
def test_the_bytes_sent_are_what_the_standard_library_builds(monkeypatch, changes):
    """``content`` puts a plain-text email together from its folded headers (kept while they
    repeat) and its lines; byte for byte it is ``build(message).as_bytes()``, whatever the
    names, subjects and bodies."""
    monkeypatch.setattr(
        "courtship_smtp.channel.formatdate", lambda usegmt: "Tue, 01 Dec 2026 19:46:26 GMT"
    )
    channel = SMTPChannel(
        settings(25, unsubscribe_mailto="unsubscribe@lotus.example.org", reply_to="Sam <s@x.org>")
    )
    for _ in range(2):  # the second time from the kept headers
        message = sample_message(channel="email", **changes)
        email = channel.build(message)
        assert channel.content(message) == (email.as_bytes(), email["Message-ID"])


def test_a_header_with_a_line_break_cannot_be_built(plain):
    channel = SMTPChannel(settings(plain[0].port))
    delivery = channel.send(sample_message(key="k\r\nBcc: eve@example.org", to="ada@example.org"))
    assert delivery.status == "failed" and "cannot build the email" in delivery.reason
    assert plain[1].messages == []


class PeekingRecorder(Recorder):
    """A Recorder that notes, as it answers MAIL, whether the client's RCPT had arrived already
    (aiosmtpd reads the commands one line at a time, so it serves a pipelined group in order);
    it can refuse MAIL, or take DATA after a refused RCPT (which RFC 2920 tells the client to
    end with a lone dot)."""

    def reset(self):
        super().reset()
        self.ahead: list[bool] = []
        self.mail_answer = None
        self.data_despite_refusal = False

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.ahead.append(b"RCPT" in bytes(server._reader._buffer).upper())
        if self.mail_answer:
            return self.mail_answer
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_answer and self.data_despite_refusal:
            envelope.rcpt_tos.append(address)  # a server that will answer DATA with 354
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        if not envelope.content.strip():
            return "554 no valid recipients"
        return await super().handle_DATA(server, session, envelope)


class PipeliningRecorder(PeekingRecorder):
    """A PeekingRecorder whose server offers PIPELINING."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


@pytest.fixture(scope="module")
def pipelining_server():
    recorder = PipeliningRecorder()
    controller = start(recorder)
    yield controller, recorder
    controller.stop()


@pytest.fixture
def pipelining(pipelining_server):
    controller, recorder = pipelining_server
    recorder.reset()
    return controller, recorder


def test_a_server_offering_pipelining_gets_mail_rcpt_and_data_at_once(pipelining):
    controller, recorder = pipelining
    channel = SMTPChannel(settings(controller.port))
    for n in range(3):
        message = sample_message(key=f"k{n}", to="ada@example.org", text=".dot\nHi Ada")
        assert channel.send(message).status == "delivered"
    channel.close()
    assert recorder.ahead == [True, True, True]
    assert [m["email"]["X-Courtship-Key"] for m in recorder.messages] == ["k0", "k1", "k2"]
    assert recorder.messages[0]["email"].get_content().replace("\r\n", "\n") == ".dot\nHi Ada\n"
    assert len({m["session"] for m in recorder.messages}) == 1


def test_a_server_without_pipelining_gets_one_command_at_a_time():
    recorder = PeekingRecorder()
    controller = start(recorder)
    channel = SMTPChannel(settings(controller.port))
    try:
        for n in range(2):
            assert channel.send(sample_message(key=f"k{n}")).status == "delivered"
    finally:
        channel.close()
        controller.stop()
    assert recorder.ahead == [False, False]
    assert len(recorder.messages) == 2


@pytest.mark.parametrize(
    ("peer", "despite"), [("plain", False), ("pipelining", False), ("pipelining", True)]
)
def test_a_refused_recipient_fails_and_the_session_goes_on(request, peer, despite):
    """RCPT refused, one command at a time or in a pipeline (where DATA is refused too, 503, or
    taken, 354, by a server that does so anyway, and then ended with a lone dot): nothing is
    delivered, and the next message goes out on the same session."""
    controller, recorder = request.getfixturevalue(peer)
    recorder.data_despite_refusal = despite
    channel = SMTPChannel(settings(controller.port))
    assert channel.send(sample_message(key="k1", to="ada@example.org")).status == "delivered"
    recorder.rcpt_answer = "550 5.1.1 no such user"
    refused = channel.send(sample_message(key="k2", to="nobody@example.org"))
    assert (refused.status, refused.reason) == ("failed", "SMTP 550 5.1.1 no such user")
    recorder.rcpt_answer = None
    assert channel.send(sample_message(key="k3", to="ada@example.org")).status == "delivered"
    channel.close()
    assert [m["email"]["X-Courtship-Key"] for m in recorder.messages] == ["k1", "k3"]
    assert len({m["session"] for m in recorder.messages}) == 1


@pytest.mark.parametrize(
    ("where", "answer", "status"),
    [
        ("mail", "550 5.7.1 sender refused", "failed"),
        ("mail", "451 4.3.0 try again", "retry"),
        ("data", "452 4.3.1 out of room", "retry"),
        ("data", "554 5.6.0 refused", "failed"),
    ],
)
def test_a_pipelined_refusal_is_the_servers_answer(pipelining, where, answer, status):
    controller, recorder = pipelining
    setattr(recorder, f"{where}_answer", answer)
    channel = SMTPChannel(settings(controller.port))
    delivery = channel.send(sample_message(key="k1", to="ada@example.org"))
    assert (delivery.status, delivery.reason) == (status, f"SMTP {answer}")
    setattr(recorder, f"{where}_answer", None)
    assert channel.send(sample_message(key="k2", to="ada@example.org")).status == "delivered"
    channel.close()
    assert [m["email"]["X-Courtship-Key"] for m in recorder.messages] == ["k2"]
