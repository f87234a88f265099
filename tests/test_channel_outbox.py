"""The outbox channel: one file per key, written once."""

import json
from dataclasses import asdict, replace

import pytest
from courtship_outbox import OutboxChannel
from courtship_outbox.channel import file_stem

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
