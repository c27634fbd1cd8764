"""Builders for the bounce-intake rules: worlds of deliveries, re-wrapped and re-cased reports.

:func:`dispatched_world` opens a service (``memory://`` by default) with one
dispatched broadcast per account, so that every recipient delivery has a VERP
envelope sender and a Message-ID a report can carry. :func:`rewrap` gives a
report message the transport headers another relay or a re-delivery would
(a new ``Date:``, its own ``Message-ID:``, more ``Received:`` lines, another
line ending) without touching what it reports; :func:`transport_changes` draws
those changes. :func:`recase` writes an address in another case, as some
reporting servers do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from uuid import UUID

import attrs
from hypothesis import strategies as st

from broadcast_domain import Actor, BroadcastService, Contact, CsvSource, InboxRole
from broadcast_domain.domain.recipient import recipient_id
from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import BounceParser, OutgoingMessage
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.machine import ScriptedTransport

__all__ = [
    "SIGNING_KEY",
    "Delivery",
    "Rewrap",
    "World",
    "dispatched_world",
    "recase",
    "rewrap",
    "transport_changes",
]

SIGNING_KEY = b"intake-rules-signing-key-0123456789"


@attrs.frozen
class Delivery:
    """One recipient delivery: its account, broadcast, address and the message handed over."""

    account_id: str
    broadcast_id: UUID
    address: str
    message: OutgoingMessage


@attrs.define
class World:
    """A service whose broadcasts (one per account) have been dispatched."""

    svc: BroadcastService
    clock: FakeClock
    deliveries: list[Delivery]

    def history_sizes(self) -> dict[str, int]:
        """Events recorded per delivery (keyed by account and address)."""
        return {
            f"{d.account_id}/{d.address}": len(self.svc.history(d.broadcast_id, d.address))
            for d in self.deliveries
        }

    def token(self, delivery: Delivery) -> str:
        """The signed VERP token of a delivery (from its envelope sender)."""
        local = delivery.message.envelope_from.rpartition("@")[0]
        return local.partition("+")[2]


def dispatched_world(
    accounts: Mapping[str, Sequence[str]],
    *,
    url: str = "memory://",
    bounce_parser: BounceParser | None = None,
    replies: Mapping[str, tuple[int, str]] | None = None,
    max_bounce_bytes: int | None = None,
) -> World:
    """A service with one broadcast per account, to the addresses given, dispatched once.

    ``replies`` sets the transport's answer per address (250 by default; 451
    leaves the recipient SENDING). The clock is then moved on five minutes.
    """
    clock = FakeClock()
    extra: dict[str, Any] = {}
    if max_bounce_bytes is not None:
        extra["max_bounce_bytes"] = max_bounce_bytes
    svc = BroadcastService.open(
        url,
        return_path="bounces@mail.example.com",
        signing_key=SIGNING_KEY,
        clock=clock,
        bounce_parser=bounce_parser,
        **extra,
    )
    transport = ScriptedTransport()
    transport.replies.update(replies or {})
    bids: dict[str, UUID] = {}
    for account_id, addresses in accounts.items():
        inbox = f"inbox-{account_id}"
        bids[account_id] = svc.create_broadcast(
            account_id=account_id,
            inbox_id=inbox,
            sender="news@example.com",
            subject="お知らせ",
            text_body="本文",
            source=CsvSource("members.csv"),
            recipients=[
                Contact(a, last_name="山田", first_name=str(i)) for i, a in enumerate(addresses)
            ],
            scheduled_at=clock(),
            actor=Actor("op", inbox_roles={inbox: InboxRole.OPERATOR}),
        )
    svc.dispatch_due(transport)
    clock.advance(minutes=5)
    # The same address may be on several accounts' lists: the recipient id in the
    # signed token says which delivery a message was.
    by_id = {
        recipient_id(bid, address): (account_id, bid, address)
        for account_id, bid in bids.items()
        for address in accounts[account_id]
    }
    deliveries = []
    for m in transport.sent:
        token = m.envelope_from.rpartition("@")[0].partition("+")[2]
        account_id, bid, address = by_id[svc.verp.verify(token)]  # type: ignore[index]
        deliveries.append(Delivery(account_id, bid, address, m))
    # A stable order, whatever order the dispatcher handed them over in.
    deliveries.sort(key=lambda d: (d.account_id, accounts[d.account_id].index(d.address)))
    return World(svc, clock, deliveries)


def recase(address: str, how: str) -> str:
    """``address`` with its domain (``domain``), local part (``local``) or all upper-cased.

    ``mixed`` upper-cases every other character of the domain.
    """
    local, at, domain = address.rpartition("@")
    if how == "domain":
        return f"{local}{at}{domain.upper()}"
    if how == "local":
        return f"{local.upper()}{at}{domain}"
    if how == "all":
        return address.upper()
    if how == "mixed":
        return f"{local}{at}" + "".join(c.upper() if i % 2 else c for i, c in enumerate(domain))
    raise InvalidInput(f"how {how!r} is not one of domain, local, all, mixed", field="how")


@attrs.frozen
class Rewrap:
    """How another relay or a re-delivery dresses the same report."""

    date: datetime
    message_id: str
    received: tuple[str, ...]
    line_ending: str | None = None


def _split_head(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(header lines unfolded per field, the line ending, the body) of a raw message."""
    eol = b"\r\n" if b"\r\n" in raw[:2000] else (b"\n" if b"\n" in raw[:2000] else b"\r")
    head, sep, body = raw.partition(eol + eol)
    if not sep:
        raise InvalidInput("the message has no header block", field="raw")
    fields: list[bytes] = []
    for line in head.split(eol):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += eol + line
        else:
            fields.append(line)
    return fields, eol, body


