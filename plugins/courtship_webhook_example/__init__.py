"""An example channel plugin: team notifications posted to a webhook (Slack-style ``{"text"}``).

The whole plugin is this file; ``docs/plugins/example-webhook.md`` walks through it. To ship it as
its own distribution, declare the entry point in that distribution's ``pyproject.toml``::

    [project.entry-points.courtship]
    courtship_webhook_example = "courtship_webhook_example"

Settings (``channels.webhook`` in ``courtship.yaml``)::

    webhook:
      url: https://hooks.example.org/T000/B000/XXXX
      token_env: TEAM_WEBHOOK_TOKEN   # optional: sent as "Authorization: Bearer <token>"
      timeout: 5                      # seconds
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import courtship
from courtship.channels import (
    ChannelConfigError,
    ChannelFactory,
    Delivery,
    Message,
    parse_retry_after,
    secret,
    setting,
)


class WebhookChannel:
    """POSTs ``{"text", "key", "customer_id", "playbook"}`` as JSON to one URL."""

    name = "webhook"

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.url: str = setting(settings, "url")
        if not self.url.startswith(("https://", "http://")):
            raise ChannelConfigError(f"setting 'url' must be an http(s) URL, not {self.url!r}")
        # The token is read from the environment, never from courtship.yaml.
        self._token = secret(settings, "token_env") if settings.get("token_env") else None
        self.timeout: float = setting(settings, "timeout", 5.0, kind=float)

    def __repr__(self) -> str:  # never show the token
        return f"WebhookChannel(url={self.url!r})"

    def check(self, message: Message) -> str | None:
        return None if message.text.strip() else "the text is empty"

    def send(self, message: Message) -> Delivery:
        text = f"*{message.subject}*\n{message.text}" if message.subject else message.text
        body = {
            "text": text,
            "key": message.key,
            "customer_id": message.customer_id,
            "playbook": message.playbook,
        }
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": message.key},
        )
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Delivery.delivered(response.headers.get("X-Request-Id"))
        except urllib.error.HTTPError as error:  # the server answered 4xx or 5xx
            reason = f"webhook answered HTTP {error.code} {error.reason}"
            if error.code == 429 or error.code >= 500:
                return Delivery.retry(reason, parse_retry_after(error.headers.get("Retry-After")))
            return Delivery.failed(reason)
        except (urllib.error.URLError, TimeoutError, OSError) as error:  # no answer at all
            return Delivery.retry(f"cannot reach the webhook: {getattr(error, 'reason', error)}")


@courtship.hookimpl
def register_channels(register: Callable[[str, ChannelFactory], None]) -> None:
    register("webhook", WebhookChannel)
