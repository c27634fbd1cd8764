"""The BroadcastService facade: what a host application calls.

``open()`` builds the collaborators once (``components.assemble``) and every
public method delegates to one: ``gateway`` loads aggregates from the event log
and records events, retrying on a version conflict; ``projector`` brings the
views up to date (every read catches up first, so a process reads its own
writes); the use cases ``commands``, ``dispatcher``, ``intake``, ``importer``;
``results``, the read side. A command travels facade -> use case -> gateway ->
event log; a read travels facade -> read side -> projector -> view store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, BinaryIO
from uuid import UUID

import attrs

from broadcast_domain import ports
from broadcast_domain.application import components as composition
from broadcast_domain.application import results as r
from broadcast_domain.application import results_io
from broadcast_domain.application.components import Collaborators, system_clock
from broadcast_domain.application.eventlog import EventLog, parse_store_url
from broadcast_domain.application.importing import DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS
from broadcast_domain.application.intake import DEFAULT_MAX_BOUNCE_BYTES
from broadcast_domain.application.validation import check_paging
from broadcast_domain.domain import values as v
from broadcast_domain.domain.account import Account
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.unmatched import UnmatchedMessage
from broadcast_domain.domain.verp import Verp

__all__ = ["BroadcastService", "system_clock"]


class BroadcastService:
    """The facade. Public attributes beside the methods: ``events`` (the :class:`EventLog`),
    ``views`` (the view store), ``verp``, ``policy``, ``now`` (the clock), ``sleep`` (how
    ``dispatch_due`` waits for a send rate) and the collaborators named above."""

    def __init__(self, parts: Collaborators) -> None:
        """Use :meth:`open`, which builds the ``parts`` once (``components.assemble``)."""
        self.events, self.views, self.verp = parts.log, parts.views, parts.verp
        self.policy, self.now, self.address_book = parts.policy, parts.now, parts.address_book
        self.sleep: Callable[[float], None] = time.sleep
        self.gateway, self.projector, self.commands = parts.gateway, parts.projector, parts.commands
        self.dispatcher, self.intake = parts.dispatcher, parts.intake
        self.importer, self.results = parts.importer, parts.results

    @classmethod
    def open(
        cls,
        url: str = "memory://",
        *,
        return_path: str,
        signing_key: bytes,
        clock: Callable[[], datetime] | None = None,
        bounce_window: timedelta = timedelta(hours=24),
        policy: DeliveryPolicy | None = None,
        view_store: ports.ViewStore | None = None,
        address_book: ports.AddressBook | None = None,
        csv_codec: ports.CsvCodec | None = None,
        bounce_parser: ports.BounceParser | None = None,
        max_bounce_bytes: int = DEFAULT_MAX_BOUNCE_BYTES,
    ) -> BroadcastService:
        """Open (creating on first use) the store at ``url``: ``memory://``,
        ``sqlite:///path.db`` or ``postgresql://user:password@host:port/dbname``.
        A raw report larger than ``max_bounce_bytes`` (10 MiB) is ``ignored`` unread."""
        composition.check_open_options(bounce_window, clock, max_bounce_bytes)
        store = parse_store_url(url)
        adapters = composition.load_components()
        # The view store first: it says clearly when a server is unreachable.
        views = view_store or composition.view_store_for(store, adapters)
        policy = attrs.evolve(policy or DeliveryPolicy(), bounce_window=bounce_window)
        parts = composition.assemble(
            log=EventLog(store),
            views=views,
            verp=Verp(return_path, signing_key),
            policy=policy,
            now=composition.aware_clock(clock or system_clock),
            components=adapters,
            address_book=address_book,
            csv_codec=csv_codec,
            bounce_parser=bounce_parser,
            max_bounce_bytes=max_bounce_bytes,
        )
        return cls(parts)

    def close(self) -> None:
        """Release the store's connections."""
        self.views.close()
        self.events.close()

    def __enter__(self) -> BroadcastService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def catch_up(self) -> int:
        """Apply every recorded event not yet in the projections; return the position."""
        return self.projector.catch_up()

    def projection_lag(self) -> int:
        """How many recorded events the projections have not applied (0: current).
        It reads the log and the view store, so health checks call it."""
        return self.projector.lag()

    def rebuild_projections(self, *, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Drop every projection and replay the whole log; return the position reached.
        ``on_progress(position, last)`` is called after each applied batch."""
        return self.projector.rebuild(on_progress)

    def verify_projections(self) -> list[str]:
        """Replay the log into a scratch fold and compare with the live views ([] when equal)."""
        return self.projector.verify()

    def configure_account(
        self,
        account_id: str,
        *,
        monthly_limit: int | None = None,
        timezone: str = "UTC",
        send_rate: float | None = None,
    ) -> None:
        """Set an account's monthly limit (None: unlimited), time zone and send rate (msg/s);
        its paused broadcasts resume at once when the new limit admits more."""
        self.commands.configure_account(
            account_id, monthly_limit=monthly_limit, timezone=timezone, send_rate=send_rate
        )
        self.dispatcher.resume_account(account_id)

    def account(self, account_id: str) -> Account | None:
        """An account's configuration (None when never configured)."""
        self.catch_up()
        return self.views.account(account_id)

    def create_broadcast(
        self,
        *,
        account_id: str,
        inbox_id: str,
        sender: str,
        subject: str,
        text_body: str,
        html_body: str | None = None,
        source: v.AddressBookSource | v.CsvSource,
        recipients: Iterable[v.Contact] | None = None,
        scheduled_at: datetime,
        actor: Any,
    ) -> UUID:
        """Schedule a broadcast. Everything is checked before anything is written: bad
        input raises InvalidInput naming the field (``recipients[12].address``)."""
        new = self.importer.new_broadcast(
            account_id=account_id,
            inbox_id=inbox_id,
            sender=sender,
            subject=subject,
            text_body=text_body,
            html_body=html_body,
            source=source,
            recipients=recipients,
            scheduled_at=scheduled_at,
            actor=actor,
        )
        return self.commands.create_broadcast(new)

    def cancel_broadcast(self, broadcast_id: UUID, *, actor: Any) -> None:
        """Cancel a broadcast whose sending has not started (inbox OPERATOR or above)."""
        self.commands.cancel_broadcast(broadcast_id, actor=actor)

    def broadcast(self, broadcast_id: UUID) -> Broadcast:
        """A broadcast's state (subject, source, status ...)."""
        return self.results.broadcast(broadcast_id)

    def summary(self, broadcast_id: UUID, as_of: datetime | None = None) -> r.Summary:
        """The status bar: counts, unacknowledged errors, the estimate while sending;
        with ``as_of`` (aware), as it stood then, replayed from the log."""
        return self.results.summary(broadcast_id, as_of)

    def list_broadcasts(
        self,
        inbox_id: str,
        view: v.BroadcastView = v.BroadcastView.ALL,
        page: int = 1,
        per_page: int = 20,
    ) -> r.Page[r.BroadcastItem]:
        """An inbox's broadcasts, newest first: all, sending (incl. paused) or sent."""
        return self.results.list_broadcasts(inbox_id, view, page, per_page)

    def dispatch_due(
        self,
        transport: ports.MailTransport,
        now: datetime | None = None,
        max_messages: int | None = None,
        *,
        on_progress: Callable[[r.DispatchReport], None] | None = None,
    ) -> r.DispatchReport:
        """Send what is due: claim, hand over through ``transport``, record the replies.
        Returns ``.sent .succeeded .errors .retried .paused .completed``."""
        return self.dispatcher.dispatch(
            transport, now=now, max_messages=max_messages, on_progress=on_progress, sleep=self.sleep
        )

    def recipients(
        self,
        broadcast_id: UUID,
        *,
        keyword: str | None = None,
        status: v.DeliveryStatus | None = None,
        page: int = 1,
        per_page: int = 50,
        reason: str | None = None,
    ) -> r.Page[r.RecipientItem]:
        """Search the recipient list: keyword over names, address, company; filters by
        status and by ``reason`` (the errors of that reason, a name of REASONS)."""
        return self.results.recipients(
            broadcast_id,
            keyword=keyword,
            status=status,
            page=page,
            per_page=per_page,
            reason=reason,
        )

    def history(self, broadcast_id: UUID, address: str) -> list[DomainEvent]:
        """The recipient's events, oldest first."""
        return self.gateway.recipient_events(broadcast_id, address)

    def recipient_history(self, broadcast_id: UUID, address: str) -> list[r.HistoryEntry]:
        """The recipient's events, oldest first, each with a description and its cause."""
        return results_io.recipient_history(self.history(broadcast_id, address))

    def parse_recipient_csv(
        self, data: bytes, *, max_rows: int = DEFAULT_MAX_ROWS, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> r.ImportedRecipients:
        """Read a recipient CSV (UTF-8 or CP932): ``.contacts``, ``.problems`` (line, reason);
        CsvImportError, importing nothing, when the file as a whole is unusable."""
        return self.importer.parse_csv(data, max_rows=max_rows, max_bytes=max_bytes)

    def export_results_csv(
        self,
        broadcast_id: UUID,
        out: BinaryIO,
        *,
        actor: Any,
        encoding: str = "utf-8-sig",
        headers: str = "ja",
    ) -> int:
        """Stream the result CSV to ``out``; return the rows written. Permission (address-book
        ADMIN+ or inbox OPERATOR+) is checked first; records ResultsExported."""
        return self.results.export_results_csv(
            broadcast_id, out, actor=actor, encoding=encoding, headers=headers
        )

    def export_unacknowledged_errors_csv(
        self,
        broadcast_id: UUID,
        out: BinaryIO,
        *,
        actor: Any,
        encoding: str = "utf-8-sig",
        headers: str = "ja",
        as_of: int | None = None,
    ) -> int:
        """Stream the unacknowledged errors recorded up to ``as_of`` (default: now) as CSV."""
        return self.results.export_unacknowledged_errors_csv(
            broadcast_id, out, actor=actor, encoding=encoding, headers=headers, as_of=as_of
        )

    def results_file_name(self, broadcast_id: UUID, kind: str = "results") -> str:
        """The download name of the result (or ``kind="errors"``) CSV; safe, never empty."""
        return self.results.results_file_name(broadcast_id, kind)

    def export_history(self, broadcast_id: UUID) -> list[r.ExportRecord]:
        """Who exported the results or errors of the broadcast, when, as of which position."""
        return self.results.export_history(broadcast_id)

    def record_bounce(
        self, report: v.BounceReport, received_at: datetime | None = None
    ) -> r.BounceOutcome:
        """Take in one normalised report: applied, duplicate, late, unmatched or ignored. A
        report whose address is not its delivery's is ``unmatched`` and changes nothing."""
        return self.intake.record_report(report, received_at)

    def record_bounce_message(
        self,
        raw: bytes,
        received_at: datetime | None = None,
        *,
        envelope_recipient: str | None = None,
    ) -> list[r.BounceOutcome]:
        """Take in one raw report e-mail (DSN, plain-text bounce, ARF, auto-reply): an outcome
        per report in it; one that matches no delivery is kept for ``retry_unmatched``."""
        return self.intake.record_message(raw, received_at, envelope_recipient)

    def ingest(
        self,
        source: ports.BounceSource,
        *,
        received_at: datetime | None = None,
        on_progress: Callable[[dict[str, int]], None] | None = None,
    ) -> dict[str, int]:
        """Record every message of a bounce source (Maildir, mbox ...), each marked done
        only after its events commit; return counts per outcome, ``set_aside``, ``messages``."""
        return self.intake.ingest(source, received_at=received_at, on_progress=on_progress)

    def unmatched_reports(self, page: int = 1, per_page: int = 50) -> r.Page[UnmatchedMessage]:
        """Kept report messages that matched no delivery yet, oldest received first."""
        page, per_page = check_paging(page, per_page)
        return self.intake.unmatched_page(page, per_page)

    def retry_unmatched(self) -> list[r.BounceOutcome]:
        """Correlate every kept message again; those whose reports all match leave the log."""
        return self.intake.retry()

    def monthly_usage(self, account_id: str, *, year: int, month: int) -> r.MonthlyUsage:
        """The month's send count (delivered recipients by first outcome) against the limit."""
        return self.results.monthly_usage(account_id, year=year, month=month)

    def unacknowledged_errors(
        self, broadcast_id: UUID, page: int = 1, per_page: int = 50
    ) -> r.ErrorPage[r.RecipientItem]:
        """A page of errors nobody has checked, with ``as_of`` for acknowledging them all."""
        return self.results.unacknowledged_errors(broadcast_id, page, per_page)

    def acknowledge_errors(
        self, broadcast_id: UUID, *, actor: Any, as_of: int | datetime | None = None
    ) -> int:
        """Acknowledge every error recorded up to ``as_of`` (a page's ``.as_of`` position, or an
        aware time); return how many. Later errors stay unacknowledged."""
        b = self.results.broadcast(broadcast_id)
        return self.commands.acknowledge_errors(b, actor=actor, as_of=as_of)

    def acknowledge_error(self, broadcast_id: UUID, address: str, *, actor: Any) -> bool:
        """Acknowledge one recipient's error; False when already acknowledged,
        InvalidTransition when the recipient is not in ERROR."""
        b = self.results.broadcast(broadcast_id)
        return self.commands.acknowledge_error(b, address, actor=actor)
