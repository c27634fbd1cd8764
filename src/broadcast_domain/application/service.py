"""The BroadcastService facade: what a host application calls.

``open()`` builds the collaborators once, each handed what it needs; every
public method checks its arguments' shape and delegates:

* ``gateway`` (:class:`~broadcast_domain.application.gateway.Gateway`) loads
  aggregates from the event log and records events, retrying on a version conflict;
* ``projector`` (:class:`~broadcast_domain.application.projector.Projector`)
  brings the views up to date: every read catches up first, so a process
  always reads its own writes;
* ``commands``, ``dispatcher``, ``intake`` and ``importer`` are the use cases
  (accounts, broadcasts and acknowledgements; sending; bounce reports;
  recipient input).

A command travels facade -> use case -> gateway -> event log; a read travels
facade -> projector (catch up) -> view store. Neither comes back up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, TypeVar
from uuid import UUID

import attrs

from broadcast_domain.application import results_io
from broadcast_domain.application.commands import Commands
from broadcast_domain.application.components import (
    bounce_parser_factory,
    csv_codec_factory,
    load_components,
    view_store_for,
)
from broadcast_domain.application.dispatching import Dispatcher
from broadcast_domain.application.eventlog import EventLog, parse_store_url
from broadcast_domain.application.gateway import Gateway
from broadcast_domain.application.importing import DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, Importer
from broadcast_domain.application.intake import DEFAULT_MAX_BOUNCE_BYTES, BounceIntake
from broadcast_domain.application.projector import Projector
from broadcast_domain.application.reading import Results
from broadcast_domain.application.results import (
    BounceOutcome,
    BroadcastItem,
    DispatchReport,
    ErrorPage,
    ExportRecord,
    HistoryEntry,
    ImportedRecipients,
    MonthlyUsage,
    Page,
    RecipientItem,
    Summary,
)
from broadcast_domain.application.validation import check_paging as _check_paging
from broadcast_domain.domain.account import Account
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import DomainEvent
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.unmatched import UnmatchedMessage
from broadcast_domain.domain.values import (
    AddressBookSource,
    BounceReport,
    BroadcastView,
    Contact,
    CsvSource,
    DeliveryStatus,
    require_aware,
)
from broadcast_domain.domain.verp import Verp
from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import (
    AddressBook,
    BounceParser,
    BounceSource,
    CsvCodec,
    MailTransport,
    ViewStore,
)

__all__ = ["BroadcastService", "system_clock"]

T = TypeVar("T")


def system_clock() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class BroadcastService:
    """The facade over the event log, the projections and the domain rules.

    Public attributes, for hosts, tools and tests that need more than the
    methods: ``events`` (the :class:`EventLog`: ``read``, ``get``,
    ``max_position``), ``views`` (the view store), ``verp`` (the VERP signer),
    ``policy``, ``sleep`` (how ``dispatch_due`` waits for a send rate), and the
    collaborators ``gateway``, ``projector``, ``commands``, ``dispatcher``,
    ``intake`` and ``importer``.
    """

    def __init__(
        self,
        *,
        log: EventLog,
        views: ViewStore,
        verp: Verp,
        clock: Callable[[], datetime] | None = None,
        policy: DeliveryPolicy | None = None,
        components: Any = None,
        address_book: AddressBook | None = None,
        csv_codec: CsvCodec | None = None,
        bounce_parser: BounceParser | None = None,
        max_bounce_bytes: int = DEFAULT_MAX_BOUNCE_BYTES,
    ) -> None:
        self.events = log
        self.views = views
        self.verp = verp
        self._clock = clock or system_clock
        self.policy = policy or DeliveryPolicy()
        self.address_book = address_book
        self.sleep: Callable[[float], None] = time.sleep
        self.gateway = Gateway(log)
        self.projector = Projector(log, views)
        self.commands = Commands(self.gateway, self.projector, self.now)
        self.dispatcher = Dispatcher(self.gateway, self.projector, verp, self.policy, self.now)
        self.intake = BounceIntake(
            self.gateway,
            self.projector,
            verp,
            policy=self.policy,
            clock=self.now,
            parser=bounce_parser_factory(bounce_parser, components),
            max_bytes=max_bounce_bytes,
        )
        self.importer = Importer(csv_codec_factory(csv_codec, components), address_book)
        self.results = Results(
            views=views,
            clock=self.now,
            csv=self.importer.codec,
            events=log,
            catch_up=self.projector.catch_up,
            record_export=self.commands.record_export,
        )

    # --- opening -------------------------------------------------------------------------

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
        view_store: ViewStore | None = None,
        address_book: AddressBook | None = None,
        csv_codec: CsvCodec | None = None,
        bounce_parser: BounceParser | None = None,
        max_bounce_bytes: int = DEFAULT_MAX_BOUNCE_BYTES,
    ) -> BroadcastService:
        """Open (creating on first use) the store at ``url`` and return the facade.

        ``url`` is ``memory://`` (in process), ``sqlite:///path.db`` or
        ``postgresql://user:password@host:port/dbname``. A raw report message
        larger than ``max_bounce_bytes`` (default 10 MiB) is ``ignored`` unread.
        """
        if not isinstance(bounce_window, timedelta) or bounce_window <= timedelta(0):
            raise InvalidInput("bounce_window must be a positive timedelta", field="bounce_window")
        if clock is not None and not callable(clock):
            raise InvalidInput(
                "clock must be a callable returning an aware datetime", field="clock"
            )
        if (
            isinstance(max_bounce_bytes, bool)
            or not isinstance(max_bounce_bytes, int)
            or max_bounce_bytes < 1
        ):
            raise InvalidInput(
                f"max_bounce_bytes must be a positive number of bytes, got {max_bounce_bytes!r}",
                field="max_bounce_bytes",
            )
        store = parse_store_url(url)
        components = load_components()
        # The view store first: it says clearly when a server is unreachable.
        views = view_store or view_store_for(store, components)
        return cls(
            log=EventLog(store),
            views=views,
            verp=Verp(return_path, signing_key),
            clock=clock,
            policy=attrs.evolve(policy or DeliveryPolicy(), bounce_window=bounce_window),
            components=components,
            address_book=address_book,
            csv_codec=csv_codec,
            bounce_parser=bounce_parser,
            max_bounce_bytes=max_bounce_bytes,
        )

    def close(self) -> None:
        """Release the store's connections."""
        self.views.close()
        self.events.close()

    def __enter__(self) -> BroadcastService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- time, projections ---------------------------------------------------------------

    def now(self) -> datetime:
        """The service clock's current time (aware, UTC)."""
        value = self._clock()
        require_aware(value, "clock()")
        return value.astimezone(UTC)

    def catch_up(self) -> int:
        """Apply every recorded event not yet in the projections; return the position."""
        return self.projector.catch_up()

    def projection_lag(self) -> int:
        """How many recorded events the projections have not applied yet (0 when current).

        Touches the event log and the view store, so it also tells whether the store
        is reachable (health checks call it); it applies nothing.
        """
        return self.projector.lag()

    def rebuild_projections(self, *, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Drop every projection and replay the whole log; return the position reached.

        ``on_progress(position, last)`` is called after each applied batch, with
        ``last`` the position of the last event recorded when the rebuild began.
        """
        return self.projector.rebuild(on_progress)

    def verify_projections(self) -> list[str]:
        """Replay the log into a scratch fold and compare with the live views ([] when equal)."""
        return self.projector.verify()

    # --- accounts ------------------------------------------------------------------------

    def configure_account(
        self,
        account_id: str,
        *,
        monthly_limit: int | None = None,
        timezone: str = "UTC",
        send_rate: float | None = None,
    ) -> None:
        """Set an account's monthly limit (None: unlimited), time zone and send rate (msg/s).

        Paused broadcasts of the account resume at once when the new limit admits more.
        """
        self.commands.configure_account(
            account_id, monthly_limit=monthly_limit, timezone=timezone, send_rate=send_rate
        )
        self.dispatcher.resume_account(account_id)

    def account(self, account_id: str) -> Account | None:
        """An account's configuration (None when never configured)."""
        self.catch_up()
        return self.views.account(account_id)

    # --- broadcasts ----------------------------------------------------------------------

    def create_broadcast(
        self,
        *,
        account_id: str,
        inbox_id: str,
        sender: str,
        subject: str,
        text_body: str,
        html_body: str | None = None,
        source: AddressBookSource | CsvSource,
        recipients: Iterable[Contact] | None = None,
        scheduled_at: datetime,
        actor: Any,
    ) -> UUID:
        """Schedule a broadcast; record it and every recipient in batched transactions.

        Everything is checked before anything is written: a bad input raises
        InvalidInput naming the field (``recipients[12].address``) and records nothing.
        """
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

    def summary(self, broadcast_id: UUID, as_of: datetime | None = None) -> Summary:
        """The status bar: counts, unacknowledged errors and, while sending, the estimate.

        With ``as_of`` (aware), the status bar as it stood at that moment, replayed
        from the event log (cost: the stretch of the log the broadcast spans).
        """
        return self.results.summary(broadcast_id, as_of)

    def list_broadcasts(
        self,
        inbox_id: str,
        view: BroadcastView = BroadcastView.ALL,
        page: int = 1,
        per_page: int = 20,
    ) -> Page[BroadcastItem]:
        """An inbox's broadcasts, newest created first: all, sending (incl. paused) or sent."""
        return self.results.list_broadcasts(inbox_id, view, page, per_page)

    # --- sending -------------------------------------------------------------------------

    def dispatch_due(
        self,
        transport: MailTransport,
        now: datetime | None = None,
        max_messages: int | None = None,
        *,
        on_progress: Callable[[DispatchReport], None] | None = None,
    ) -> DispatchReport:
        """Send what is due: claim, hand over through ``transport``, record the replies.

        Returns ``.sent .succeeded .errors .retried .paused`` (broadcast ids paused
        by the monthly limit in this call) and ``.completed``.
        """
        return self.dispatcher.dispatch(
            transport, now=now, max_messages=max_messages, on_progress=on_progress, sleep=self.sleep
        )

    # --- recipients ----------------------------------------------------------------------

    def recipients(
        self,
        broadcast_id: UUID,
        *,
        keyword: str | None = None,
        status: DeliveryStatus | None = None,
        page: int = 1,
        per_page: int = 50,
        reason: str | None = None,
    ) -> Page[RecipientItem]:
        """Search the recipient list: keyword over names, address, company; status and
        reason filters (``reason`` keeps the errors of that reason, a name of REASONS)."""
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

    def recipient_history(self, broadcast_id: UUID, address: str) -> list[HistoryEntry]:
        """The recipient's events, oldest first, each with a description and its cause."""
        return results_io.recipient_history(self.history(broadcast_id, address))

    # --- CSV in and out ------------------------------------------------------------------

    def parse_recipient_csv(
        self, data: bytes, *, max_rows: int = DEFAULT_MAX_ROWS, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> ImportedRecipients:
        """Read a recipient CSV (UTF-8 or CP932): ``.contacts`` and ``.problems`` (line, reason).

        Raises CsvImportError, importing nothing, when the file as a whole is unusable.
        """
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
        """Stream the result CSV (one row per recipient) to ``out``; return the rows written.

        Needs address-book ADMIN+ (address-book source) or inbox OPERATOR+ (CSV
        source), checked before anything is written. Records ResultsExported.
        """
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

    def export_history(self, broadcast_id: UUID) -> list[ExportRecord]:
        """Who exported the results or errors of the broadcast, when, as of which position."""
        return self.results.export_history(broadcast_id)

    # --- bounce reports (application/intake.py) -------------------------------------------

    def record_bounce(
        self, report: BounceReport, received_at: datetime | None = None
    ) -> BounceOutcome:
        """Take in one normalised report: applied, duplicate, late, unmatched or ignored.

        The report must name the failed recipient's address, and it must be the
        address of the delivery its VERP token or Message-ID names; otherwise it
        is ``unmatched`` and changes nothing (SPEC section 2).
        """
        return self.intake.record_report(report, received_at)

    def record_bounce_message(
        self,
        raw: bytes,
        received_at: datetime | None = None,
        *,
        envelope_recipient: str | None = None,
    ) -> list[BounceOutcome]:
        """Take in one raw report e-mail (DSN, plain-text bounce, ARF, auto-reply).

        Returns one outcome per per-recipient report in it (one ``ignored`` when
        it holds none). A failure report or complaint that matches no delivery is
        ``unmatched`` and the message is kept for :meth:`retry_unmatched`.
        ``envelope_recipient`` is the address the bounce was delivered to, when
        the host knows it (the VERP return path).
        """
        return self.intake.record_message(raw, received_at, envelope_recipient)

    def ingest(
        self,
        source: BounceSource,
        *,
        received_at: datetime | None = None,
        on_progress: Callable[[dict[str, int]], None] | None = None,
    ) -> dict[str, int]:
        """Record every message of a bounce source (a Maildir, an mbox ...).

        Each message is marked done only after its events are committed (in
        batches); one whose handling raises a BroadcastError is set aside, never
        deleted. Returns counts per outcome kind plus ``set_aside`` and
        ``messages`` (messages done); ``on_progress`` gets them after each batch.
        """
        return self.intake.ingest(source, received_at=received_at, on_progress=on_progress)

    def unmatched_reports(self, page: int = 1, per_page: int = 50) -> Page[UnmatchedMessage]:
        """Kept report messages that matched no delivery yet, oldest received first."""
        page, per_page = _check_paging(page, per_page)
        return self.intake.unmatched_page(page, per_page)

    def retry_unmatched(self) -> list[BounceOutcome]:
        """Correlate every kept message again; those whose reports all match leave the log."""
        return self.intake.retry()

    # --- monthly usage -------------------------------------------------------------------

    def monthly_usage(self, account_id: str, *, year: int, month: int) -> MonthlyUsage:
        """The month's send count (delivered recipients by first outcome) against the limit."""
        return self.results.monthly_usage(account_id, year=year, month=month)

    # --- acknowledgement -----------------------------------------------------------------

    def unacknowledged_errors(
        self, broadcast_id: UUID, page: int = 1, per_page: int = 50
    ) -> ErrorPage[RecipientItem]:
        """A page of errors nobody has checked, with ``as_of`` for acknowledging them all."""
        return self.results.unacknowledged_errors(broadcast_id, page, per_page)

    def acknowledge_errors(
        self, broadcast_id: UUID, *, actor: Any, as_of: int | datetime | None = None
    ) -> int:
        """Acknowledge every unacknowledged error recorded up to ``as_of`` (all pages):
        a page's ``.as_of`` (its log position), or an aware time (the errors recorded
        at or before it, as the web form's ISO 8601 ``as_of`` gives).

        Returns how many were acknowledged. Errors recorded after ``as_of`` stay
        unacknowledged. Batched: one write per few thousand errors.
        """
        b = self.results.broadcast(broadcast_id)
        return self.commands.acknowledge_errors(b, actor=actor, as_of=as_of)

    def acknowledge_error(self, broadcast_id: UUID, address: str, *, actor: Any) -> bool:
        """Acknowledge one recipient's error; False when it was already acknowledged.

        Raises InvalidTransition when the recipient is not in ERROR.
        """
        b = self.results.broadcast(broadcast_id)
        return self.commands.acknowledge_error(b, address, actor=actor)
