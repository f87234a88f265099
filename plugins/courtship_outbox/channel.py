"""The outbox channel: one JSON file and one text file (unless ``text_copy: false``) per
idempotency key; or, with ``format: jsonl``, one line per message in a JSON Lines file per run.

A JSON Lines file is ``<folder>/<UTC time>-<pid>-<n>.jsonl.part`` while its run writes it, one
``write`` per line (appended whole: no reader sees half a line), and is renamed ``.jsonl`` when
the run ends (``close``, after an fsync): a program that reads the outbox takes the ``.jsonl``
files. A run killed mid-way leaves its ``.part``: the next run reads its keys (so a message the
killed run wrote and did not record is not written twice), cuts a line the disk could not finish,
and renames it ``.jsonl``. Creating one file per message is what the files format spends its time
on (an inode, a directory entry, twice with the ``.txt``); a line costs one append."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import hashlib
import itertools
import json
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from courtship.channels import ChannelConfigError, Delivery, Message, setting

_FIELDS = dataclasses.fields(Message)
_UNSAFE = re.compile(r"[^A-Za-z0-9._:@+=-]")
#: A full disk, a quota, a file size limit: the dispatcher stops the run on these.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
FORMATS = ("files", "jsonl")
#: The suffix of a JSON Lines file its run is still writing (or a killed run left).
PART = ".jsonl.part"
_numbers = itertools.count(1)  # the <n> of this process's files: one per channel instance
_adopting = threading.Lock()  # the files a killed run left are taken by one instance at a time
#: The keys in the files killed runs left, by folder: every instance of the process sees them.
_left_keys: dict[Path, set[str]] = {}


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
    """Writes each message to ``<folder>/<key>.json`` and ``<key>.txt``, or as a line of this
    run's ``.jsonl`` (``format: jsonl``); never twice."""

    name = "outbox"
    idempotent = True

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.folder = Path(setting(settings, "folder", "outbox"))
        #: whether each message gets its readable ``<key>.txt`` beside the ``.json`` too (half
        #: the files to create: ``text_copy: false`` where only programs read the outbox)
        self.text_copy: bool = setting(settings, "text_copy", True, kind=bool)
        self.format: str = setting(settings, "format", "files")
        if self.format not in FORMATS:
            raise ChannelConfigError(
                f"setting 'format' must be one of {', '.join(FORMATS)}; not {self.format!r}"
            )
        self._lines: _JSONLines | None = None  # this instance's file, opened at its first line
        self._folder_made = False

    def __repr__(self) -> str:
        return f"OutboxChannel(folder={str(self.folder)!r})"

    def check(self, message: Message) -> str | None:
        return None

    def send(self, message: Message) -> Delivery:
        # its fields are plain values: a shallow copy is the record (asdict copies deeply)
        record = {f.name: getattr(message, f.name) for f in _FIELDS}
        if self.format == "jsonl":
            return self._append(message.key, record)
        stem = file_stem(message.key)
        target = self.folder / f"{stem}.json"
        try:
            if not self._folder_made:  # once: a folder removed mid-run is a retry, made next run
                self.folder.mkdir(parents=True, exist_ok=True)
                self._folder_made = True
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

    def _append(self, key: str, record: dict[str, Any]) -> Delivery:
        try:
            if self._lines is None:
                self._lines = _JSONLines(self.folder)
            lines = self._lines
            if key in lines.keys or key in lines.left:
                return Delivery.delivered(str(lines.path), "already in the outbox")
            lines.append(key, json.dumps(record, ensure_ascii=False, sort_keys=True))
        except OSError as error:
            if error.errno in _NO_SPACE:  # a full disk stops the run: raised, not a retry
                raise
            return Delivery.retry(f"cannot write to the outbox {self.folder}: {error}")
        return Delivery.delivered(str(lines.path))

    def close(self) -> None:
        """The run's JSON Lines file made durable and renamed ``.jsonl`` (files: nothing)."""
        lines, self._lines = self._lines, None
        if lines is not None:
            lines.close()


class _JSONLines:
    """One channel instance's JSON Lines file, the keys it wrote, and those of the files killed
    runs left (``.part``), read when the first instance of the process opens, before its first
    line."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.keys: set[str] = set()  # written by this instance
        with _adopting:  # by one instance at a time; what they find is shared
            self.left = _left_keys.setdefault(folder.resolve(), set())
            for left in sorted(folder.glob(f"*{PART}")):
                self._adopt(left)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.path = folder / f"{stamp}-{os.getpid()}-{next(_numbers)}{PART}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        self.fd = os.open(self.path, flags, 0o600)
        self.size = 0

    def _adopt(self, left: Path) -> None:
        """A ``.part`` of a run that is gone: its keys, its last line whole, renamed
        ``.jsonl``. One of a run still going (this process's, or another's) is left alone."""
        parts = left.name[: -len(PART)].rsplit("-", 2)  # <UTC time>-<pid>-<n>
        pid = parts[1] if len(parts) == 3 else ""
        if pid.isdigit() and _running(int(pid)):
            self.left.update(_keys(left.read_bytes()))  # its messages are its run's anyway
            return
        try:
            with left.open("r+b") as handle:
                data = handle.read()
                whole = data[: data.rfind(b"\n") + 1]
                if len(whole) < len(data):  # a line the disk could not finish
                    handle.truncate(len(whole))
                os.fsync(handle.fileno())
            self.left.update(_keys(whole))
            left.rename(left.with_name(left.name[: -len(".part")]))
        except FileNotFoundError:  # another process took it first
            return

    def append(self, key: str, line: str) -> None:
        data = (line + "\n").encode("utf-8")
        try:
            written = os.write(self.fd, data)
            if written != len(data):
                raise OSError(
                    errno.ENOSPC, f"the disk took {written} of the line's {len(data)} bytes"
                )
        except OSError:
            os.ftruncate(self.fd, self.size)  # no part of a line stays: the message retries
            raise
        self.size += written
        self.keys.add(key)

    def close(self) -> None:
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
        os.replace(self.path, self.path.with_name(self.path.name[: -len(".part")]))


def _keys(data: bytes) -> set[str]:
    keys = set()
    for line in data.splitlines():
        try:
            keys.add(json.loads(line)["key"])
        except (ValueError, KeyError, TypeError):
            continue  # not a record of this channel's: no key to keep
    return keys


def _running(pid: int) -> bool:
    """Whether the process ``pid`` is alive on this machine (this process included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _create_once(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless ``path`` exists; True if this call wrote it.

    The file is written unnamed (``O_TMPFILE``) and given its name by one ``link``, which fails
    if the name exists: a reader, or a run killed mid-write, never sees a partial file, and no
    temporary name is left behind. Where the filesystem has no ``O_TMPFILE``, a temporary file
    beside it is linked instead (after a look for the name: a filesystem without hard links
    has only a rename, which would replace it)."""
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
    if path.exists():
        return False
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
