"""Two services on one SQLite file: each one's view store reads the other's writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from broadcast_domain import (
    AddressBookSource,
    BounceReport,
    BroadcastService,
    Contact,
    DeliveryStatus,
)
from broadcast_domain.testing.machine import ACTOR, SIGNING_KEY, ScriptedTransport


def _open(path: Path) -> BroadcastService:
    return BroadcastService.open(
        f"sqlite:///{path}", return_path="bounces@example.com", signing_key=SIGNING_KEY
    )


def test_a_store_never_applies_events_to_rows_another_process_changed(tmp_path: Path) -> None:
    """Rows one service applied stay correct after another service moved them on."""
    db = tmp_path / "shared.db"
    first, second = _open(db), _open(db)
    try:
        people = [Contact(f"p{i}@example.com", last_name=f"姓{i}") for i in range(30)]
        bid = first.create_broadcast(
            account_id="acme",
            inbox_id="inbox",
            sender="news@example.com",
            subject="s",
            text_body="b",
            source=AddressBookSource("book"),
            recipients=people,
            scheduled_at=datetime.now(UTC) - timedelta(minutes=1),
            actor=ACTOR,
        )
        assert first.summary(bid).scheduled == 30  # first has applied (and remembers) the rows
        transport = ScriptedTransport()
        report = second.dispatch_due(transport)  # second sends and applies Sent and Succeeded
        assert report.succeeded == 30
        message = transport.sent[0]
        outcome = first.record_bounce(
            BounceReport(
                recipient=message.recipient,
                status="5.1.1",
                diagnostic="no such user",
                permanent=True,
                reported_at=datetime.now(UTC),
                message_id=message.message_id,
            )
        )
        assert outcome.kind == "applied"
        summary = first.summary(bid)
        assert (summary.succeeded, summary.errors, summary.scheduled) == (29, 1, 0)
        errors = first.recipients(bid, status=DeliveryStatus.ERROR)
        assert [r.address for r in errors.items] == [message.recipient]
        # second last wrote these rows before first recorded the bounce: it must read them anew.
        assert second.acknowledge_errors(bid, actor=ACTOR) == 1
        assert first.summary(bid).unacknowledged_errors == 0
        assert first.verify_projections() == []
        assert second.verify_projections() == []
    finally:
        first.close()
        second.close()
