"""The unmatched-report log on the stores several processes share (SQLite, PostgreSQL)."""

from __future__ import annotations

from reliability_support import T0, create, open_service

from broadcast_domain.ports import OutgoingMessage
from broadcast_domain.testing.bounces import build_dsn
from broadcast_domain.testing.clock import FakeClock


def test_an_unmatched_dsn_is_kept_listed_and_survives_a_rebuild(durable_store_url: str) -> None:
    """A DSN about no delivery of ours is listed as unmatched, on every shared store, and the
    projections (the unmatched list included) equal a replay before and after a rebuild."""
    svc = open_service(durable_store_url, FakeClock(T0))
    try:
        create(svc, 1)
        stranger = OutgoingMessage(
            key="x",
            envelope_from="someone@elsewhere.example",
            recipient="nobody@example.net",
            message_id="<never-sent@elsewhere.example>",
            data=b"Message-ID: <never-sent@elsewhere.example>\r\n\r\nbody\r\n",
        )
        outcomes = svc.record_bounce_message(build_dsn(stranger, verp=False))
        assert [o.kind for o in outcomes] == ["unmatched"]
        page = svc.unmatched_reports()
        assert page.total == 1
        assert svc.verify_projections() == []
        svc.rebuild_projections()
        assert svc.unmatched_reports().total == 1
        assert svc.verify_projections() == []
    finally:
        svc.close()
