"""Secrets stay secret: a whole `courtship run` against failing peers on 127.0.0.1 (an SMTP server
that refuses to authenticate, HTTP servers answering as Twilio and the Graph API do when they
refuse — and quoting the token back, as a careless or hostile peer might), with secrets holding
characters outside ASCII and line breaks. Every output, the state store's bytes and the outbox are
then searched for every secret in every form an error could show it."""

import base64
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, quote, quote_plus

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from hypothesis import given, settings
from hypothesis import strategies as st

from courtship.channels import ChannelConfigError, secret
from courtship.project import ProjectError, credentials_in_url, load_project, looks_like_a_secret
from courtship.redaction import describe, forget_all, redact, remember
from courtship.testing import HTTPPeer, PeerResponse

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
IG_USER_ID = "17841400000000001"
AT = "2026-11-23T15:00:00Z"
HEADER = (
    "customer_id,first_name,last_name,email,phone,instagram_id,timezone,language,city,persona,"
    "birthday,signup_date,stage,tags,preferred_channel,cadence_days,tone,consent_email,"
    "consent_sms,consent_instagram"
)
WELCOME = """\
id: welcome
title: Welcome
stage: new
category: transactional
trigger: {event: signup}
respond:
  - send: {channel: preferred, fallback: [email], template: hello}
"""
SMTP_PASSWORD = "pass-Word-Omega-2719"
TWILIO_TOKEN = "tw-Secret-0123456789abcdef"
INSTAGRAM_TOKEN = "IGQ-Secret-token-abcdef0123"


def forms(value: str) -> list[str]:
    """``value`` as an error, a log or a JSON document could carry it."""
    out = set()
    for base in {value, value.strip()}:
        out |= {
            base,
            repr(base)[1:-1],
            ascii(base)[1:-1],
            json.dumps(base)[1:-1],
            repr(base.encode())[2:-1],
            quote(base, safe=""),
            quote_plus(base, safe=""),
            base64.b64encode(base.encode()).decode(),
        }
    return sorted(form for form in out if len(form) >= 4)


def leaks(value: str, texts: dict[str, bytes]) -> list[str]:
    """Where any form of ``value`` appears among ``texts`` (name → bytes)."""
    found = []
    for form in forms(value):
        for encoded in {form.encode("utf-8"), form.encode("utf-16-le")}:
            found += [f"{name}: {form!r}" for name, data in texts.items() if encoded in data]
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refuse_and_echo(server, session, envelope, mechanism, auth_data):
    """An SMTP server that refuses every login, quoting the password back."""
    password = getattr(auth_data, "password", b"") or b""
    text = password.decode("utf-8", "replace")
    return AuthResult(success=False, handled=False, message=f"535 5.7.8 bad password {text}")


class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 accepted"


@pytest.fixture
def smtp_port():
    controller = Controller(
        Sink(),
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=refuse_and_echo,
        auth_require_tls=False,
    )
    controller.start()
    yield controller.port
    controller.stop()


def twilio_refuses(request):
    """Twilio's error documents, quoting the token back (a peer we cannot trust to be careful)."""
    form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
    auth = request.header("Authorization") or ""
    if form.get("To", "").endswith("1"):
        return PeerResponse(
            401, {"code": 20003, "message": f"Authenticate: {auth} is not {TWILIO_TOKEN!r}"}
        )
    return PeerResponse(
        500, {"code": 20500, "message": f"Internal error for token {json.dumps(TWILIO_TOKEN)}"}
    )


def graph_throttles(request):
    """The Graph API throttling the app, its message quoting the token."""
    usage = {
        IG_USER_ID: [
            {
                "type": "messenger",
                "call_count": 100,
                "total_cputime": 10,
                "total_time": 10,
                "estimated_time_to_regain_access": 2,
            }
        ]
    }
    return PeerResponse(
        400,
        {
            "error": {
                "message": f"(#4) limit reached for {INSTAGRAM_TOKEN}",
                "type": "OAuthException",
                "code": 4,
                "fbtrace_id": "Ab",
            }
        },
        {"X-Business-Use-Case-Usage": json.dumps(usage)},
    )


@pytest.fixture
def peers():
    with HTTPPeer(twilio_refuses) as twilio, HTTPPeer(graph_throttles) as graph:
        yield twilio.url, graph.url


