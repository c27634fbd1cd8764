"""The terminal status bar shows the errors broken down by reason."""

from __future__ import annotations

from uuid import uuid4
from zoneinfo import ZoneInfo

from rich.console import Console

from broadcast_adapters.console import status_table
from broadcast_domain import BroadcastStatus, Summary


def test_the_status_bar_lists_each_reason_with_its_labels_and_count() -> None:
    """Each reason with errors gets a row with its Japanese and English labels."""
    summary = Summary(
        broadcast_id=uuid4(),
        status=BroadcastStatus.SENT,
        recipients=10,
        scheduled=0,
        sending=0,
        succeeded=6,
        errors=4,
        delivered=10,
        unacknowledged_errors=4,
        estimated_completion_at=None,
        errors_by_reason={"userunknown": 3, "mailboxfull": 1},
    )
    console = Console(record=True, width=120)
    console.print(status_table(summary, title="t", zone=ZoneInfo("Asia/Tokyo")))
    text = console.export_text()
    lines = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in text.splitlines()
        if line.count("│") >= 3
    }
    assert lines["宛先不明 (user unknown)"] == "3"
    assert lines["容量超過 (mailbox full)"] == "1"
    assert "ドメイン不明" not in text
