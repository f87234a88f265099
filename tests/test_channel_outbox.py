"""The outbox channel: one file per key, or a line per key in a run's JSON Lines; written once."""

import json
from dataclasses import asdict, replace

import pytest
from courtship_outbox import OutboxChannel
from courtship_outbox.channel import file_stem
from test_hostile_files import (
    fill,
    small_disk,  # noqa: F401 (a fixture: a real 2 MiB tmpfs)
)

from courtship.testing import ChannelContract, sample_message


class TestOutboxChannel(ChannelContract):
    @pytest.fixture
    def folder(self, tmp_path):
        return tmp_path / "outbox"

    @pytest.fixture
    def channel(self, folder):
        return OutboxChannel({"folder": str(folder)})

    @pytest.fixture
    def message(self):
        return sample_message(channel="outbox")

    @pytest.fixture
    def received(self, folder):
        return lambda: sorted(folder.glob("*.json")) if folder.exists() else []

    @pytest.fixture
    def unreachable_channel(self, tmp_path):
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the outbox folder should be")
        return OutboxChannel({"folder": str(blocker / "outbox")})

    def test_writes_the_message_as_json_and_text(self, channel, message, folder):
        delivery = channel.send(message)
        assert delivery.status == "delivered"
        assert delivery.provider_id == str(folder / f"{message.key}.json")
        assert json.loads((folder / f"{message.key}.json").read_text()) == asdict(message)
        text = (folder / f"{message.key}.txt").read_text()
        assert "Subject: Welcome, Ada" in text
        assert text.rstrip().endswith(message.text)

    def test_text_copy_false_writes_only_the_json(self, message, folder):
        channel = OutboxChannel({"folder": str(folder), "text_copy": "false"})
        assert channel.send(message).status == "delivered"
        assert sorted(p.name for p in folder.iterdir()) == [f"{message.key}.json"]
        assert json.loads((folder / f"{message.key}.json").read_text()) == asdict(message)

    def test_text_copy_must_be_yes_or_no(self, folder):
        from courtship.channels import ChannelConfigError

        with pytest.raises(ChannelConfigError, match="text_copy"):
            OutboxChannel({"folder": str(folder), "text_copy": "sometimes"})

    def test_the_same_key_keeps_the_first_file(self, channel, message, folder):
        channel.send(message)
        again = channel.send(replace(message, text="A different text"))
        assert again.status == "delivered"
        assert again.reason == "already in the outbox"
        assert json.loads((folder / f"{message.key}.json").read_text())["text"] == message.text
        assert sorted(p.name for p in folder.iterdir()) == [
            f"{message.key}.json",
            f"{message.key}.txt",
        ]

    def test_unsafe_keys_stay_inside_the_folder(self, channel, message, folder):
        for key in ("../escape", "a/b", "...", "/etc/passwd"):
            assert channel.send(replace(message, key=key)).status == "delivered"
        files = list(folder.glob("*.json"))
        assert len(files) == 4
        assert all(path.parent == folder for path in files)
        assert file_stem("a/b") != file_stem("a_b")  # different keys never share a file

    def test_failure_to_write_is_a_retry(self, unreachable_channel, message):
        delivery = unreachable_channel.send(message)
        assert delivery.status == "retry"
        assert "cannot write to the outbox" in delivery.reason

    def test_default_folder(self):
        assert str(OutboxChannel({}).folder) == "outbox"


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "temporary name"])
def test_files_are_whole_private_and_leave_no_temporary_behind(tmp_path, monkeypatch, unnamed):
    """Written unnamed and linked into place (or, where the filesystem has no O_TMPFILE, under a
    temporary name first): the folder holds the two files and nothing else, readable by the
    owner only, and a second send of the key keeps the first."""
    import courtship_outbox.channel as outbox

    if not unnamed:
        monkeypatch.setattr(outbox, "_TMPFILE", None)
    folder = tmp_path / "outbox"
    channel = OutboxChannel({"folder": str(folder)})
    message = sample_message(channel="outbox")
    assert channel.send(message).reason == ""
    assert channel.send(replace(message, text="other")).reason == "already in the outbox"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{message.key}.json", f"{message.key}.txt"]
    assert all((folder / name).stat().st_mode & 0o777 == 0o600 for name in names)
    assert json.loads((folder / names[0]).read_text()) == asdict(message)


