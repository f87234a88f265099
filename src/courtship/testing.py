"""A pytest plugin for plugin authors: the channel and source contract kits, a local HTTP peer.

Installed with Courtship (entry point ``pytest11: courtship``), so any test suite can write::

    from courtship.testing import ChannelContract, HTTPPeer, sample_message

    class TestMyChannel(ChannelContract):
        @pytest.fixture
        def channel(self, peer): ...          # the channel under test, pointed at a local peer
        @pytest.fixture
        def message(self): ...                # a message the channel can send
        @pytest.fixture
        def received(self, peer): ...         # a callable: what the peer got, one item per message

and every test of :class:`ChannelContract` runs against the channel. Optional fixtures:
``unreachable_channel`` (the same channel pointed at a peer that does not answer) and
``secrets`` (the secret values in the channel's settings, which must never leak).

A source's tests subclass :class:`SourceContract` and provide ``source_customers`` and
``source_events`` (sources of each role over the same small data) and ``since`` (an instant with
a zone, with events on both sides of it)::

    class TestMySource(SourceContract):
        @pytest.fixture
        def source_customers(self, tmp_path): ...
        @pytest.fixture
        def source_events(self, tmp_path): ...
        @pytest.fixture
        def since(self): return datetime(2024, 5, 1, 12, tzinfo=UTC)

The ``courtship_plugin_manager`` fixture gives a fresh plugin manager with nothing loaded;
register the plugin under test on it (``pm.register(module, name)``).
"""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import pytest

from courtship.channels import Channel, Delivery, Message

if TYPE_CHECKING:
    import pluggy

__all__ = [
    "ChannelContract",
    "HTTPPeer",
    "PeerRequest",
    "PeerResponse",
    "SourceContract",
    "sample_message",
]


def sample_message(**overrides: Any) -> Message:
    """A transactional message to Ada, with ``overrides`` applied (``to=...``, ``channel=...``)."""
    message = Message(
        key="welcome:c-001:2024-05-01",
        customer_id="c-001",
        playbook="welcome",
        category="transactional",
        channel="outbox",
        to="ada@example.org",
        subject="Welcome, Ada",
        text="Hi Ada, welcome aboard. Sam at Lotus & Co",
        hours_since_last_inbound=2.0,
    )
    return replace(message, **overrides)


# ---------------------------------------------------------------------------------------------
# The channel contract
# ---------------------------------------------------------------------------------------------


class ChannelContract:
    """Tests every channel passes. Subclass it as ``TestXxx`` and provide the fixtures
    ``channel``, ``message`` (sendable by ``channel``) and ``received`` (a callable returning
    the list of what the peer received, one item per delivered message)."""

    @pytest.fixture
    def unreachable_channel(self) -> Channel:
        """The channel pointed at a peer that cannot be reached. Override to enable the tests."""
        pytest.skip("provide an `unreachable_channel` fixture to check failures are returned")

    @pytest.fixture
    def secrets(self) -> list[str]:
        """The secret values in the channel's settings. Override to enable the leak checks."""
        return []

    def test_channel_has_a_name(self, channel: Channel) -> None:
        assert isinstance(channel.name, str)
        assert channel.name

    def test_channel_follows_the_protocol(self, channel: Channel) -> None:
        assert isinstance(channel, Channel), "a channel needs name, check() and send()"

    def test_check_returns_none_or_a_reason(self, channel: Channel, message: Message) -> None:
        answer = channel.check(message)
        assert answer is None or (isinstance(answer, str) and answer.strip())

    def test_check_accepts_the_sample_message(self, channel: Channel, message: Message) -> None:
        assert channel.check(message) is None, "the `message` fixture must be sendable"

    def test_check_sends_nothing(
        self, channel: Channel, message: Message, received: Callable[[], list[Any]]
    ) -> None:
        channel.check(message)
        assert received() == []

    def test_send_delivers_once(
        self, channel: Channel, message: Message, received: Callable[[], list[Any]]
    ) -> None:
        delivery = channel.send(message)
        assert isinstance(delivery, Delivery)
        assert delivery.status == "delivered", delivery.reason
        assert delivery.provider_id is None or isinstance(delivery.provider_id, str)
        assert len(received()) == 1

    def test_distinct_keys_deliver_separately(
        self, channel: Channel, message: Message, received: Callable[[], list[Any]]
    ) -> None:
        first = channel.send(message)
        second = channel.send(replace(message, key=message.key + ":again"))
        assert (first.status, second.status) == ("delivered", "delivered")
        assert len(received()) == 2

    def test_repeated_key_is_delivered_once(
        self, channel: Channel, message: Message, received: Callable[[], list[Any]]
    ) -> None:
        if not getattr(channel, "idempotent", False):
            pytest.skip("the channel does not claim idempotency (idempotent = True)")
        assert channel.send(message).status == "delivered"
        assert channel.send(message).status == "delivered"
        assert len(received()) == 1

    def test_unreachable_peer_returns_a_delivery(
        self, unreachable_channel: Channel, message: Message
    ) -> None:
        delivery = unreachable_channel.send(message)  # must not raise
        assert isinstance(delivery, Delivery)
        assert delivery.status in ("retry", "failed")
        assert delivery.reason.strip()
        assert delivery.retry_after is None or delivery.retry_after >= 0

    def test_secrets_stay_out_of_repr(self, channel: Channel, secrets: list[str]) -> None:
        if not secrets:
            pytest.skip("provide a `secrets` fixture listing the secret values in the settings")
        for value in secrets:
            assert value not in repr(channel)
            assert value not in str(channel)

    def test_secrets_stay_out_of_reasons(
        self, unreachable_channel: Channel, message: Message, secrets: list[str]
    ) -> None:
        if not secrets:
            pytest.skip("provide a `secrets` fixture listing the secret values in the settings")
        reasons = [
            unreachable_channel.check(message) or "",
            unreachable_channel.send(message).reason,
        ]
        for value in secrets:
            for reason in reasons:
                assert value not in reason


