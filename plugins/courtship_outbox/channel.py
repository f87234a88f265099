"""The outbox channel: one JSON file and one text file per idempotency key."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from courtship.channels import Delivery, Message, setting

_UNSAFE = re.compile(r"[^A-Za-z0-9._:@+=-]")
#: A full disk, a quota, a file size limit: the dispatcher stops the run on these.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def file_stem(key: str) -> str:
    """A file name for ``key``: the key itself when it is safe, else a readable, unique form."""
    safe = _UNSAFE.sub("_", key).strip(".") or "message"
    if safe == key and len(key) <= 150:
        return key
    return f"{safe[:100]}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}"


def readable(message: Message) -> str:
    lines = [
        f"To: {message.to} ({message.channel})",
        f"Customer: {message.customer_id}",
        f"Playbook: {message.playbook} ({message.category}, {message.tone})",
        f"Key: {message.key}",
    ]
    if message.unsubscribe_url:
        lines.append(f"Unsubscribe: {message.unsubscribe_url}")
    lines += [f"Subject: {message.subject}", "", message.text]
    return "\n".join(lines).rstrip("\n") + "\n"


class OutboxChannel:
    """Writes each message to ``<folder>/<key>.json`` and ``<key>.txt``; never twice."""

    name = "outbox"
    idempotent = True

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.folder = Path(setting(settings, "folder", "outbox"))

    def __repr__(self) -> str:
        return f"OutboxChannel(folder={str(self.folder)!r})"

    def check(self, message: Message) -> str | None:
        return None

    def send(self, message: Message) -> Delivery:
        stem = file_stem(message.key)
        target = self.folder / f"{stem}.json"
        record = dataclasses.asdict(message)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            created = _create_once(
                target, json.dumps(record, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
            )
            if created:
                # The .txt is a courtesy copy: the .json decides whether the key was written.
                _create_once(self.folder / f"{stem}.txt", readable(message))
        except OSError as error:
            if error.errno in _NO_SPACE:  # a full disk stops the run: raised, not a retry
                raise
            return Delivery.retry(f"cannot write to the outbox {self.folder}: {error}")
        return Delivery.delivered(str(target), "" if created else "already in the outbox")


def _create_once(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless ``path`` exists; True if this call wrote it."""
    if path.exists():
        return False
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            os.link(temporary, path)  # fails if another writer got there first
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: last writer wins, same content
            os.replace(temporary, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