# ── format: jsonl, one line per message in a file per run ─────────────────────────────────


def lines_in(folder):
    """Every record in the folder's JSON Lines files, finished (.jsonl) or not (.jsonl.part)."""
    files = sorted(folder.glob("*.jsonl")) + sorted(folder.glob("*.jsonl.part"))
    return [json.loads(line) for path in files for line in path.read_text().splitlines()]


class TestOutboxJSONLines(ChannelContract):
    @pytest.fixture
    def folder(self, tmp_path):
        return tmp_path / "outbox"

    @pytest.fixture
    def channel(self, folder):
        return OutboxChannel({"folder": str(folder), "format": "jsonl"})

    @pytest.fixture
    def message(self):
        return sample_message(channel="outbox")

    @pytest.fixture
    def received(self, folder):
        return lambda: lines_in(folder) if folder.exists() else []

    @pytest.fixture
    def unreachable_channel(self, tmp_path):
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the outbox folder should be")
        return OutboxChannel({"folder": str(blocker / "outbox"), "format": "jsonl"})

    def test_each_message_is_a_line_and_the_ended_run_leaves_a_jsonl(
        self, channel, message, folder
    ):
        for n in range(3):
            assert channel.send(replace(message, key=f"k{n}")).status == "delivered"
        (part,) = folder.iterdir()
        assert part.name.endswith(".jsonl.part")
        assert part.stat().st_mode & 0o777 == 0o600
        channel.close()
        (done,) = folder.iterdir()
        assert done.name == part.name.removesuffix(".part")
        assert [json.loads(line) for line in done.read_text().splitlines()] == [
            asdict(replace(message, key=f"k{n}")) for n in range(3)
        ]
        channel.close()  # twice is harmless

    @pytest.mark.parametrize("name", ["20261123T150000000000Z-{gone}-1", "copied-by-hand"])
    def test_a_file_a_killed_run_left_is_taken_over(self, message, folder, name):
        """A `.part` of a process that is gone (or named by no process): its keys are not
        written again, a line the disk did not finish is cut, and it becomes a `.jsonl`."""
        import subprocess
        import sys

        pid = "import os; print(os.getpid())"
        gone = subprocess.run(
            [sys.executable, "-c", pid], capture_output=True, text=True, check=True
        ).stdout.strip()
        folder.mkdir()
        left = folder / f"{name.format(gone=gone)}.jsonl.part"
        written = [asdict(replace(message, key=f"k{n}")) for n in range(2)]
        left.write_text("".join(json.dumps(r) + "\n" for r in written) + '{"key": "k2", "te')
        channel = OutboxChannel({"folder": str(folder), "format": "jsonl"})
        again = channel.send(replace(message, key="k1"))
        assert (again.status, again.reason) == ("delivered", "already in the outbox")
        assert channel.send(replace(message, key="k2")).reason == ""
        channel.close()
        assert not list(folder.glob("*.part"))
        assert sorted(record["key"] for record in lines_in(folder)) == ["k0", "k1", "k2"]

    def test_format_must_be_files_or_jsonl(self, folder):
        from courtship.channels import ChannelConfigError

        with pytest.raises(ChannelConfigError, match="'format' must be one of files, jsonl"):
            OutboxChannel({"folder": str(folder), "format": "csv"})


