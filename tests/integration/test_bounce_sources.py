"""Maildir and mbox specifics on real folders and files in a temporary directory.

What every BounceSource must do is checked by the contract in
tests/contract/test_bounce_source_contract.py; this module holds what is
particular to each format (flags, sidecar files, From-quoting, appended mail).
"""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest

from broadcast_adapters.bounces.sources import MaildirSource, MboxSource
from broadcast_domain.errors import InvalidInput


def _message(n: int) -> bytes:
    return (
        f"From: MAILER-DAEMON@example.net\nTo: bounces+t{n}@example.com\n"
        f"Subject: Undelivered Mail {n}\n\nFrom the mail system: message {n} failed.\n"
    ).encode()


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    """A Maildir with three new messages, written by the standard library."""
    box = mailbox.Maildir(tmp_path / "bounces", create=True)
    for n in range(3):
        box.add(mailbox.MaildirMessage(_message(n)))
    return tmp_path / "bounces"


@pytest.fixture
def mbox(tmp_path: Path) -> Path:
    """An mbox with three messages, one body line needing From-quoting."""
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    for n in range(3):
        box.add(mailbox.mboxMessage(_message(n)))
    box.flush()
    box.close()
    return path


def test_maildir_done_message_moves_to_cur_with_the_seen_flag(maildir: Path) -> None:
    """mark_done moves new/ to cur/ with S; marking twice changes nothing."""
    source = MaildirSource(maildir)
    key = next(iter(source)).key
    source.mark_done(key)
    source.mark_done(key)
    names = [p.name for p in (maildir / "cur").iterdir()]
    assert names == [f"{key}:2,S"]
    assert all(not p.name.startswith(key) for p in (maildir / "new").iterdir())


def test_maildir_unseen_messages_in_cur_are_still_pending(maildir: Path) -> None:
    """A message another client moved to cur/ without S is still yielded."""
    entry = next((maildir / "new").iterdir())
    entry.rename(maildir / "cur" / f"{entry.name}:2,")
    assert len(list(MaildirSource(maildir))) == 3


def test_maildir_set_aside_keeps_the_message_and_its_reason(maildir: Path) -> None:
    """set_aside moves the message to .failed with a reason note and never deletes it."""
    source = MaildirSource(maildir)
    item = next(iter(source))
    source.set_aside(item.key, "unparseable\nsecond line")
    failed = maildir / ".failed"
    assert (failed / item.key).read_bytes() == item.raw
    assert (failed / f"{item.key}.reason").read_text() == "unparseable second line\n"
    assert item.key not in [i.key for i in MaildirSource(maildir)]


def test_maildir_rejects_a_folder_that_is_not_a_maildir(tmp_path: Path) -> None:
    """A folder without new/ and cur/ is refused with a BroadcastError naming it."""
    with pytest.raises(InvalidInput, match="not a Maildir"):
        MaildirSource(tmp_path)


def test_mbox_done_keys_survive_a_restart_and_the_file_is_untouched(mbox: Path) -> None:
    """Done keys are kept in a sidecar file; the mbox itself is never rewritten."""
    before = mbox.read_bytes()
    source = MboxSource(mbox)
    items = list(source)
    source.mark_done(items[1].key)
    source.mark_done(items[1].key)
    assert mbox.read_bytes() == before
    assert [i.key for i in MboxSource(mbox)] == [items[0].key, items[2].key]
    assert mbox.with_name(mbox.name + ".done").read_text() == items[1].key + "\n"


def test_mbox_keys_do_not_shift_when_mail_is_appended(mbox: Path) -> None:
    """Appending new mail keeps the old keys, so done messages stay done."""
    source = MboxSource(mbox)
    first = next(iter(source))
    source.mark_done(first.key)
    box = mailbox.mbox(mbox)
    box.add(mailbox.mboxMessage(_message(9)))
    box.flush()
    box.close()
    keys = [i.key for i in MboxSource(mbox)]
    assert first.key not in keys
    assert len(keys) == 3


def test_mbox_identical_copies_are_distinct_messages(tmp_path: Path) -> None:
    """Two byte-identical messages get two keys, and marking one leaves the other."""
    path = tmp_path / "twice.mbox"
    box = mailbox.mbox(path)
    box.add(mailbox.mboxMessage(_message(1)))
    box.add(mailbox.mboxMessage(_message(1)))
    box.flush()
    box.close()
    source = MboxSource(path)
    keys = [i.key for i in source]
    assert len(set(keys)) == 2
    source.mark_done(keys[0])
    assert [i.key for i in MboxSource(path)] == keys[1:]


def test_mbox_set_aside_copies_the_message_to_the_failed_mbox(mbox: Path) -> None:
    """set_aside appends the message and its reason to <mbox>.failed and marks it done."""
    source = MboxSource(mbox)
    item = list(source)[2]
    source.set_aside(item.key, "no reports")
    failed = mailbox.mbox(mbox.with_name(mbox.name + ".failed"))
    kept = list(failed)
    failed.close()
    assert len(kept) == 1
    assert kept[0]["X-Set-Aside-Reason"] == "no reports"
    assert kept[0]["Subject"] == "Undelivered Mail 2"
    assert item.key not in [i.key for i in MboxSource(mbox)]


def test_mbox_rejects_a_file_that_is_not_an_mbox(tmp_path: Path) -> None:
    """A file that does not start with a From line is refused with InvalidInput."""
    path = tmp_path / "x.mbox"
    path.write_bytes(b"Subject: hi\n\nbody\n")
    with pytest.raises(InvalidInput, match="not an mbox"):
        list(MboxSource(path))


def test_mbox_unknown_key_is_a_clear_error(mbox: Path) -> None:
    """Setting aside a key the file does not hold raises InvalidInput."""
    with pytest.raises(InvalidInput, match="no message"):
        MboxSource(mbox).set_aside("0" * 64, "x")
