"""The SMTP channel: smtplib and ``email.message.EmailMessage``, one SMTP session for many
messages.

The session (connection, STARTTLS, login) is opened for the first message and kept: each later
message is one MAIL, RCPT, DATA transaction on it. A session the server dropped while idle (or
closed with 421 between messages) is noticed at MAIL, before the message is sent, and opened
again once; a session lost after DATA began is a retry, since the server may have the message.
One channel instance is one session: the dispatcher gives each worker its own instance.

A server that offers PIPELINING (RFC 2920) gets MAIL, RCPT and DATA in one write and answers
them together: two round trips a message instead of four. Every answer is read and checked, in
order, before the message's content goes out; a server that does not offer it gets one command
at a time.

The email's bytes are those of ``build(message).as_bytes()``; a plain-text email (the common
case) is put together from its headers, each folded by the standard library's policy and kept
when it repeats (From, Reply-To, the Date of the second), without building the whole
``EmailMessage`` each time (``content``)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import smtplib
import ssl
from collections.abc import Mapping
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from html import escape
from typing import Any

from courtship.channels import (
    ChannelConfigError,
    Delivery,
    Message,
    email_problem,
    secret,
    setting,
)

SECURITY_PORTS = {"starttls": 587, "ssl": 465, "none": 25}


@functools.lru_cache(maxsize=256)  # asked by check, then by send, for the same message
def _address(text: str) -> str:
    """The bare address in ``text`` ('Sam <sam@example.org>' → 'sam@example.org'), or ''."""
    if any(char in text for char in "\r\n"):
        return ""
    address = parseaddr(text)[1]
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(char.isspace() for char in address):
        return ""
    return address


#: Lines end in CRLF and headers are folded for SMTP; non-ASCII headers become encoded words.
SMTP_POLICY = policy.SMTP
#: RFC 5322 asks for lines of at most 78 characters; longer ones are quoted-printable.
LINE_LIMIT = 78
FOOTER = "Unsubscribe from these emails: {url}"


def _transfer_encoding(body: str) -> str:
    """7bit for short-lined ASCII, quoted-printable for anything else: never 8bit."""
    if body.isascii() and all(len(line) <= LINE_LIMIT for line in body.splitlines()):
        return "7bit"
    return "quoted-printable"


def _with_footer(text: str, url: str) -> str:
    """The text with a visible unsubscribe link at its end, unless it shows the link already."""
    if url in text:
        return text
    return f"{text.rstrip()}\n\n--\n{FOOTER.format(url=url)}\n"


def _with_html_footer(html: str | None, url: str) -> str | None:
    if html is None:
        return None
    escaped = escape(url, quote=True)
    if url in html or escaped in html:
        return html
    footer = f'<p style="font-size:small"><a href="{escaped}">Unsubscribe from these emails</a></p>'
    at = html.lower().rfind("</body>")
    return f"{html[:at]}{footer}\n{html[at:]}" if at >= 0 else f"{html}\n{footer}"


@functools.lru_cache(maxsize=64)
def _header_class(name: str) -> Any:
    """The policy's class for the header ``name`` (its registry makes a new one each call)."""
    return SMTP_POLICY.header_factory[name]


@functools.lru_cache(maxsize=1024)
def _folded(name: str, value: str) -> bytes:
    """One header as ``EmailMessage.as_bytes`` writes it: parsed and folded by the policy,
    RFC 2047 encoded words for what is not ASCII; a line break in ``value`` is refused as
    ``EmailMessage`` refuses it (``EmailPolicy.header_store_parse``)."""
    if len(value.splitlines()) > 1:
        raise ValueError("Header values may not contain linefeed or carriage return characters")
    header = _header_class(name.lower())(name, value)
    return str(header.fold(policy=SMTP_POLICY)).encode("ascii", "surrogateescape")


@functools.lru_cache(maxsize=1)
def _plain_text_headers() -> bytes:
    """The MIME headers of a 7-bit, UTF-8 plain-text body, as ``set_content`` writes them."""
    email = EmailMessage(policy=SMTP_POLICY)
    email.set_content("", cte="7bit")
    return b"".join(SMTP_POLICY.fold_binary(name, value) for name, value in email.items())