def test_a_line_the_disk_could_not_take_is_cut_and_the_run_stops(tmp_path, monkeypatch):
    """A full disk takes part of a line: the part is cut (no reader sees half a record) and
    the error stops the run, as in the files format."""
    import errno
    import os

    import courtship_outbox.channel as outbox

    folder = tmp_path / "outbox"
    channel = OutboxChannel({"folder": str(folder), "format": "jsonl"})
    message = sample_message(channel="outbox")
    assert channel.send(message).status == "delivered"
    real = os.write
    monkeypatch.setattr(outbox.os, "write", lambda fd, data: real(fd, data[:10]))
    with pytest.raises(OSError) as error:
        channel.send(replace(message, key="k2"))
    assert error.value.errno == errno.ENOSPC
    monkeypatch.setattr(outbox.os, "write", real)
    assert channel.send(replace(message, key="k2")).reason == ""
    channel.close()
    assert [record["key"] for record in lines_in(folder)] == [message.key, "k2"]


KILLED_RUN = """
import os, signal, sys, datetime as dt
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_hostile_files import outbox_rows
from courtship_outbox import OutboxChannel
from courtship.delivery import Dispatcher, Lane
from courtship.state import StateStore

settings = {settings!r}
kill_at = {kill_at}
now = dt.datetime(2026, 11, 23, 15, tzinfo=dt.UTC)
store = StateStore(Path({state!r}))
if kill_at:
    store.record(now, {{}}, outbox_rows(60))
store.claim()
written = []

class Killing(OutboxChannel):
    def send(self, message):
        delivery = super().send(message)  # written: the worst moment to die, before it is noted
        written.append(message.key)
        if kill_at and len(written) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return delivery

lane = Lane(workers={workers}, build=lambda: Killing(settings))
channel = lane.build()
Dispatcher(store, {{"email": channel}}, lanes={{"email": lane}}).dispatch(now)
channel.close()
store.close()
"""


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("outbox_format", ["files", "jsonl"])
def test_a_run_killed_after_writing_leaves_each_message_once(tmp_path, outbox_format, workers):
    """SIGKILL just after a message was written and before it was noted, with one or three
    workers writing: the next run delivers the rest, and every key is in the outbox once."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    folder = tmp_path / "outbox"
    settings = {"folder": str(folder), "format": outbox_format, "text_copy": False}
    tests = str(Path(__file__).parent)
    state = str(tmp_path / "state.sqlite")
    for kill_at, code in ((25, -signal.SIGKILL), (0, 0)):
        script = KILLED_RUN.format(
            tests=tests, settings=settings, kill_at=kill_at, state=state, workers=workers
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert done.returncode == code, done.stderr
    if outbox_format == "jsonl":
        keys = [record["key"] for record in lines_in(folder)]
        assert not list(folder.glob("*.part"))
    else:
        keys = [json.loads(path.read_text())["key"] for path in folder.glob("*.json")]
    assert sorted(keys) == [f"key-{n:04d}" for n in range(60)]
    import sqlite3

    with sqlite3.connect(state) as db:
        assert set(db.execute("SELECT DISTINCT status FROM sends")) == {("delivered",)}


def test_a_real_full_disk_leaves_no_half_line_and_the_rest_is_written_after(small_disk):  # noqa: F811
    """JSON Lines on a real 2 MiB tmpfs filled up while writing: the write that did not fit
    raises the full disk (which stops a run) and leaves no part of its line; once space is
    freed, the same messages go on, and the file holds every key once."""
    import errno

    folder = small_disk / "outbox"
    channel = OutboxChannel({"folder": str(folder), "format": "jsonl"})
    message = sample_message(channel="outbox", text="Hello " * 300)
    assert channel.send(replace(message, key="k0")).status == "delivered"
    filler = fill(small_disk, 0)
    keys = ["k0"]
    with pytest.raises(OSError) as error:
        for n in range(1, 100):
            assert channel.send(replace(message, key=f"k{n}")).status == "delivered"
            keys.append(f"k{n}")
    assert error.value.errno == errno.ENOSPC
    assert [record["key"] for record in lines_in(folder)] == keys  # every line whole
    filler.unlink()
    for n in range(len(keys), len(keys) + 3):
        assert channel.send(replace(message, key=f"k{n}")).status == "delivered"
        keys.append(f"k{n}")
    channel.close()
    assert [record["key"] for record in lines_in(folder)] == keys