def project(root: Path, smtp_port: int, twilio_url: str, graph_url: str, extra: str = "") -> Path:
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "welcome.yaml").write_text(WELCOME)
    (root / "playbooks" / "templates" / "hello.md").write_text(
        "---\nsubject: Welcome, {{ first_name }}\n---\nHi {{ first_name }}, welcome!\n"
    )
    people = [
        ("c001", "email", "+12025550101"),
        ("c002", "sms", "+12025550101"),
        ("c003", "sms", "+12025550102"),
        ("c004", "instagram", "+12025550104"),
    ]
    rows, events = [HEADER], []
    for cid, channel, number in people:
        rows.append(
            f"{cid},Ann,Lee,{cid}@example.org,{number},ig{cid},UTC,en,Leeds,p,1990-01-01,"
            f"2026-11-23,new,,{channel},0,direct,true,true,true"
        )
        events.append({"customer_id": cid, "type": "signup", "at": "2026-11-23T12:00:00Z"})
        events.append(
            {
                "customer_id": cid,
                "type": "inbound_message",
                "channel": "instagram",
                "at": "2026-11-23T11:00:00Z",
            }
        )
    (root / "customers.csv").write_text("\n".join(rows) + "\n")
    (root / "events.jsonl").write_text("\n".join(map(json.dumps, events)) + "\n")
    (root / "courtship.yaml").write_text(
        f"""\
playbooks: playbooks
customers: customers.csv
events: events.jsonl
state: state/state.sqlite
brand: {{name: Lotus, url: https://lotus.example.org}}
channels:
  email: {{host: 127.0.0.1, port: {smtp_port}, security: none, from: hello@lotus.example.org,
          username: hello@lotus.example.org, password_env: T_SMTP_PASSWORD, timeout: 2,
          local_hostname: courtship.test}}
  sms: {{account_sid: {ACCOUNT_SID}, auth_token_env: T_TWILIO_TOKEN,
        from: "+12025550100", base_url: "{twilio_url}", timeout: 2}}
  instagram: {{ig_user_id: "{IG_USER_ID}", access_token_env: T_IG_TOKEN,
              base_url: "{graph_url}", timeout: 2}}
{extra}delivery: {{backoff: 1m, max_attempts: 2, outbox: outbox}}
"""
    )
    return root


def run(root: Path, env: dict[str, str], at: str = AT) -> tuple[int, bytes, bytes]:
    courtship = Path(sys.executable).parent / "courtship"
    process = subprocess.run(
        [str(courtship), "run", "--at", at, "--project", str(root), "-q"],
        capture_output=True,
        env={**os.environ, **env},
        timeout=120,
    )
    return process.returncode, process.stdout, process.stderr


def everything(root: Path, outputs: list[bytes]) -> dict[str, bytes]:
    """The outputs of the runs and every file they left: state store, its journal, the outbox."""
    texts = {f"output {n}": data for n, data in enumerate(outputs)}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix not in (".csv", ".jsonl", ".yaml", ".md"):
            texts[str(path.relative_to(root))] = path.read_bytes()
    return texts


SECRETS = {
    "T_SMTP_PASSWORD": SMTP_PASSWORD,
    "T_TWILIO_TOKEN": TWILIO_TOKEN,
    "T_IG_TOKEN": INSTAGRAM_TOKEN,
}


