"""The ASGI app of ``courtship serve`` (Starlette): providers' callbacks in, records out.

=========================  ===================================================================
``GET  /unsubscribe``      a confirmation page whose button POSTs the one-click form
``POST /unsubscribe``      RFC 8058 one-click (body ``List-Unsubscribe=One-Click``), ``?token=``
``POST /twilio/inbound``   Twilio's incoming SMS webhook (``X-Twilio-Signature``)
``POST /twilio/status``    Twilio's status callback (``X-Twilio-Signature``)
``GET  /instagram``        Meta's webhook handshake (``hub.mode=subscribe``)
``POST /instagram``        Instagram messages (``X-Hub-Signature-256``)
``POST /relay``            the mail relay's bounces and complaints (``X-Courtship-Signature``)
``GET  /health``           ``ok``
=========================  ===================================================================

A bad signature or token is answered 403 and writes nothing; a malformed body 400 with the
reason; an endpoint whose secret is not in the environment 503, naming the variable.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import html
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from courtship import callbacks
from courtship.callbacks import BadCallback, Forged
from courtship.project import Project
from courtship.serve.signatures import sha256_valid, twilio_valid
from courtship.state import StateError, StateStore, location_of, marker_of, open_store
from courtship.unsubscribe import Unsubscriber

#: A callback body larger than this is refused (413) before it is read whole.
MAX_BODY = 1_000_000
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@dataclass(frozen=True)
class Secrets:
    """The secrets of the callbacks, from the environment: (variable, value or None)."""

    twilio: tuple[str, str | None]
    meta_app: tuple[str, str | None]
    meta_verify: tuple[str, str | None]
    relay: tuple[str, str | None]

    @classmethod
    def of(cls, project: Project) -> Secrets:
        serve = project.serve
        sms = project.channels.get("sms", {})
        names = {
            "twilio": serve.get("twilio_auth_token_env")
            or sms.get("auth_token_env")
            or "TWILIO_AUTH_TOKEN",
            "meta_app": serve.get("meta_app_secret_env", "META_APP_SECRET"),
            "meta_verify": serve.get("meta_verify_token_env", "META_VERIFY_TOKEN"),
            "relay": serve.get("relay_secret_env", "COURTSHIP_RELAY_SECRET"),
        }
        return cls(**{key: (name, os.environ.get(name) or None) for key, name in names.items()})


def create_app(project: Project, *, clock: Callable[[], dt.datetime] | None = None) -> Starlette:
    """The app for ``project``: it writes to the project's state store."""
    try:
        state_path = location_of(project)
    except StateError as error:
        raise ValueError(f"{project.state_place}: {error}") from None
    if state_path is None:
        raise ValueError("the project has no state store (state: in courtship.yaml)")
    marker = marker_of(project)
    links = Unsubscriber.of(project)
    secrets = Secrets.of(project)
    public_url = (project.serve.get("public_url") or "").rstrip("/")
    soft_limit = int(project.serve.get("soft_bounces", callbacks.SOFT_BOUNCES))
    now = clock or (lambda: dt.datetime.now(dt.UTC))

    def write(action: Callable[[StateStore], object]) -> object:
        state = open_store(state_path, marker=marker)
        try:
            return action(state)
        finally:
            state.close()

    async def unsubscribe_page(request: Request) -> Response:
        token = request.query_params.get("token", "")
        if not token:
            return _bad("no token: the link is incomplete")
        if links.secret is None:
            return _unconfigured(links.secret_env)
        try:
            links.verify(token)
        except ValueError as error:
            return _forged(f"this unsubscribe link is not valid ({error})")
        action = html.escape(f"/unsubscribe?token={quote(token, safe='.')}", quote=True)
        return HTMLResponse(
            "<!doctype html><html><head><meta charset='utf-8'><title>Unsubscribe</title></head>"
            "<body><h1>Unsubscribe?</h1><p>You will no longer receive these messages.</p>"
            f"<form method='post' action='{action}'>"
            "<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
            "<button type='submit'>Unsubscribe</button></form></body></html>"
        )

    async def unsubscribe_post(request: Request) -> Response:
        body = await _body(request)
        fields = _form_fields(request.headers.get("content-type", ""), body)
        if fields is None:
            return _bad("the body is neither a form nor multipart/form-data")
        if fields.get("List-Unsubscribe") != "One-Click":
            return _bad("the body must be List-Unsubscribe=One-Click (RFC 8058)")
        token = request.query_params.get("token") or fields.get("token", "")
        if not token:
            return _bad("no token: the link is incomplete")
        if links.secret is None:
            return _unconfigured(links.secret_env)
        try:
            channel = write(lambda state: callbacks.unsubscribe(state, links, token, now()))
        except Forged as error:
            return _forged(f"this unsubscribe link is not valid ({error})")
        return HTMLResponse(
            "<!doctype html><html><head><meta charset='utf-8'><title>Unsubscribed</title></head>"
            f"<body><p>Done: you will get no more marketing by {html.escape(str(channel))}.</p>"
            "</body></html>"
        )

    def twilio(handler: Callable[..., str]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            name, token = secrets.twilio
            if token is None:
                return _unconfigured(name)
            body = await _body(request)
            try:
                pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
            except (UnicodeDecodeError, ValueError):
                pairs = None
            url = str(request.url)
            if public_url:
                query = f"?{request.url.query}" if request.url.query else ""
                url = f"{public_url}{request.url.path}{query}"
            signature = request.headers.get("x-twilio-signature", "")
            if not signature or not twilio_valid(token, url, pairs or [], signature):
                return _forged("X-Twilio-Signature does not match this request")
            if pairs is None:
                return _bad("the body is not application/x-www-form-urlencoded")
            try:
                write(lambda state: handler(state, dict(pairs), now()))
            except BadCallback as error:
                return _bad(str(error))
            return Response(EMPTY_TWIML, media_type="text/xml")

        return endpoint

    async def meta_handshake(request: Request) -> Response:
        name, verify = secrets.meta_verify
        if verify is None:
            return _unconfigured(name)
        query = request.query_params
        if query.get("hub.mode") != "subscribe" or "hub.challenge" not in query:
            return _bad("expected hub.mode=subscribe, hub.verify_token and hub.challenge")
        if query.get("hub.verify_token") != verify:
            return _forged("hub.verify_token is not ours")
        return PlainTextResponse(query["hub.challenge"])

    def signed_json(
        secret: tuple[str, str | None], header: str, handler: Callable[[StateStore, object], object]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            name, key = secret
            if key is None:
                return _unconfigured(name)
            body = await _body(request)
            if not sha256_valid(key, body, request.headers.get(header)):
                return _forged(f"{header} does not match the body")
            try:
                payload = json.loads(body)
            except (UnicodeDecodeError, ValueError) as error:
                return _bad(f"the body is not JSON ({error})")
            try:
                result = write(lambda state: handler(state, payload))
            except BadCallback as error:
                return _bad(str(error))
            return Response(
                json.dumps({"ok": True, "recorded": result}), media_type="application/json"
            )

        return endpoint

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/unsubscribe", unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe", unsubscribe_post, methods=["POST"]),
        Route("/twilio/inbound", twilio(callbacks.twilio_inbound), methods=["POST"]),
        Route("/twilio/status", twilio(callbacks.twilio_status), methods=["POST"]),
        Route("/instagram", meta_handshake, methods=["GET"]),
        Route(
            "/instagram",
            signed_json(
                secrets.meta_app,
                "x-hub-signature-256",
                lambda state, payload: callbacks.instagram(state, payload, now()),
            ),
            methods=["POST"],
        ),
        Route(
            "/relay",
            signed_json(
                secrets.relay,
                "x-courtship-signature",
                lambda state, payload: callbacks.relay(state, payload, now(), soft_limit),
            ),
            methods=["POST"],
        ),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={_TooLarge: _too_large, StateError: _state_unusable},
    )


class _TooLarge(Exception):
    pass


async def _too_large(request: Request, error: Exception) -> Response:
    return PlainTextResponse(f"refused: the body is over {MAX_BODY} bytes\n", status_code=413)


async def _state_unusable(request: Request, error: Exception) -> Response:
    # the provider retries later: nothing is lost while the store is restored
    return PlainTextResponse(f"the state store cannot be used: {error}\n", status_code=503)


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise _TooLarge
    body = await request.body()
    if len(body) > MAX_BODY:
        raise _TooLarge
    return body


def _form_fields(content_type: str, body: bytes) -> dict[str, str] | None:
    """The fields of a urlencoded or multipart form (RFC 8058 allows both); None if neither."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not message.is_multipart():
            return None
        fields = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                fields[name] = str(part.get_content()).strip()
        return fields
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return None


def _bad(reason: str) -> Response:
    return PlainTextResponse(f"bad request: {reason}\n", status_code=400)


def _forged(reason: str) -> Response:
    return PlainTextResponse(f"refused: {reason}\n", status_code=403)


def _unconfigured(variable: str) -> Response:
    return PlainTextResponse(
        f"not configured: set the environment variable {variable} for `courtship serve`\n",
        status_code=503,
    )
