"""A worker run in a child process by the reliability tests (not a test module).

``python reliability_worker.py ROLE STORE_URL [ARGS...]`` opens a service on
the store with a clock fixed at ``T0`` (plus an offset for smtp-dispatch) and
does one job (the concurrency test also runs the jobs in threads on one
service):

- ``smtp-dispatch URL PORT OFFSET_S LEASE_S BATCH``: dispatch everything due
  through SmtpTransport to 127.0.0.1:PORT, BATCH messages per call, until
  nothing is left (the crash test kills it midway);
- ``create URL COUNT``: create one broadcast of COUNT recipients (the crash
  test kills it midway);
- ``ingest URL MAILDIR``: ingest every bounce in the Maildir (the crash test
  kills it midway);
- ``fake-dispatch URL OUT_FILE``: dispatch through an in-process transport
  that accepts every address except those ending in 3 (refused with 550),
  writing each handed-over ``address message_id`` line to OUT_FILE;
- ``bounce URL``: report a failure for every fifth succeeded recipient (half as
  raw DSN e-mails, half as normalised reports), until the broadcast is sent
  and all of them are reported;
- ``acknowledge URL``: acknowledge every error, until the broadcast is sent;
- ``list URL``: page through the recipient list and the error list and export
  the result CSV, until the broadcast is sent.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from reliability_support import OPERATOR, T0, create, open_service

from broadcast_domain import (
    BounceReport,
    BroadcastService,
    BroadcastStatus,
    DeliveryPolicy,
    DeliveryStatus,
)
from broadcast_domain.domain.events import Sent
from broadcast_domain.domain.recipient import recipient_id
from broadcast_domain.ports import OutgoingMessage, TransportReply
from broadcast_domain.testing.bounces import build_dsn
from broadcast_domain.testing.clock import FakeClock


class RecordingTransport:
    """Accepts every address except those ending in 3 before the @; logs every hand-over."""

    def __init__(self, out: Path) -> None:
        self._out = out.open("a", encoding="utf-8", buffering=1)

    def send(self, messages: Sequence[OutgoingMessage]) -> list[TransportReply]:
        replies = []
        for m in messages:
            self._out.write(f"{m.recipient} {m.message_id}\n")
            if m.recipient.split("@")[0].endswith("3"):
                replies.append(TransportReply(m.key, 550, "5.1.1 User unknown"))
            else:
                replies.append(TransportReply(m.key, 250, "2.0.0 OK"))
        return replies

    def close(self) -> None:
        self._out.close()


def _only_broadcast(svc: BroadcastService) -> object:
    page = svc.list_broadcasts("support")
    return page.items[0].broadcast_id


def _sent(svc: BroadcastService, bid: object) -> bool:
    return svc.summary(bid).status is BroadcastStatus.SENT  # type: ignore[arg-type]


def smtp_dispatch(url: str, port: str, offset: str, lease: str, batch: str) -> None:
    from broadcast_adapters.smtp import SmtpTransport

    clock = FakeClock(T0 + timedelta(seconds=float(offset)))
    svc = open_service(url, clock, policy=DeliveryPolicy(lease=timedelta(seconds=float(lease))))
    with SmtpTransport("127.0.0.1", int(port), connections=1, timeout=30) as transport:
        while svc.dispatch_due(transport, max_messages=int(batch)).sent:
            pass
    svc.close()


def fake_dispatch(svc: BroadcastService, out: str) -> None:
    transport = RecordingTransport(Path(out))
    while svc.dispatch_due(transport, max_messages=50).sent:
        pass
    transport.close()


def _dsn(svc: BroadcastService, bid: Any, address: str) -> bytes:
    """A DSN about the message handed over for ``address``, sent to its VERP address."""
    sent = [e for e in svc.history(bid, address) if isinstance(e, Sent)][-1]
    rid = recipient_id(bid, address)
    message = OutgoingMessage(
        key=rid.hex,
        envelope_from=svc.verp.address(rid),
        recipient=address,
        message_id=sent.message_id,
        data=f"Message-ID: {sent.message_id}\r\nTo: {address}\r\n\r\nbody\r\n".encode(),
    )
    return build_dsn(message, status="5.2.2", reply_code="552", diagnostic="mailbox full")


def bounce(svc: BroadcastService) -> None:
    bid = _only_broadcast(svc)
    reported: set[str] = set()
    while True:
        done = _sent(svc, bid)
        # Reporting turns rows of this very list into errors, so later pages shift and
        # a pass can miss some: stop only after a pass, once sending is over, that
        # found nothing left to report.
        before = len(reported)
        page_no, pages = 1, 1
        while page_no <= pages:
            page = svc.recipients(
                bid,  # type: ignore[arg-type]
                status=DeliveryStatus.SUCCEEDED,
                page=page_no,
                per_page=500,
            )
            pages = page.pages
            page_no += 1
            for item in page.items:
                number = int(item.address[4:9])
                if number % 5 or item.address in reported:
                    continue
                rid = recipient_id(bid, item.address)  # type: ignore[arg-type]
                if number % 10:
                    # Half arrive as raw DSN e-mails, as a bounce mailbox delivers them.
                    outcomes = svc.record_bounce_message(_dsn(svc, bid, item.address))
                    assert [o.kind for o in outcomes] == ["applied"], outcomes
                else:
                    outcome = svc.record_bounce(
                        BounceReport(
                            recipient=item.address,
                            status="5.2.2",
                            diagnostic="552 5.2.2 mailbox full",
                            permanent=True,
                            reported_at=T0,
                            verp_token=svc.verp.token(rid),
                        )
                    )
                    assert outcome.kind == "applied", outcome
                reported.add(item.address)
        if done and len(reported) == before:
            break
        time.sleep(0.01)


def acknowledge(svc: BroadcastService) -> None:
    bid = _only_broadcast(svc)
    while True:
        done = _sent(svc, bid)
        errors = svc.unacknowledged_errors(bid)  # type: ignore[arg-type]
        svc.acknowledge_errors(bid, actor=OPERATOR, as_of=errors.as_of)  # type: ignore[arg-type]
        if done:
            break
        time.sleep(0.01)


def listing(svc: BroadcastService) -> None:
    bid = _only_broadcast(svc)
    while True:
        done = _sent(svc, bid)
        page = svc.recipients(bid, per_page=1000)  # type: ignore[arg-type]
        for n in range(2, page.pages + 1):
            svc.recipients(bid, page=n, per_page=1000)  # type: ignore[arg-type]
        svc.unacknowledged_errors(bid)  # type: ignore[arg-type]
        svc.recipients(bid, keyword="山田", status=DeliveryStatus.ERROR)  # type: ignore[arg-type]
        out = io.BytesIO()
        rows = svc.export_results_csv(bid, out, actor=OPERATOR)  # type: ignore[arg-type]
        assert rows == page.total
        if done:
            break
        time.sleep(0.01)


def create_big(svc: BroadcastService, count: str) -> None:
    create(svc, int(count))


def ingest(svc: BroadcastService, folder: str) -> None:
    from broadcast_adapters.bounces.sources import MaildirSource

    batches = 0

    def pause_after_the_first_batch(counts: dict[str, int]) -> None:
        # On a busy machine the whole Maildir could go before the parent looks:
        # wait here, mid-way, for the parent's SIGKILL.
        nonlocal batches
        batches += 1
        if batches == 1:
            time.sleep(120)

    svc.ingest(MaildirSource(folder), on_progress=pause_after_the_first_batch)


ROLES: dict[str, Callable[..., None]] = {
    "ingest": ingest,
    "create": create_big,
    "fake-dispatch": fake_dispatch,
    "bounce": bounce,
    "acknowledge": acknowledge,
    "list": listing,
}


def main(argv: list[str]) -> None:
    role, url, args = argv[0], argv[1], argv[2:]
    if role == "smtp-dispatch":
        smtp_dispatch(url, *args)
        return
    svc = open_service(url, FakeClock(T0))
    try:
        ROLES[role](svc, *args)
    finally:
        svc.close()


if __name__ == "__main__":
    main(sys.argv[1:])