def test_a_run_against_failing_peers_shows_no_secret_anywhere(tmp_path, smtp_port, peers):
    root = project(tmp_path, smtp_port, *peers)
    outputs = []
    for n, at in enumerate((AT, "2026-11-23T16:00:00Z", "2026-11-23T18:00:00Z")):
        code, out, err = run(root, SECRETS, at)
        assert code in (0, 1), err.decode()
        outputs += [out, err]
        if n == 0:  # the failures are kept, with their reasons: only the secrets are not
            with sqlite3.connect(root / "state" / "state.sqlite") as db:
                reasons = "\n".join(r for (r,) in db.execute("SELECT reason FROM attempts"))
            assert "Twilio 20500" in reasons and "[secret $T_TWILIO_TOKEN]" in reasons
            assert "Instagram error 4" in reasons and "[secret $T_IG_TOKEN]" in reasons
            assert "535 5.7.8 bad password [secret $T_SMTP_PASSWORD]" in reasons
    assert b"gave up after 2 attempts" in out or b"failed" in out
    texts = everything(root, outputs)
    assert any(name.startswith("state") for name in texts)
    for variable, value in SECRETS.items():
        assert leaks(value, texts) == [], variable
    basic = base64.b64encode(f"{ACCOUNT_SID}:{TWILIO_TOKEN}".encode())
    assert not any(basic in data for data in texts.values())  # quoted back by the 401


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("T_TWILIO_TOKEN", "tw-token-0123456789\r\n", "holds a line break at character 20"),
        ("T_IG_TOKEN", "IGQ-tökén-0123456789", "outside ASCII at character 6"),
        ("T_SMTP_PASSWORD", "pass-word-1234\r\n", "holds a line break"),
        ("T_SMTP_PASSWORD", "pass\x1bword-1234", "control character at character 5"),
        # smtplib logs in with ASCII only: such a password could never work
        ("T_SMTP_PASSWORD", "pässwörd-Ωmega-2719", "outside ASCII at character 2"),
    ],
)
def test_a_secret_that_cannot_work_stops_the_run_naming_its_variable(
    tmp_path, smtp_port, peers, variable, value, words
):
    root = project(tmp_path, smtp_port, *peers)
    code, out, err = run(root, {**SECRETS, variable: value})
    assert code == 1
    assert variable in err.decode() and words in err.decode()
    assert leaks(value, everything(root, [out, err])) == []


def test_credentials_in_a_url_are_refused_at_their_line(tmp_path, smtp_port, peers):
    twilio_url, graph_url = peers
    with_password = twilio_url.replace("http://", "http://AC1:Pw-in-url-9876@")
    root = project(tmp_path, smtp_port, with_password, graph_url)
    code, out, err = run(root, SECRETS)
    assert code == 1
    assert (
        "courtship.yaml:11:41: error schema[channels]" in err.decode()
        and "'base_url' is a URL with credentials in it" in err.decode()
        and "base_url_env" in err.decode()
    )
    assert leaks("Pw-in-url-9876", everything(root, [out, err])) == []


def test_nested_credentials_are_refused_at_their_line(tmp_path, smtp_port, peers):
    extra = "  team: {via: outbox, auth: {username: bot, password: Hunter-2-xyz}}\n"
    root = project(tmp_path, smtp_port, *peers, extra=extra)
    code, out, err = run(root, SECRETS)
    assert code == 1
    assert "courtship.yaml:14:45: error schema[channels]" in err.decode()
    assert "'auth.password' would put a secret in the project file" in err.decode()
    assert "password_env: TEAM_AUTH_PASSWORD" in err.decode()
    assert leaks("Hunter-2-xyz", everything(root, [out, err])) == []


class TestRedaction:
    def test_every_escaped_form_is_replaced(self):
        value = "Sëcret\r\n-value-42"
        remember(value, "T_SOME_VAR")
        encoded = {base64.b64encode(v.encode()).decode() for v in (value, value.strip())}
        for form in set(forms(value)) - encoded:  # base64: no form an error message takes
            text = redact(f"error: <{form}> and {form!r} and {json.dumps(form)}")
            assert form not in text and "[secret $T_SOME_VAR]" in text, form
        assert redact("nothing here") == "nothing here"
        assert redact(repr(ValueError(value))) == "ValueError('[secret $T_SOME_VAR]')"

    def test_a_unicode_error_is_described_without_its_text(self):
        try:
            ("\0user\0" + "pässwörd-Ωmega-2719").encode("ascii")
        except UnicodeEncodeError as error:
            text = describe(error)
        assert text == "UnicodeEncodeError: a value has characters the ascii codec cannot take"

    def test_secret_names_the_variable_never_the_value(self, monkeypatch):
        monkeypatch.setenv("T_TOKEN", "abc-ünicode-token")
        with pytest.raises(ChannelConfigError) as error:
            secret({"token_env": "T_TOKEN"}, "token_env", header=True)
        assert "T_TOKEN" in str(error.value) and "token_env" in str(error.value)
        assert "ünicode" not in str(error.value)
        assert secret({"token_env": "T_TOKEN"}, "token_env") == "abc-ünicode-token"


