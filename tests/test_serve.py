"""`courtship serve`: providers' callbacks, each checked as the provider signs it, turned into
records the next run reads. Most requests go through Starlette's TestClient; the end-to-end test
runs uvicorn on 127.0.0.1 and a real SMTP server, and POSTs the List-Unsubscribe URL a captured
email carries."""

import base64
import datetime as dt
import hashlib
import hmac
import json
import socket
import threading
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from conftest import drop_schema, postgres_schema
from starlette.testclient import TestClient
from typer.testing import CliRunner

from courtship.cli import app as cli
from courtship.project import Project
from courtship.serve.app import create_app
from courtship.serve.signatures import twilio_signature, twilio_valid
from courtship.state import location_of, open_store
from courtship.unsubscribe import Unsubscriber

NOW = dt.datetime(2026, 11, 23, 16, 0, tzinfo=dt.UTC)
TWILIO_TOKEN = "twilio-auth-token-for-tests"
META_SECRET = "meta-app-secret"
RELAY_SECRET = "relay-secret"
UNSUBSCRIBE_SECRET = "unsubscribe-secret"
PUBLIC = "https://hooks.lotus.example.org"
runner = CliRunner()


# ── the providers' documented signatures ─────────────────────────────────


def test_twilio_signature_matches_twilios_documented_example():
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert twilio_signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert twilio_valid("12345", url, params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    # Twilio may sign the URL with its default port: both forms are accepted
    assert twilio_valid(
        "12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2", params.items(),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
    )  # fmt: skip
    assert not twilio_valid(
        "12345", url, [*params.items(), ("x", "1")], "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    )
    assert not twilio_valid("54321", url, params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_unsubscribe_tokens_cannot_be_forged_or_moved(monkeypatch):
    monkeypatch.setenv("COURTSHIP_UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET)
    links = Unsubscriber.of(_project(Path("/nowhere")))
    token = links.token("c-0042", "email")
    assert links.verify(token) == ("c-0042", "email")
    key, who, channel, mac = token.split(".")
    other = base64.urlsafe_b64encode(b"c-0043").rstrip(b"=").decode()
    for forged in (
        f"{key}.{other}.{channel}.{mac}",
        f"{key}.{who}.sms.{mac}",
        f"2.{who}.{channel}.{mac}",
        "x",
    ):
        with pytest.raises(ValueError):
            links.verify(forged)
    monkeypatch.setenv("COURTSHIP_UNSUBSCRIBE_SECRET", "another secret")
    with pytest.raises(ValueError, match="signature"):
        Unsubscriber.of(_project(Path("/nowhere"))).verify(token)
    assert links.url("c-0042", "email") == f"{PUBLIC}/unsubscribe?token={token}"


# ── the app, through TestClient ──────────────────────────────────────────


def _project(root: Path) -> Project:
    return Project(
        root=root,
        playbooks=root / "playbooks",
        state=root / "state.sqlite",
        unsubscribe={"base_url": f"{PUBLIC}/unsubscribe"},
        serve={"public_url": PUBLIC, "twilio_auth_token_env": "TEST_TWILIO_TOKEN"},
    )


@pytest.fixture
def secrets(monkeypatch):
    monkeypatch.setenv("TEST_TWILIO_TOKEN", TWILIO_TOKEN)
    monkeypatch.setenv("META_APP_SECRET", META_SECRET)
    monkeypatch.setenv("META_VERIFY_TOKEN", "verify-me")
    monkeypatch.setenv("COURTSHIP_RELAY_SECRET", RELAY_SECRET)
    monkeypatch.setenv("COURTSHIP_UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET)


@pytest.fixture(params=["sqlite", "postgres"])
def served(request, tmp_path, secrets):
    """The app on a SQLite store, and on a fresh schema of the test PostgreSQL server."""
    project, handle = _project(tmp_path), None
    if request.param == "postgres":
        project.state, (project.state_url, handle) = None, postgres_schema()
    with TestClient(create_app(project, clock=lambda: NOW)) as client:
        yield client, project
    if handle is not None:
        drop_schema(handle)


def recorded(project: Project) -> tuple[list, list]:
    state = open_store(location_of(project))
    try:
        return state.consent_changes(), state.callbacks()
    finally:
        state.close()


def twilio_post(client, path, params, token=TWILIO_TOKEN, url=None):
    signature = twilio_signature(token, url or f"{PUBLIC}{path}", params.items())
    return client.post(
        path,
        content=urlencode(params),
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )


INBOUND = {
    "ToCountry": "US",
    "SmsMessageSid": "SM" + "1" * 32,
    "NumMedia": "0",
    "SmsSid": "SM" + "1" * 32,
    "SmsStatus": "received",
    "To": "+15550100000",
    "NumSegments": "1",
    "MessageSid": "SM" + "1" * 32,
    "AccountSid": "AC" + "0" * 32,
    "From": "+447700900001",
    "ApiVersion": "2010-04-01",
}


@pytest.mark.parametrize(
    "word", ["STOP", "stop", " Stopall ", "UNSUBSCRIBE", "cancel", "END", "quit"]
)
def test_a_signed_sms_stop_withdraws_all_sms(served, word):
    client, project = served
    answer = twilio_post(client, "/twilio/inbound", INBOUND | {"Body": word})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    (change,), _ = recorded(project)
    assert change["channel"] == "sms" and change["change"] == "withdrawn"
    assert (change["scope"], change["source"], change["address"]) == (
        "all",
        "sms-stop",
        "+447700900001",
    )
    assert change["at"] == NOW


def test_twilio_advanced_opt_out_says_which_list_a_custom_keyword_matched(served):
    client, project = served
    custom = INBOUND | {"Body": "ARRET", "OptOutType": "STOP"}
    assert twilio_post(client, "/twilio/inbound", custom).status_code == 200
    (change,), _ = recorded(project)
    assert (change["source"], change["detail"]) == ("sms-stop", "ARRET")


def test_start_gives_consent_back_help_is_recorded_other_texts_are_messages(served):
    client, project = served
    for body in ("START", "HELP", "Is my order on its way?"):
        assert twilio_post(client, "/twilio/inbound", INBOUND | {"Body": body}).status_code == 200
    changes, heard = recorded(project)
    assert [(c["change"], c["source"]) for c in changes] == [("given", "sms-start")]
    assert [(h["kind"], h["detail"]) for h in heard] == [
        ("help", "HELP"),
        ("inbound", "Is my order on its way?"),
    ]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: (
            p | {"Body": "STOP", "From": "+447700900002"},
            TWILIO_TOKEN,
        ),  # signed other From
        lambda p: (p | {"Body": "STOP"}, "not-the-token"),
    ],
)
def test_a_forged_twilio_request_is_refused_and_writes_nothing(served, tamper):
    client, project = served
    params, token = tamper(INBOUND)
    signature = twilio_signature(
        token, f"{PUBLIC}/twilio/inbound", (INBOUND | {"Body": "STOP"}).items()
    )
    answer = client.post(
        "/twilio/inbound",
        content=urlencode(params),
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert answer.status_code == 403
    assert recorded(project) == ([], [])


def test_a_twilio_request_without_a_signature_or_a_from_is_refused(served):
    client, project = served
    plain = client.post("/twilio/inbound", content=urlencode(INBOUND | {"Body": "STOP"}))
    assert plain.status_code == 403
    no_from = {k: v for k, v in INBOUND.items() if k != "From"} | {"Body": "STOP"}
    answer = twilio_post(client, "/twilio/inbound", no_from)
    assert answer.status_code == 400 and "no From parameter" in answer.text
    assert recorded(project) == ([], [])


def test_status_callbacks_are_recorded_against_the_outbox_row(served):
    client, project = served
    state = open_store(location_of(project))
    row = ("k1", "c-001", "p", "sms", "marketing", "direct", None, "t", "t", "delivered")
    state.record(
        NOW, {}, [(*row, "", "hi", "sms", "{}", None, None, None, 1, "SM" + "9" * 32, None)]
    )
    state.close()
    status = {"MessageSid": "SM" + "9" * 32, "To": "+447700900001", "AccountSid": "AC" + "0" * 32}
    for name in ("sent", "delivered"):
        assert (
            twilio_post(client, "/twilio/status", status | {"MessageStatus": name}).status_code
            == 200
        )
    failed = status | {"MessageStatus": "undelivered", "ErrorCode": "21610"}
    assert twilio_post(client, "/twilio/status", failed).status_code == 200
    changes, heard = recorded(project)
    assert [(h["kind"], h["send_key"], h["detail"]) for h in heard] == [
        ("delivered", "k1", None),
        ("undelivered", "k1", "error 21610"),
    ]
    assert [(c["source"], c["address"]) for c in changes] == [("twilio-21610", "+447700900001")]


def test_meta_handshake(served):
    client, _ = served
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": "verify-me",
        "hub.challenge": "1158201444",
    }
    answer = client.get("/instagram", params=query)
    assert (answer.status_code, answer.text) == (200, "1158201444")
    assert client.get("/instagram", params=query | {"hub.verify_token": "guess"}).status_code == 403
    assert client.get("/instagram", params={"hub.mode": "subscribe"}).status_code == 400


INSTAGRAM = {
    "object": "instagram",
    "entry": [
        {
            "time": 1764000000000,
            "id": "17841400000000000",
            "messaging": [
                {
                    "sender": {"id": "igc001"},
                    "recipient": {"id": "17841400000000000"},
                    "timestamp": 1764000000000,
                    "message": {"mid": "aWdfZAG1faXRlbTox", "text": "Do you have it in blue?"},
                },
                {
                    "sender": {"id": "17841400000000000"},
                    "recipient": {"id": "igc001"},
                    "timestamp": 1764000001000,
                    "message": {"mid": "aWdfZAG1faXRlbToy", "text": "Yes!", "is_echo": True},
                },
            ],
        }
    ],
}


def meta_post(client, payload, secret=META_SECRET):
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post("/instagram", content=body, headers={"X-Hub-Signature-256": signature})


def test_instagram_messages_are_inbound_messages_of_the_sender(served):
    client, project = served
    assert meta_post(client, INSTAGRAM).status_code == 200
    _, (heard,) = recorded(project)
    assert (heard["kind"], heard["channel"], heard["address"]) == ("inbound", "instagram", "igc001")
    assert heard["at"] == dt.datetime(2025, 11, 24, 16, 0, tzinfo=dt.UTC)
    assert meta_post(client, INSTAGRAM, secret="wrong").status_code == 403
    answer = meta_post(client, {"object": "page", "entry": []})
    assert answer.status_code == 400 and "instagram" in answer.text
    assert len(recorded(project)[1]) == 1


def relay_post(client, payload, secret=RELAY_SECRET):
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post("/relay", content=body, headers={"X-Courtship-Signature": signature})


def test_relay_bounces_complaints_and_soft_bounces(served):
    client, project = served
    answer = relay_post(
        client,
        {
            "events": [
                {"type": "bounce", "email": "Ann@Example.org", "reason": "550 5.1.1 no such user"},
                {"type": "complaint", "email": "bea@example.org"},
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    soft = {"events": [{"type": "soft-bounce", "email": "cy@example.org", "reason": "452 full"}]}
    for _ in range(2):
        relay_post(client, soft)
    assert len(recorded(project)[0]) == 2  # two soft bounces: not yet
    relay_post(client, soft)
    changes, _ = recorded(project)
    assert [(c["source"], c["scope"], c["address"]) for c in changes] == [
        ("hard-bounce", "all", "ann@example.org"),
        ("complaint", "marketing", "bea@example.org"),
        ("soft-bounces", "all", "cy@example.org"),
    ]


def test_relay_soft_bounces_between_deliveries_do_not_add_up(served):
    client, project = served
    soft = {"events": [{"type": "soft-bounce", "email": "cy@example.org"}]}
    delivered = {"events": [{"type": "delivered", "email": "cy@example.org"}]}
    for payload in (soft, soft, delivered, soft, soft):
        assert relay_post(client, payload).status_code == 200
    assert recorded(project)[0] == []


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"events": [{"type": "bounced", "email": "a@example.org"}]}, "events[0].type"),
        ({"events": [{"type": "bounce", "email": "nobody"}]}, "events[0].email"),
        ({"events": [{"type": "bounce", "email": "a@x.org", "at": "yesterday"}]}, "events[0].at"),
        ({"bounces": []}, 'expected {"events"'),
    ],
)
def test_a_malformed_relay_body_is_a_400_with_the_reason(served, payload, reason):
    client, project = served
    answer = relay_post(client, payload)
    assert answer.status_code == 400 and reason in answer.text
    assert recorded(project) == ([], [])


def test_a_relay_body_with_a_wrong_signature_is_refused(served):
    client, project = served
    payload = {"events": [{"type": "bounce", "email": "a@example.org"}]}
    assert relay_post(client, payload, secret="guess").status_code == 403
    no_header = client.post("/relay", content=json.dumps(payload))
    assert no_header.status_code == 403
    assert recorded(project) == ([], [])


def test_one_click_unsubscribe(served):
    client, project = served
    token = Unsubscriber.of(project).token("c-0042", "email")
    page = client.get(f"/unsubscribe?token={token}")
    assert (
        page.status_code == 200 and "List-Unsubscribe" in page.text and "method='post'" in page.text
    )
    assert recorded(project) == ([], [])  # a GET (a link scanner) changes nothing
    answer = client.post(
        f"/unsubscribe?token={token}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    (change,), _ = recorded(project)
    assert (change["customer_id"], change["channel"], change["scope"]) == (
        "c-0042",
        "email",
        "marketing",
    )


def test_one_click_unsubscribe_as_multipart_form_data(served):
    client, project = served
    token = Unsubscriber.of(project).token("c-0042", "email")
    answer = client.post(
        f"/unsubscribe?token={token}", files={"List-Unsubscribe": (None, "One-Click")}
    )
    assert answer.status_code == 200, answer.text
    assert len(recorded(project)[0]) == 1


def test_a_forged_or_malformed_unsubscribe_writes_nothing(served):
    client, project = served
    token = Unsubscriber.of(project).token("c-0042", "email")
    forged = token.replace(token.split(".")[1], "Yy0wMDQz")
    one_click = {"content": "List-Unsubscribe=One-Click"}
    assert client.post(f"/unsubscribe?token={forged}", **one_click).status_code == 403
    assert client.get(f"/unsubscribe?token={forged}").status_code == 403
    assert client.post("/unsubscribe?c=c-0042", **one_click).status_code == 400
    wrong_body = client.post(f"/unsubscribe?token={token}", content="unsubscribe=yes")
    assert wrong_body.status_code == 400 and "List-Unsubscribe=One-Click" in wrong_body.text
    assert recorded(project) == ([], [])


def test_an_endpoint_without_its_secret_answers_503_naming_it(tmp_path, monkeypatch):
    for name in ("TEST_TWILIO_TOKEN", "META_APP_SECRET", "COURTSHIP_RELAY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    project = _project(tmp_path)
    with TestClient(create_app(project)) as client:
        answer = client.post("/relay", content="{}")
        assert answer.status_code == 503 and "COURTSHIP_RELAY_SECRET" in answer.text
        assert client.post("/twilio/inbound", content="").status_code == 503
    assert recorded(project) == ([], [])


def test_courtship_help_does_not_import_the_server():
    import subprocess
    import sys

    code = (
        "import sys\nfrom courtship.cli import app\nfrom typer.testing import CliRunner\n"
        "CliRunner().invoke(app, ['--help'])\n"
        "print(sorted(m for m in ('starlette', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ── end to end: run → capture at SMTP → POST the List-Unsubscribe URL to uvicorn → next run ──


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Capture:
    """An aiosmtpd handler keeping every DATA as it came over the wire."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.raw.append(envelope.content)
        return "250 accepted"


class Served:
    """uvicorn on a socket of 127.0.0.1 bound before it starts: requests wait in the backlog
    until it accepts them, so no test waits on a clock."""

    def __init__(self, app) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]})

    def __enter__(self) -> "Served":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


NEWS = """\
id: news
title: News
stage: active
category: marketing
trigger: {event: order}
respond:
  - send: {channel: email, template: news}
"""
RECEIPT = """\
id: receipt
title: Receipt
stage: active
category: transactional
trigger: {event: order}
respond:
  - send: {channel: email, template: receipt}
"""


def shop(root: Path, smtp_port: int) -> Path:
    (root / "playbooks" / "templates").mkdir(parents=True)
    (root / "playbooks" / "news.yaml").write_text(NEWS)
    (root / "playbooks" / "receipt.yaml").write_text(RECEIPT)
    (root / "playbooks" / "templates" / "news.md").write_text(
        "---\nsubject: Zoë, du nouveau chez nous ✨\n---\nChère {{ first_name }}, voici nos "
        "nouveautés — à très vite !\n"
    )
    (root / "playbooks" / "templates" / "receipt.md").write_text(
        "---\nsubject: Merci {{ first_name }}\n---\nMerci {{ first_name }}, votre reçu.\n"
    )
    header = (
        "customer_id,first_name,last_name,email,phone,timezone,stage,preferred_channel,"
        "cadence_days,tone,consent_email,consent_sms"
    )
    (root / "customers.csv").write_text(
        f"{header}\nc001,Zoë,Ångström,zoe@example.org,+447700900001,UTC,active,email,0,direct,"
        "true,true\n"
    )
    orders = [
        {"customer_id": "c001", "type": "order", "at": at, "amount": 20}
        for at in ("2026-11-23T12:00:00Z", "2026-11-24T12:00:00Z")
    ]
    (root / "events.jsonl").write_text("".join(json.dumps(o) + "\n" for o in orders))
    (root / "courtship.yaml").write_text(
        f"""\
playbooks: playbooks
customers: customers.csv
events: events.jsonl
state: state.sqlite
caps: {{per_moment: 2}}
brand: {{name: Lotus, url: https://lotus.example.org}}
unsubscribe: {{base_url: {PUBLIC}/unsubscribe}}
serve: {{public_url: {PUBLIC}}}
channels:
  email: {{host: 127.0.0.1, port: {smtp_port}, security: none, from: hello@lotus.example.org,
          timeout: 2, local_hostname: courtship.test}}
"""
    )
    return root


def courtship(*args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_an_unsubscribe_posted_to_serve_stops_the_next_marketing_email(tmp_path, secrets):
    capture = Capture()
    smtp = Controller(capture, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        root = shop(tmp_path, smtp.port)
        courtship("run", "--at", "2026-11-23T15:00:00Z", "-p", str(root), "-q")
    finally:
        smtp.stop()
    emails = [message_from_bytes(raw, policy=policy.default) for raw in capture.raw]
    assert sorted(e["Subject"] for e in emails) == ["Merci Zoë", "Zoë, du nouveau chez nous ✨"]
    for raw in capture.raw:  # 7-bit clean, every line
        assert all(line.isascii() for line in raw.split(b"\r\n"))
    news = next(e for e in emails if "nouveau" in e["Subject"])
    assert "Chère Zoë, voici nos nouveautés — à très vite !" in news.get_content()
    link = news["List-Unsubscribe"].strip("<>")
    assert news["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link.startswith(f"{PUBLIC}/unsubscribe?token=") and link in news.get_content()

    # A mail client POSTs the link (RFC 8058); the proxy in front of serve passes the path.
    project = _project(root)
    evening = dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC)  # between the two runs
    with Served(create_app(project, clock=lambda: evening)) as served:
        parts = urlsplit(link)
        answer = httpx.post(
            f"{served.url}{parts.path}?{parts.query}",
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 200, answer.text

    capture.raw.clear()
    smtp = Controller(capture, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        root_yaml = (root / "courtship.yaml").read_text()
        (root / "courtship.yaml").write_text(re_port(root_yaml, smtp.port))
        courtship("run", "--at", "2026-11-24T15:00:00Z", "-p", str(root), "-q")
    finally:
        smtp.stop()
    subjects = [message_from_bytes(raw, policy=policy.default)["Subject"] for raw in capture.raw]
    assert subjects == ["Merci Zoë"]  # the receipt still goes; the marketing does not
    told = courtship("explain", "c001", "--at", "2026-11-24T15:00:00Z", "-p", str(root))
    assert "email consent for marketing withdrawn on " in told
    assert "by a one-click unsubscribe" in told


def re_port(text: str, port: int) -> str:
    import re

    return re.sub(r"port: \d+", f"port: {port}", text)


PROMO = """
    id: promo
    title: Promo
    stage: active
    category: marketing
    trigger: {event: order}
    respond:
      - send: {channel: sms, template: hello}
"""
STATUS = """
    id: status
    title: Order status
    stage: active
    category: transactional
    trigger: {event: order}
    respond:
      - send: {channel: sms, template: hello}
"""


def _world_app(world):
    project = _project(world.root)
    return TestClient(create_app(project, clock=lambda: NOW - dt.timedelta(hours=2)))


def test_a_signed_stop_stops_the_next_marketing_sms_and_a_forged_one_is_refused(world, secrets):
    from conftest import customer

    world.playbook(PROMO)
    world.customers.append(customer("c-001", preferred="sms", cadence=0))
    world.event("c-001", "order", "2026-11-23T12:00:00Z")
    assert [(d.playbook, d.status) for d in world.plan().decisions] == [("promo", "send")]
    stop = INBOUND | {"From": "+447700900001", "Body": "STOP"}
    with _world_app(world) as client:
        forged = twilio_post(client, "/twilio/inbound", stop, token="guessed")
        assert forged.status_code == 403
        assert world.state.count("consent_changes") == 0
        assert [d.status for d in world.plan().decisions] == ["send"]
        assert twilio_post(client, "/twilio/inbound", stop).status_code == 200
    (decision,) = world.plan().decisions
    assert (decision.status, decision.guard) == ("blocked", "no-consent")
    # from its moment on: a replay of a moment before the STOP still sends
    earlier = world.plan(at=NOW - dt.timedelta(hours=2, seconds=1)).decisions
    assert [d.status for d in earlier] == ["send"]


def test_a_stop_stops_transactional_sms_too_and_start_gives_it_back(world, secrets):
    from conftest import customer

    world.playbook(STATUS)
    world.customers.append(customer("c-001", preferred="sms", cadence=0))
    world.event("c-001", "order", "2026-11-23T12:00:00Z")
    with _world_app(world) as client:
        twilio_post(
            client, "/twilio/inbound", INBOUND | {"From": "+44 7700 900001", "Body": "STOP"}
        )
        assert [d.status for d in world.plan().decisions] == ["blocked"]
        twilio_post(client, "/twilio/inbound", INBOUND | {"From": "+447700900001", "Body": "START"})
    assert [d.status for d in world.plan().decisions] == ["send"]


def test_an_email_unsubscribe_stops_marketing_only(world, secrets):
    from conftest import customer

    world.playbook(PROMO.replace("channel: sms", "channel: email"))
    world.playbook(STATUS.replace("channel: sms", "channel: email"))
    world.customers.append(customer("c-001", preferred="email", cadence=0))
    world.event("c-001", "order", "2026-11-23T12:00:00Z")
    token = Unsubscriber.of(_project(world.root)).token("c-001", "email")
    with _world_app(world) as client:
        client.post(f"/unsubscribe?token={token}", content="List-Unsubscribe=One-Click")
    decided = sorted((d.playbook, d.status, d.guard) for d in world.plan().decisions)
    assert decided == [("promo", "blocked", "no-consent"), ("status", "send", "")]


def test_a_hard_bounce_stops_all_email_to_that_address(world, secrets):
    from conftest import customer

    world.playbook(STATUS.replace("channel: sms", "channel: email"))
    world.customers.append(customer("c-001", preferred="email", cadence=0))
    world.event("c-001", "order", "2026-11-23T12:00:00Z")
    with _world_app(world) as client:
        relay_post(client, {"events": [{"type": "bounce", "email": "C-001@example.org"}]})
    assert [(d.status, d.guard) for d in world.plan().decisions] == [("blocked", "no-consent")]


def test_an_inbound_sms_is_the_customer_answering(world, secrets):
    from conftest import customer

    world.playbook(
        """
        id: answer
        title: Answer
        stage: active
        category: transactional
        trigger: {event: inbound_message}
        respond:
          - send: {channel: sms, template: hello}
        """
    )
    world.customers.append(customer("c-001", preferred="sms", cadence=0))
    assert world.plan().decisions == []
    with _world_app(world) as client:
        body = INBOUND | {"From": "+447700900001", "Body": "Where is my parcel?"}
        assert twilio_post(client, "/twilio/inbound", body).status_code == 200
    (decision,) = world.plan().decisions
    assert (decision.playbook, decision.status) == ("answer", "send")


def test_a_message_decided_before_a_stop_and_still_in_the_outbox_is_not_sent(world, secrets):
    from conftest import customer

    from courtship.delivery import Dispatcher
    from courtship.engine.consent import withdrawn_for

    world.playbook(PROMO)
    world.customers.append(customer("c-001", preferred="sms", cadence=0))
    world.event("c-001", "order", "2026-11-23T12:00:00Z")
    world.run()  # decided and recorded, not yet delivered (a crash, a retry)
    with _world_app(world) as client:
        twilio_post(client, "/twilio/inbound", INBOUND | {"From": "+447700900001", "Body": "STOP"})

    class Refusing:
        def check(self, message):
            return None

        def send(self, message):  # pragma: no cover - the test fails if it is called
            raise AssertionError("a message to a number that replied STOP was sent")

    report = Dispatcher(world.state, {"sms": Refusing()}).dispatch(NOW)
    (failure,) = report.failures
    assert failure["reason"].startswith(
        "sms: sms consent withdrawn on 2026-11-23 14:00 UTC by an SMS STOP"
    )
    changes = world.state.consent_changes()
    assert withdrawn_for(changes, "c-001", "sms", "+447700900001", marketing=False, now=NOW)
    assert (
        withdrawn_for(changes, "c-001", "email", "c-001@example.org", marketing=True, now=NOW)
        is None
    )


def test_a_link_needs_the_secret_and_carries_a_token_for_its_customer(world, monkeypatch):
    from conftest import customer

    world.playbook(PROMO.replace("channel: sms", "channel: email"))
    world.customers.append(customer("c-001", preferred="email", cadence=0))
    world.event("c-001", "order", "2026-11-23T12:00:00Z")
    settings = {"unsubscribe": {"base_url": f"{PUBLIC}/unsubscribe"}}
    monkeypatch.delenv("COURTSHIP_UNSUBSCRIBE_SECRET", raising=False)
    (decision,) = world.plan(**settings).decisions
    assert decision.unsubscribe_url is None  # the email channel refuses it, saying why
    monkeypatch.setenv("COURTSHIP_UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET)
    (decision,) = world.plan(**settings).decisions
    url = decision.unsubscribe_url
    assert url.startswith(f"{PUBLIC}/unsubscribe?token=") and "c-001" not in url
    links = Unsubscriber.of(_project(world.root))
    assert links.verify(url.split("token=")[1]) == ("c-001", "email")
    # without unsubscribe.base_url, the link is at brand.url, as before
    (decision,) = world.plan(brand={"url": "https://lotus.example.org"}).decisions
    assert decision.unsubscribe_url.startswith("https://lotus.example.org/unsubscribe?token=")


def test_courtship_serve_says_what_is_wrong_with_the_project(tmp_path):
    (tmp_path / "courtship.yaml").write_text("serve: {public_url: hooks.example.org}\n")
    result = runner.invoke(cli, ["serve", "-p", str(tmp_path)])
    assert result.exit_code == 1
    assert "courtship.yaml:1:" in result.output and "public_url" in result.output