#: A line starting with a dot gets another (RFC 5321, 4.5.2), as ``smtplib.SMTP.data`` does.
_LEADING_DOT = re.compile(rb"(?m)^\.")
CRLF = b"\r\n"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class SMTPChannel:
    """Email over SMTP: plain text, or multipart/alternative with HTML."""

    name = "email"
    idempotent = False

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.security: str = setting(settings, "security", "starttls")
        if self.security not in SECURITY_PORTS:
            raise ChannelConfigError(
                f"setting 'security' must be one of starttls, ssl, none; not {self.security!r}"
            )
        self.host: str = setting(settings, "host", "localhost")
        self.port: int = setting(settings, "port", SECURITY_PORTS[self.security], kind=int)
        self.sender: str = setting(settings, "from")
        self.envelope_from = _address(self.sender)
        if not self.envelope_from:
            raise ChannelConfigError(f"setting 'from' is not an email address: {self.sender!r}")
        self.reply_to: str | None = settings.get("reply_to")
        if self.reply_to is not None and not _address(self.reply_to):
            raise ChannelConfigError(
                f"setting 'reply_to' is not an email address: {self.reply_to!r}"
            )
        self.username: str | None = settings.get("username")
        if self.username and not settings.get("password_env"):
            raise ChannelConfigError("setting 'username' needs 'password_env' too")
        self._password: str | None = (
            secret(settings, "password_env", header=True) if self.username else None
        )
        self.timeout: float = setting(settings, "timeout", 10.0, kind=float)
        self.unsubscribe_mailto: str | None = settings.get("unsubscribe_mailto")
        self.require_unsubscribe: bool = setting(settings, "require_unsubscribe", True, kind=bool)
        self.ca_file: str | None = settings.get("ca_file")
        self.verify: bool = setting(settings, "verify", True, kind=bool)
        self.local_hostname: str | None = settings.get("local_hostname")
        self.domain: str = settings.get("message_id_domain") or self.envelope_from.partition("@")[2]
        self._smtp: smtplib.SMTP | None = None  # the session kept between messages

    def __repr__(self) -> str:
        return (
            f"SMTPChannel(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, from={self.sender!r})"
        )

    # -- the Channel protocol ------------------------------------------------------------------

    def check(self, message: Message) -> str | None:
        address = _address(message.to)
        if not address:
            return "the recipient is not an email address"
        problem = email_problem(address)
        if problem:
            return problem
        if any(char in message.subject for char in "\r\n"):
            return "the subject has a line break"
        if (
            message.is_marketing
            and self.require_unsubscribe
            and not (message.unsubscribe_url or "").startswith("https://")
        ):
            return (
                "a marketing email needs a one-click unsubscribe link (https, RFC 8058): set "
                "unsubscribe.base_url in courtship.yaml to the https address of `courtship "
                "serve` and its secret in the environment (COURTSHIP_UNSUBSCRIBE_SECRET)"
            )
        return None

    def send(self, message: Message) -> Delivery:
        problem = self.check(message)
        if problem:
            return Delivery.failed(problem)
        try:
            content, message_id = self.content(message)
        except (ValueError, TypeError) as error:
            return Delivery.failed(f"cannot build the email: {error}")
        try:
            self._deliver(content, _address(message.to))
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            return self._answer(code, text)
        except smtplib.SMTPResponseException as error:
            return self._answer(error.smtp_code, error.smtp_error)
        except smtplib.SMTPNotSupportedError as error:
            return Delivery.failed(f"the SMTP server at {self.host}:{self.port}: {error}")
        except ssl.SSLCertVerificationError as error:
            return Delivery.failed(
                f"the TLS certificate of {self.host}:{self.port} is not trusted: "
                f"{error.verify_message or error}"
            )
        except (smtplib.SMTPException, OSError) as error:
            return Delivery.retry(f"cannot reach {self.host}:{self.port}: {error or type(error)}")
        return Delivery.delivered(message_id)

    # -- building and delivering ---------------------------------------------------------------

    def headers(self, message: Message) -> tuple[list[tuple[str, str]], str, str | None]:
        """The email's headers in order, its text and its HTML (with the unsubscribe footer
        when the message is marketing and its template did not place the link)."""
        headers = [("From", self.sender), ("To", message.to)]
        if self.reply_to:
            headers.append(("Reply-To", self.reply_to))
        digest = hashlib.sha256(message.key.encode("utf-8")).hexdigest()[:32]
        headers += [
            ("Subject", message.subject),
            ("Date", formatdate(usegmt=True)),
            ("Message-ID", f"<{digest}.courtship@{self.domain}>"),
            ("X-Courtship-Key", message.key),
        ]
        text, html = message.text, message.html
        url = message.unsubscribe_url
        if message.is_marketing:
            links = []
            if url:
                links.append(f"<{url}>")
            if self.unsubscribe_mailto:
                links.append(f"<mailto:{self.unsubscribe_mailto}?subject=unsubscribe>")
            if links:
                headers.append(("List-Unsubscribe", ", ".join(links)))
            # RFC 8058: one-click unsubscribe needs an HTTPS link to POST to.
            if url and url.startswith("https://"):
                headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
            if url:
                text, html = _with_footer(text, url), _with_html_footer(html, url)
        return headers, text, html

    def build(self, message: Message) -> EmailMessage:
        """The email for ``message``: headers, text, and HTML as an alternative when given.

        Everything is 7-bit: headers with other characters are RFC 2047 encoded words, and a
        body that is not short-lined ASCII is quoted-printable, so no relay needs 8BITMIME. A
        marketing email carries the one-click ``List-Unsubscribe`` headers (RFC 8058) and a
        visible unsubscribe link: a footer when its template did not place one."""
        headers, text, html = self.headers(message)
        email = EmailMessage(policy=SMTP_POLICY)
        for name, value in headers:
            email[name] = value
        email.set_content(text, cte=_transfer_encoding(text))
        if html is not None:
            email.add_alternative(html, subtype="html", cte=_transfer_encoding(html))
        return email

    def content(self, message: Message) -> tuple[bytes, str]:
        """The email's bytes as ``build(message).as_bytes()`` gives them, and its Message-ID.
        A plain-text, 7-bit email is put together from its folded headers (each kept while it
        repeats) and its CRLF lines; any other (HTML, quoted-printable) is built whole."""
        headers, text, html = self.headers(message)
        if html is not None or _transfer_encoding(text) != "7bit":
            email = self.build(message)
            return email.as_bytes(), str(email["Message-ID"])
        lines = text.encode("ascii").splitlines()
        head = b"".join(_folded(name, value) for name, value in headers)
        body = CRLF.join(lines) + CRLF
        return head + _plain_text_headers() + CRLF + body, dict(headers)["Message-ID"]

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self._context(),
            )
        smtp = smtplib.SMTP(
            self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
        )
        if self.security == "starttls":
            try:
                smtp.ehlo()
                smtp.starttls(context=self._context())
                smtp.ehlo()
            except BaseException:
                smtp.close()
                raise
        return smtp

    def _deliver(self, content: bytes, to: str) -> None:
        """One transaction on the kept session; a session found dropped before the content was
        sent (at MAIL, or anywhere in a pipelined MAIL, RCPT, DATA) is opened again, once."""
        reused = self._smtp is not None
        smtp = self._session()
        options: list[str] = []
        if not (self.envelope_from + to).isascii():  # as smtplib's send_message asks
            if not smtp.has_extn("smtputf8"):
                raise smtplib.SMTPNotSupportedError(
                    "the address needs SMTPUTF8, which the server does not offer"
                )
            options = ["SMTPUTF8"]
        try:
            answers = self._envelope(smtp, to, options)
        except (smtplib.SMTPServerDisconnected, OSError):
            if not reused:
                self._drop()
                raise
            answers = [(421, b"the session was dropped")]
        if answers[0][0] == 421 and reused:  # closed while idle: a fresh session, once
            self._drop()
            smtp = self._session()
            answers = self._guarded(self._envelope, smtp, to, options)
        (code, text), *rest = answers
        if code != 250:
            self._abandon(smtp, answers, code)
            raise smtplib.SMTPSenderRefused(code, text, self.envelope_from)
        (code, text), *rest = rest
        if code not in (250, 251):
            self._abandon(smtp, answers, code)
            raise smtplib.SMTPRecipientsRefused({to: (code, text)})
        ((code, text),) = rest
        if code != 354:  # DATA itself refused
            self._refused(smtp, code)
            raise smtplib.SMTPDataError(code, text)
        # The message is accepted once its content is answered 250.
        code, text = self._guarded(self._content, smtp, content)
        if code != 250:
            self._refused(smtp, code)
            raise smtplib.SMTPDataError(code, text)

    def _envelope(self, smtp: smtplib.SMTP, to: str, options: list[str]) -> list[tuple[int, bytes]]:
        """MAIL, RCPT and DATA, and the answers up to the first refusal (all three pipelined,
        in one write, when the server offers PIPELINING and the addresses are ASCII; up to a
        421 there, after which the server says no more)."""
        if options or not smtp.has_extn("pipelining"):
            answers = [smtp.mail(self.envelope_from, options)]
            if answers[-1][0] == 250:
                answers.append(smtp.rcpt(to))
                if answers[-1][0] in (250, 251):
                    smtp.putcmd("data")
                    answers.append(smtp.getreply())
            return answers
        sender, recipient = smtplib.quoteaddr(self.envelope_from), smtplib.quoteaddr(to)
        smtp.send(f"mail FROM:{sender}\r\nrcpt TO:{recipient}\r\ndata\r\n")
        answers = []
        for _ in range(3):
            answers.append(smtp.getreply())
            if answers[-1][0] == 421:
                break
        return answers

    def _content(self, smtp: smtplib.SMTP, content: bytes) -> tuple[int, bytes]:
        """The message after DATA's 354, dot-stuffed and ended, as ``smtplib.SMTP.data`` sends
        it; the server's answer."""
        data = _LEADING_DOT.sub(b"..", content)
        if not data.endswith(CRLF):
            data += CRLF
        smtp.send(data + b"." + CRLF)
        return smtp.getreply()

    def _abandon(self, smtp: smtplib.SMTP, answers: list[tuple[int, bytes]], code: int) -> None:
        """The envelope refused: a server that took the pipelined DATA all the same (354) gets
        a lone dot (RFC 2920, 3.1), then the transaction is reset (``_refused``)."""
        if code != 421 and answers[-1][0] == 354:
            try:
                smtp.send(b"." + CRLF)
                smtp.getreply()
            except (smtplib.SMTPException, OSError):
                self._drop()
                return
        self._refused(smtp, code)

    def _session(self) -> smtplib.SMTP:
        if self._smtp is None:
            smtp = self._connect()
            try:
                smtp.ehlo_or_helo_if_needed()
                if self.username and self._password is not None:
                    smtp.login(self.username, self._password)
            except BaseException:
                smtp.close()
                raise
            self._smtp = smtp
        return self._smtp

    def _guarded(self, command: Any, *args: Any) -> tuple[int, bytes]:
        """A command whose failure (a dropped connection, a timeout) ends the session."""
        try:
            reply: tuple[int, bytes] = command(*args)
        except (smtplib.SMTPServerDisconnected, OSError):
            self._drop()
            raise
        return reply

    def _refused(self, smtp: smtplib.SMTP, code: int) -> None:
        """The transaction refused: reset it for the next message, or end a session the server
        is closing (421)."""
        if code == 421:
            self._drop()
            return
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def close(self) -> None:
        """QUIT the session, if one is open (``courtship run`` calls this when it ends)."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            smtp.close()

    def _answer(self, code: int, text: bytes | str) -> Delivery:
        reason = f"SMTP {code} {_text(text)}".strip()
        if 400 <= code < 500:
            return Delivery.retry(reason)
        if 500 <= code < 600:
            return Delivery.failed(reason)
        return Delivery.retry(reason)