# ---------------------------------------------------------------------------------------------
# The source contract
# ---------------------------------------------------------------------------------------------


def _standard_rows(frame: Any, names: list[str]) -> list[tuple[Any, ...]]:
    """The rows of ``frame``'s ``names`` columns, sorted: frames compared as multisets of rows."""
    return sorted(frame.select(names).rows(), key=repr)


class SourceContract:
    """Tests every source passes. Subclass it as ``TestXxx`` and provide the fixtures
    ``source_customers`` (a source with ``role == "customers"``), ``source_events`` (one with
    ``role == "events"``, holding events before and after ``since``) and ``since`` (a
    ``datetime`` with a zone)."""

    # -- customers ----------------------------------------------------------------------------

    def test_customers_source_follows_the_protocol(self, source_customers: Any) -> None:
        from courtship.sources import Source

        assert isinstance(source_customers, Source), "a source needs role and read(since)"
        assert source_customers.role == "customers"

    def test_customers_have_the_contract_columns_and_types(self, source_customers: Any) -> None:
        import polars as pl

        from courtship.sources import CUSTOMER_SCHEMA

        frame = source_customers.read()
        assert isinstance(frame, pl.DataFrame)
        assert frame.columns[: len(CUSTOMER_SCHEMA)] == list(CUSTOMER_SCHEMA), (
            "the contract columns come first, in the order of docs/data.md"
        )
        for name, dtype in CUSTOMER_SCHEMA.items():
            assert frame.schema[name] == dtype, f"{name} is {frame.schema[name]}, not {dtype}"
        assert frame.height > 0, "the `source_customers` fixture should hold customers"
        ids = frame.get_column("customer_id")
        assert ids.null_count() == 0, "every customer has an id"
        assert ids.n_unique() == frame.height, "customer ids are unique"

    def test_customers_ignore_since(self, source_customers: Any, since: datetime) -> None:
        assert source_customers.read(since).equals(source_customers.read())

    def test_reading_customers_twice_gives_the_same_frame(self, source_customers: Any) -> None:
        assert source_customers.read().equals(source_customers.read())

    # -- events -------------------------------------------------------------------------------

    def test_events_source_follows_the_protocol(self, source_events: Any) -> None:
        from courtship.sources import Source

        assert isinstance(source_events, Source), "a source needs role and read(since)"
        assert source_events.role == "events"

    def test_events_have_the_contract_columns_and_types(self, source_events: Any) -> None:
        import polars as pl

        from courtship.sources import EVENT_SCHEMA, UTC_DATETIME

        frame = source_events.read()
        assert isinstance(frame, pl.DataFrame)
        assert frame.columns[: len(EVENT_SCHEMA)] == list(EVENT_SCHEMA), (
            "customer_id, type, at and the standard optional fields come first"
        )
        for name, dtype in EVENT_SCHEMA.items():
            assert frame.schema[name] == dtype, f"{name} is {frame.schema[name]}, not {dtype}"
        assert frame.schema["at"] == UTC_DATETIME, "at is an instant in UTC"
        assert frame.height > 0, "the `source_events` fixture should hold events"
        for name in ("customer_id", "type", "at"):
            assert frame.get_column(name).null_count() == 0, f"every event has {name}"

    def test_since_splits_the_sample(self, source_events: Any, since: datetime) -> None:
        assert since.tzinfo is not None, "`since` must carry a time zone"
        at = source_events.read().get_column("at")
        assert at.min() <= since < at.max(), (
            "the `source_events` fixture needs events at or before `since` and after it"
        )

    def test_read_since_returns_only_later_events(
        self, source_events: Any, since: datetime
    ) -> None:
        later = source_events.read(since)
        assert later.height > 0
        assert later.get_column("at").min() > since

    def test_read_since_is_the_later_part_of_read_all(
        self, source_events: Any, since: datetime
    ) -> None:
        import polars as pl

        from courtship.sources import EVENT_SCHEMA

        names = list(EVENT_SCHEMA)
        everything = source_events.read()
        later = source_events.read(since)
        expected = everything.filter(pl.col("at") > since)
        assert _standard_rows(later, names) == _standard_rows(expected, names)

    def test_reading_events_twice_gives_the_same_frame(
        self, source_events: Any, since: datetime
    ) -> None:
        assert source_events.read().equals(source_events.read())
        assert source_events.read(since).equals(source_events.read(since))


