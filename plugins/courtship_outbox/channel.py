"""The outbox channel: one JSON file and one text file (unless ``text_copy: false``) per
idempotency key."""

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

_FIELDS = dataclasses.fields(Message)
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
        #: whether each message gets its readable ``<key>.txt`` beside the ``.json`` too (half
        #: the files to create: ``text_copy: false`` where only programs read the outbox)
        self.text_copy: bool = setting(settings, "text_copy", True, kind=bool)

    def __repr__(self) -> str:
        return f"OutboxChannel(folder={str(self.folder)!r})"

    def check(self, message: Message) -> str | None:
        return None

    def send(self, message: Message) -> Delivery:
        stem = file_stem(message.key)
        target = self.folder / f"{stem}.json"
        # its fields are plain values: a shallow copy is the record (asdict copies deeply)
        record = {f.name: getattr(message, f.name) for f in _FIELDS}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            created = _create_once(
                target, json.dumps(record, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
            )
            if created and self.text_copy:
                # The .txt is a courtesy copy: the .json decides whether the key was written.
                _create_once(self.folder / f"{stem}.txt", readable(message))
        except OSError as error:
            if error.errno in _NO_SPACE:  # a full disk stops the run: raised, not a retry
                raise
            return Delivery.retry(f"cannot write to the outbox {self.folder}: {error}")
        return Delivery.delivered(str(target), "" if created else "already in the outbox")


def _create_once(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless ``path`` exists; True if this call wrote it.

    The file is written unnamed (``O_TMPFILE``) and given its name by one ``link``, which fails
    if the name exists: a reader, or a run killed mid-write, never sees a partial file, and no
    temporary name is left behind. Where the filesystem has no ``O_TMPFILE``, a temporary file
    beside it is linked instead."""
    if path.exists():
        return False
    data = text.encode("utf-8")
    if _TMPFILE is not None:
        try:
            descriptor = os.open(path.parent, _TMPFILE | os.O_WRONLY, 0o600)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise
        else:
            try:
                _write_all(descriptor, data)
                folder = os.open(path.parent, os.O_RDONLY)
                try:  # linkat(AT_SYMLINK_FOLLOW): a dir_fd makes os.link use it
                    os.link(
                        f"/proc/self/fd/{descriptor}",
                        path.name,
                        src_dir_fd=folder,
                        dst_dir_fd=folder,
                    )
                except FileExistsError:
                    return False
                except OSError as error:  # no /proc: the temporary name below
                    if error.errno in _NO_SPACE:
                        raise
                else:
                    return True
                finally:
                    os.close(folder)
            finally:
                os.close(descriptor)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
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


#: Linux's unnamed files (``O_TMPFILE``), where the platform has them.
_TMPFILE: int | None = getattr(os, "O_TMPFILE", None)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]