def test_an_smtp_server_quoting_the_password_back_has_it_taken_out(smtp_port, monkeypatch):
    from courtship_smtp import SMTPChannel

    from courtship.testing import sample_message

    monkeypatch.setenv("T_ASCII_PASSWORD", "ascii-Password-5531")
    channel = SMTPChannel(
        {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "timeout": 2,
            "from": "hello@lotus.example.org",
            "username": "hello",
            "password_env": "T_ASCII_PASSWORD",
        }
    )
    delivery = channel.send(sample_message(to="ada@example.org"))
    assert delivery.status == "failed"
    assert delivery.reason == "SMTP 535 5.7.8 bad password [secret $T_ASCII_PASSWORD]"


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=4, max_size=30).filter(lambda v: len(v.strip()) >= 4))
def test_no_form_of_any_secret_survives_redaction(value):
    forget_all()
    remember(value, "T_PROPERTY")
    encoded = {base64.b64encode(v.encode()).decode() for v in (value, value.strip())}
    for form in set(forms(value)) - encoded:
        text = redact(f"<{form}> {form!r} {json.dumps(form)} {ValueError(form)!r}")
        assert form not in text


class TestProjectFile:
    @pytest.mark.parametrize(
        "name",
        [
            "password",
            "pass",
            "pwd",
            "smtp_password",
            "credentials",
            "auth",
            "authToken",
            "api-key",
            "API_KEY",
            "client_secret",
            "secret",
            "bearer",
            "private_key",
            "passphrase",
        ],
    )
    def test_names_that_look_like_a_secret(self, name):
        assert looks_like_a_secret(name)

    @pytest.mark.parametrize(
        "name",
        [
            "password_env",
            "auth_token_env",
            "username",
            "token_url",
            "author",
            "status_callback",
            "verify",
            "max_segments",
            "ig_user_id",
            "account_sid",
            "from",
            "host",
            "keyword",
        ],
    )
    def test_names_that_do_not(self, name):
        assert not looks_like_a_secret(name)

    @pytest.mark.parametrize(
        "url",
        [
            "https://user:pw@api.example.org",
            "http://TOKEN@127.0.0.1:8000/x",
            "postgresql+psycopg://shop:hunter2@db/shop",
            " https://a:b@c ",
        ],
    )
    def test_urls_with_credentials(self, url):
        assert credentials_in_url(url)

    @pytest.mark.parametrize(
        "url",
        [
            "https://api.example.org/a?to=x@y.org",
            "postgresql://courtship@localhost/shop",
            "mailto:hello@example.org",
            "hello@example.org",
            "https://@example.org",
        ],
    )
    def test_urls_without(self, url):
        assert not credentials_in_url(url)

    def test_every_kind_is_a_finding_at_its_line_quoting_no_value(self, tmp_path):
        (tmp_path / "courtship.yaml").write_text(
            "channels:\n"
            "  email:\n"
            "    pwd: Value-One-1\n"
            "    auth: {username: bot, password: Value-Two-2}\n"
            "    password_env: Value Three 3\n"
            "    hooks: [{url: 'https://u:Value-Four-4@h.example'}]\n"
            "sources:\n"
            "  customers: {type: csv, path: c.csv, credentials: {key: Value-Five-5}}\n"
            "brand: {name: x, url: 'https://u:Value-Six-6@shop.example'}\n"
        )
        with pytest.raises(ProjectError) as caught:
            load_project(tmp_path)
        found = [(f.line, f.rule_id, f.message) for f in caught.value.findings]
        assert found == [
            (3, "schema[channels]", "'pwd' would put a secret in the project file"),
            (4, "schema[channels]", "'auth.password' would put a secret in the project file"),
            (
                5,
                "schema[channels]",
                "'password_env' must name an environment variable "
                "(letters, digits and _), not hold the secret itself",
            ),
            (
                6,
                "schema[channels]",
                "'hooks.0.url' is a URL with credentials in it (user:password@)",
            ),
            (8, "schema[sources]", "'credentials.key' would put a secret in the project file"),
            (9, "schema[brand]", "'url' is a URL with credentials in it (user:password@)"),
        ]
        text = str(caught.value)
        assert "Value" not in text


def test_the_password_inside_a_database_url_is_remembered_on_its_own(monkeypatch, tmp_path):
    from courtship_sql.source import _database_url

    from courtship.sources import SourceSettings

    monkeypatch.setenv("T_SHOP_DB_URL", "postgresql+psycopg://shop:Db-Pass-7781@127.0.0.1:1/s")
    config = SourceSettings({"url_env": "T_SHOP_DB_URL"}, "events", tmp_path, known={"url_env"})
    _database_url(config, tmp_path)
    assert redact("FATAL: password Db-Pass-7781 rejected") == (
        "FATAL: password [secret $T_SHOP_DB_URL] rejected"
    )