# ---------------------------------------------------------------------------------------------
# A local HTTP peer
# ---------------------------------------------------------------------------------------------


@dataclass
class PeerRequest:
    """One request the peer received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header, by case-insensitive name."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The ``application/x-www-form-urlencoded`` body; a repeated field keeps its last value."""
        fields = parse_qs(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        return {name: values[-1] for name, values in fields.items()}


@dataclass
class PeerResponse:
    """What the peer answers: a status, a body (a dict is sent as JSON), headers, and a delay."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Responder = Callable[[PeerRequest], PeerResponse]


class _LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, a DNS query that can take seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class HTTPPeer:
    """A real HTTP server on 127.0.0.1 that records requests and answers with ``respond``.

    ``with HTTPPeer(respond) as peer:`` → ``peer.url`` (``http://127.0.0.1:PORT``) and
    ``peer.requests``. Set ``peer.respond`` to change the answer during a test.
    """

    def __init__(self, respond: Responder | None = None) -> None:
        self.respond: Responder = respond or (lambda request: PeerResponse(200, {}))
        self.requests: list[PeerRequest] = []
        self._lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = PeerRequest(
                    method=self.command,
                    path=self.path,
                    headers=dict(self.headers.items()),
                    body=self.rfile.read(length) if length else b"",
                )
                with peer._lock:
                    peer.requests.append(request)
                answer = peer.respond(request)
                if answer.delay:
                    time.sleep(answer.delay)
                body = answer.body
                headers = dict(answer.headers)
                if isinstance(body, dict | list):
                    body = json.dumps(body).encode("utf-8")
                    headers.setdefault("Content-Type", "application/json")
                elif isinstance(body, str):
                    body = body.encode("utf-8")
                with contextlib.suppress(OSError):  # the client may have given up (timeouts)
                    self.send_response(answer.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _LoopbackServer(("127.0.0.1", 0), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HTTPPeer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HTTPPeer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Fixtures every test suite gets
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def courtship_plugin_manager() -> Iterator[pluggy.PluginManager]:
    """A fresh plugin manager with Courtship's hooks and no plugins loaded."""
    from courtship.plugins import get_plugin_manager

    yield get_plugin_manager(load_entrypoints=False)


@pytest.fixture
def http_peer() -> Iterator[HTTPPeer]:
    """A running :class:`HTTPPeer` answering ``200 {}`` until told otherwise."""
    with HTTPPeer() as peer:
        yield peer