def rewrap(raw: bytes, change: Rewrap) -> bytes:
    """``raw`` as another relay or a re-delivery carries it: same report, other transport headers.

    The top-level ``Date:`` and ``Message-ID:`` are replaced, ``Received:``
    lines are added on top and, when ``change.line_ending`` is given, every line
    end is rewritten. Nothing the report says (its parts) changes.
    """
    fields, eol, body = _split_head(raw)
    kept = [f for f in fields if not f.lower().startswith((b"date:", b"message-id:"))]
    new = [f"Received: {r}".encode("ascii") for r in change.received]
    new += kept
    new.append(f"Date: {format_datetime(change.date.astimezone(UTC))}".encode("ascii"))
    new.append(f"Message-ID: {change.message_id}".encode("ascii"))
    out = eol.join(new) + eol + eol + body
    if change.line_ending is not None:
        canonical = out.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out = canonical.replace(b"\n", change.line_ending.encode("ascii"))
    return out


_HOSTS = st.from_regex(r"[a-z]{1,8}\.(example|test)\.(net|org)", fullmatch=True)


@st.composite
def transport_changes(draw: Callable[..., Any], *, around: datetime | None = None) -> Rewrap:
    """Another ``Date:`` (within a week of ``around``), ``Message-ID:``, ``Received:``, line end."""
    base = around or datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    seconds = draw(st.integers(min_value=-7 * 86400, max_value=7 * 86400))
    hosts = draw(st.lists(_HOSTS, min_size=0, max_size=4))
    received = tuple(
        f"from {h} (unknown [192.0.2.{i + 1}]) by mx{i}.relay.example with ESMTP id "
        f"R{i}x{abs(seconds) % 9973}; {format_datetime(base + timedelta(seconds=seconds - i))}"
        for i, h in enumerate(hosts)
    )
    local = draw(st.from_regex(r"[a-z0-9]{4,20}", fullmatch=True))
    return Rewrap(
        date=base + timedelta(seconds=seconds),
        message_id=f"<{local}@{draw(_HOSTS)}>",
        received=received,
        line_ending=draw(st.sampled_from([None, "\r\n", "\n"])),
    )
