"""The BounceSource contract, run against the fake and against Maildir and mbox on real files."""

from __future__ import annotations

import mailbox
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from broadcast_adapters.bounces.sources import MaildirSource, MboxSource
from broadcast_domain.ports import BounceSource
from broadcast_domain.testing.contracts import BounceSourceContract
from broadcast_domain.testing.fakes import FakeBounceSource


class TestFakeBounceSource(BounceSourceContract):
    """FakeBounceSource keeps the contract it is used in place of."""

    def make_source(self, messages: Sequence[bytes], stack: ExitStack) -> BounceSource:
        return FakeBounceSource(messages)

    def reopen(self, source: BounceSource) -> BounceSource:
        assert isinstance(source, FakeBounceSource)
        return source.reopen()

    def set_aside_messages(self, source: BounceSource) -> list[bytes]:
        assert isinstance(source, FakeBounceSource)
        return list(source.aside_messages.values())


def _folder(stack: ExitStack) -> Path:
    return Path(stack.enter_context(tempfile.TemporaryDirectory()))


class TestMaildirSource(BounceSourceContract):
    """MaildirSource over a Maildir written by the standard library."""

    def make_source(self, messages: Sequence[bytes], stack: ExitStack) -> BounceSource:
        path = _folder(stack) / "bounces"
        box = mailbox.Maildir(path, create=True)
        for raw in messages:
            box.add(raw)
        return MaildirSource(path)

    def reopen(self, source: BounceSource) -> BounceSource:
        assert isinstance(source, MaildirSource)
        return MaildirSource(source.path)

    def set_aside_messages(self, source: BounceSource) -> list[bytes]:
        assert isinstance(source, MaildirSource)
        failed = source.path / ".failed"
        return [p.read_bytes() for p in failed.iterdir() if p.suffix != ".reason"]


class TestMboxSource(BounceSourceContract):
    """MboxSource over an mbox file written by the standard library."""

    def make_source(self, messages: Sequence[bytes], stack: ExitStack) -> BounceSource:
        path = _folder(stack) / "bounces.mbox"
        box = mailbox.mbox(path)
        for raw in messages:
            box.add(raw)
        box.flush()
        box.close()
        return MboxSource(path)

    def reopen(self, source: BounceSource) -> BounceSource:
        assert isinstance(source, MboxSource)
        return MboxSource(source.path)

    def set_aside_messages(self, source: BounceSource) -> list[bytes]:
        assert isinstance(source, MboxSource)
        # The .failed file is an mbox too: read it back with the same reader.
        failed = MboxSource(source.path.with_name(source.path.name + ".failed"))
        return [_without_reason(item.raw) for item in failed]


def _without_reason(raw: bytes) -> bytes:
    # MboxSource notes the reason as a header in front of the kept message.
    first, _, rest = raw.partition(b"\n")
    return rest if first.startswith(b"X-Set-Aside-Reason:") else raw
