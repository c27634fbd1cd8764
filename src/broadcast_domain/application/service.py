"""The BroadcastService facade: what a host application calls.

Each command loads what it needs, asks the domain for events, records them in
one batched write (retrying on a version conflict) and returns an id or a
plain value. Reads first bring the projections up to date with the event log,
so a process always reads its own writes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Any, BinaryIO, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from broadcast_domain.application import results_io
from broadcast_domain.application.bounces import (
    DEFAULT_MAX_BOUNCE_BYTES,
    BounceIntake,
    normalised_outcome,
)
from broadcast_domain.application.eventlog import (
    EventLog,
    StoreUrl,
    VersionConflict,
    parse_store_url,
)
from broadcast_domain.application.memory_views import InMemoryViewStore
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
from broadcast_domain.application.sending import Dispatcher, account_allowance
from broadcast_domain.application.validation import (
    check_address,
    check_header_field,
    check_paging,
    fold_contacts,
    require_text,
    require_uuid,
)
from broadcast_domain.domain.account import Account, account_aggregate_id
from broadcast_domain.domain.broadcast import Broadcast
from broadcast_domain.domain.events import (
    AccountConfigured,
    BroadcastEvent,
    BroadcastScheduled,
    DomainEvent,
    ErrorAcknowledged,
    RecipientEvent,
)
from broadcast_domain.domain.permissions import require_inbox_role
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.reasons import is_reason
from broadcast_domain.domain.recipient import (
    Recipient,
    derive_report_id,
    recipient_id,
    schedule,
)
from broadcast_domain.domain.unmatched import UnmatchedMessage
from broadcast_domain.domain.values import (
    AddressBookSource,
    BounceReport,
    BroadcastStatus,
    BroadcastView,
    Contact,
    CsvSource,
    DeliveryStatus,
    InboxRole,
    require_aware,
)
from broadcast_domain.domain.verp import Verp
from broadcast_domain.errors import (
    BroadcastError,
    ConcurrencyConflict,
    InvalidInput,
    UnknownBroadcast,
    UnknownRecipient,
)
from broadcast_domain.ports import (
    AddressBook,
    BounceParser,
    BounceSource,
    CsvCodec,
    MailTransport,
    ViewStore,
)
from broadcast_domain.projections.views import (
    Views,
    fold,
)

__all__ = ["BroadcastService"]

T = TypeVar("T")

_WRITE_CHUNK = 10_000
_READ_CHUNK = 5_000
# A rebuild applies bigger batches: each applied batch writes a recipient's row once,
# so fewer batches mean fewer rewrites of rows whose events are close together.
_REBUILD_CHUNK = 25_000
_MAX_RETRIES = 20
_ENTRY_POINT_GROUP = "broadcast_domain.adapters"


def system_clock() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def _load_components() -> Any:
    # Adapters are found through an entry point, never imported by the core.
    for ep in entry_points(group=_ENTRY_POINT_GROUP):
        if ep.name == "default":
            return ep.load()()
    return None


_require_text = require_text
_require_uuid = require_uuid


class BroadcastService:
    """The facade over the event log, the projections and the domain rules."""

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
        self._log = log
        self._views = views
        self._verp = verp
        self._clock = clock or system_clock
        self.policy = policy or DeliveryPolicy()
        self._components = components
        self.address_book = address_book
        self._csv_codec = csv_codec
        self._catch_up_lock = threading.Lock()
        self._sleep: Callable[[float], None] = time.sleep
        self._bounce_parser = bounce_parser
        self._max_bounce_bytes = max_bounce_bytes
        self._intake: BounceIntake | None = None
        self._results = Results(
            views=views,
            clock=self.now,
            csv=self._csv,
            events=log,
            catch_up=self.catch_up,
            record_export=self._record_export,
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
        verp = Verp(return_path, signing_key)
        pol = attrs.evolve(policy or DeliveryPolicy(), bounce_window=bounce_window)
        components = _load_components()
        views = view_store or cls._make_views(store, components)
        log = EventLog(store)
        return cls(
            log=log,
            views=views,
            verp=verp,
            clock=clock,
            policy=pol,
            components=components,
            address_book=address_book,
            csv_codec=csv_codec,
            bounce_parser=bounce_parser,
            max_bounce_bytes=max_bounce_bytes,
        )

    @staticmethod
    def _make_views(store: StoreUrl, components: Any) -> ViewStore:
        if store.kind == "memory":
            return InMemoryViewStore()
        if components is None:
            raise BroadcastError(
                f"the {store.kind} store needs the broadcast_adapters package, which ships in the "
                "broadcast-domain distribution; reinstall broadcast-domain"
            )
        views: ViewStore = components.view_store(store)
        return views

    def close(self) -> None:
        """Release the store's connections."""
        self._views.close()
        self._log.close()

    def __enter__(self) -> BroadcastService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- time, writing, projecting -------------------------------------------------------

    def now(self) -> datetime:
        """The service clock's current time (aware, UTC)."""
        value = self._clock()
        require_aware(value, "clock()")
        return value.astimezone(UTC)

    def _decide_and_put(self, decide: Callable[[], tuple[T, Sequence[DomainEvent]]]) -> T:
        # Optimistic concurrency: decide on fresh state, write; if another writer
        # took the version first, decide again on the newer state.
        for _ in range(_MAX_RETRIES):
            result, events = decide()
            try:
                self._log.put(events)
            except VersionConflict:
                continue
            return result
        raise ConcurrencyConflict(
            f"gave up after {_MAX_RETRIES} version conflicts; another process keeps "
            "writing the same aggregate: try again"
        )

    def catch_up(self) -> int:
        """Apply every recorded event not yet in the projections; return the position."""
        return self._apply_pending()

    def projection_lag(self) -> int:
        """How many recorded events the projections have not applied yet (0 when current).

        Touches the event log and the view store, so it also tells whether the store
        is reachable (health checks call it); it applies nothing.
        """
        return max(0, self._log.max_position() - self._views.position())

    def _apply_pending(
        self, on_batch: Callable[[int], None] | None = None, chunk: int = _READ_CHUNK
    ) -> int:
        """catch_up, calling ``on_batch(last position of the batch)`` after each batch."""
        with self._catch_up_lock:
            while True:
                position = self._views.position()
                batch = self._log.read(position, chunk)
                if not batch:
                    return position
                # False means another process applied it first: read on from its position.
                self._views.apply(batch, expected_position=position)
                if on_batch is not None:
                    on_batch(batch[-1][0])

    # --- loading aggregates --------------------------------------------------------------

    def _load_broadcast(self, broadcast_id: object) -> Broadcast:
        bid = _require_uuid(broadcast_id)
        events = [e for e in self._log.get(bid) if isinstance(e, BroadcastEvent)]
        state = Broadcast.fold(events)
        if state is None:
            raise UnknownBroadcast(f"no broadcast has id {bid}")
        return state

    def _load_recipient(self, rid: UUID) -> Recipient | None:
        events = [e for e in self._log.get(rid) if isinstance(e, RecipientEvent)]
        return Recipient.fold(events)

    def _load_account(self, account_id: str) -> Account | None:
        state: Account | None = None
        for e in self._log.get(account_aggregate_id(account_id)):
            if isinstance(e, AccountConfigured):
                state = e.apply(state)
        return state

    def _viewed_broadcast(self, broadcast_id: object) -> Broadcast:
        return self._results.broadcast(broadcast_id)

    # --- accounts ------------------------------------------------------------------------

    def configure_account(
        self,
        account_id: str,
        *,
        monthly_limit: int | None = None,
        timezone: str = "UTC",
        send_rate: float | None = None,
    ) -> None:
        """Set an account's monthly limit (None: unlimited), time zone and send rate (msg/s)."""
        _require_text(account_id, "account_id")
        if monthly_limit is not None and (
            not isinstance(monthly_limit, int)
            or isinstance(monthly_limit, bool)
            or monthly_limit < 0
        ):
            raise InvalidInput(
                f"monthly_limit must be a non-negative int or None, got {monthly_limit!r}",
                field="monthly_limit",
            )
        try:
            ZoneInfo(_require_text(timezone, "timezone"))
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(
                f"timezone {timezone!r} is not an IANA time zone name such as 'Asia/Tokyo'",
                field="timezone",
            ) from None
        if send_rate is not None and (
            isinstance(send_rate, bool) or not isinstance(send_rate, int | float) or send_rate <= 0
        ):
            raise InvalidInput(
                f"send_rate must be a positive number of messages per second, got {send_rate!r}",
                field="send_rate",
            )
        now = self.now()

        def decide() -> tuple[None, list[DomainEvent]]:
            current = self._load_account(account_id)
            return None, [
                AccountConfigured(
                    originator_id=account_aggregate_id(account_id),
                    originator_version=(current.version if current else 0) + 1,
                    timestamp=now,
                    account_id=account_id,
                    monthly_limit=monthly_limit,
                    timezone=timezone,
                    send_rate=float(send_rate) if send_rate is not None else None,
                )
            ]

        self._decide_and_put(decide)
        self._after_account_change(account_id)

    def _after_account_change(self, account_id: str) -> None:
        """Resume the account's paused broadcasts at once when the new limit admits more."""
        self.catch_up()
        now = self.now()
        account = self._views.account(account_id)
        paused = [
            b
            for b in self._views.due_broadcasts(now)
            if b.account_id == account_id and b.status is BroadcastStatus.PAUSED
        ]
        if not paused:
            return
        left = account_allowance(self._views, account_id, account, now)
        if left is not None and left == 0:
            return
        for b in paused:

            def decide(bid: UUID = b.id) -> tuple[None, list[BroadcastEvent]]:
                return None, self._load_broadcast(bid).resume(now=now)

            self._decide_and_put(decide)

    def account(self, account_id: str) -> Account | None:
        """An account's configuration (None when never configured)."""
        self.catch_up()
        return self._views.account(account_id)

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
        _require_text(account_id, "account_id")
        _require_text(inbox_id, "inbox_id")
        who = require_inbox_role(actor, inbox_id, InboxRole.OPERATOR, "creating a broadcast")
        sender_address = check_address(_require_text(sender, "sender"), "sender")
        check_header_field(_require_text(subject, "subject", allow_empty=True), "subject")
        _require_text(text_body, "text_body", allow_empty=True)
        if html_body is not None:
            _require_text(html_body, "html_body", allow_empty=True)
        if isinstance(source, AddressBookSource):
            _require_text(source.address_book_id, "source.address_book_id")
            kind, ref = "address_book", source.address_book_id
        elif isinstance(source, CsvSource):
            _require_text(source.file_name, "source.file_name")
            kind, ref = "csv", source.file_name
        else:
            raise InvalidInput(
                "source must be AddressBookSource(address_book_id) or CsvSource(file_name)",
                field="source",
            )
        require_aware(scheduled_at, "scheduled_at")
        if recipients is None:
            if isinstance(source, AddressBookSource) and self.address_book is not None:
                recipients = self.address_book.contacts(source.address_book_id)
            else:
                raise InvalidInput(
                    "recipients must be given (a list of Contact)", field="recipients"
                )
        contacts, _duplicates = fold_contacts(recipients)
        if not contacts:
            raise InvalidInput("a broadcast needs at least one recipient", field="recipients")
        now = self.now()
        bid = uuid.uuid4()
        # Recipients first, the broadcast last: until its own event commits the
        # broadcast does not exist, so a crash midway leaves nothing visible or sendable.
        # The events are built one chunk at a time, so memory does not grow with the list.
        for start in range(0, len(contacts), _WRITE_CHUNK):
            chunk = contacts[start : start + _WRITE_CHUNK]
            self._log.put(schedule(bid, account_id, chunk, now, first_position=start))
        self._log.put(
            [
                BroadcastScheduled(
                    originator_id=bid,
                    originator_version=1,
                    timestamp=now,
                    account_id=account_id,
                    inbox_id=inbox_id,
                    sender=sender_address,
                    subject=subject,
                    text_body=text_body,
                    html_body=html_body,
                    source_kind=kind,
                    source_ref=ref,
                    scheduled_at=scheduled_at.astimezone(UTC),
                    created_by=who.user_id,
                    recipient_count=len(contacts),
                )
            ]
        )
        return bid

    def cancel_broadcast(self, broadcast_id: UUID, *, actor: Any) -> None:
        """Cancel a broadcast whose sending has not started (inbox OPERATOR or above)."""
        first = self._load_broadcast(broadcast_id)
        who = require_inbox_role(
            actor, first.inbox_id, InboxRole.OPERATOR, "cancelling a broadcast"
        )
        now = self.now()

        def decide() -> tuple[None, list[BroadcastEvent]]:
            return None, self._load_broadcast(first.id).cancel(by=who.user_id, now=now)

        self._decide_and_put(decide)

    def broadcast(self, broadcast_id: UUID) -> Broadcast:
        """A broadcast's state (subject, source, status ...)."""
        return self._viewed_broadcast(broadcast_id)

    def summary(self, broadcast_id: UUID, as_of: datetime | None = None) -> Summary:
        """The status bar: counts, unacknowledged errors and, while sending, the estimate.

        With ``as_of`` (aware), the status bar as it stood at that moment, replayed
        from the event log (cost: the stretch of the log the broadcast spans).
        """
        return self._results.summary(broadcast_id, as_of)

    def list_broadcasts(
        self,
        inbox_id: str,
        view: BroadcastView = BroadcastView.ALL,
        page: int = 1,
        per_page: int = 20,
    ) -> Page[BroadcastItem]:
        """An inbox's broadcasts, newest created first: all, sending (incl. paused) or sent."""
        return self._results.list_broadcasts(inbox_id, view, page, per_page)

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
        return Dispatcher(
            self,
            transport,
            now=now,
            max_messages=max_messages,
            sleep=self._sleep,
            on_progress=on_progress,
        ).run()

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
        return self._results.recipients(
            broadcast_id,
            keyword=keyword,
            status=status,
            page=page,
            per_page=per_page,
            reason=reason,
        )

    def history(self, broadcast_id: UUID, address: str) -> list[DomainEvent]:
        """The recipient's events, oldest first."""
        bid = _require_uuid(broadcast_id)
        _require_text(address, "address")
        events = self._log.get(recipient_id(bid, address))
        if not events:
            self._load_broadcast(bid)
            raise UnknownRecipient(f"broadcast {bid} has no recipient {address!r}")
        return events

    def recipient_history(self, broadcast_id: UUID, address: str) -> list[HistoryEntry]:
        """The recipient's events, oldest first, each with a description and its cause."""
        return results_io.recipient_history(self.history(broadcast_id, address))

    # --- CSV in and out ------------------------------------------------------------------

    def _csv(self) -> CsvCodec:
        if self._csv_codec is None:
            factory = getattr(self._components, "csv_codec", None)
            if factory is None:
                raise BroadcastError(
                    "reading and writing CSV needs the broadcast_adapters package, which ships "
                    "in the broadcast-domain distribution; reinstall it or pass csv_codec= to "
                    "BroadcastService.open"
                )
            self._csv_codec = factory()
        return self._csv_codec

    def parse_recipient_csv(
        self,
        data: bytes,
        *,
        max_rows: int = results_io.DEFAULT_MAX_ROWS,
        max_bytes: int = results_io.DEFAULT_MAX_BYTES,
    ) -> ImportedRecipients:
        """Read a recipient CSV (UTF-8 or CP932): ``.contacts`` and ``.problems`` (line, reason).

        Raises CsvImportError, importing nothing, when the file as a whole is unusable.
        """
        return results_io.parse_recipient_csv(
            self._csv(), data, max_rows=max_rows, max_bytes=max_bytes
        )

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
        return self._results.export_results_csv(
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
        return self._results.export_unacknowledged_errors_csv(
            broadcast_id, out, actor=actor, encoding=encoding, headers=headers, as_of=as_of
        )

    def results_file_name(self, broadcast_id: UUID, kind: str = "results") -> str:
        """The download name of the result (or ``kind="errors"``) CSV; safe, never empty."""
        return self._results.results_file_name(broadcast_id, kind)

    def export_history(self, broadcast_id: UUID) -> list[ExportRecord]:
        """Who exported the results or errors of the broadcast, when, as of which position."""
        return self._results.export_history(broadcast_id)

    def _record_export(self, bid: UUID, by: str, kind: str, as_of: int, rows: int) -> None:
        now = self.now()
        self._decide_and_put(
            lambda: (
                None,
                self._load_broadcast(bid).record_export(
                    by=by, kind=kind, as_of=as_of, rows=rows, now=now
                ),
            )
        )

    # --- reports -------------------------------------------------------------------------

    def _correlate(self, report: BounceReport) -> tuple[UUID | None, str]:
        """The delivery a normalised report's token or Message-ID names, and which one did."""
        if report.verp_token:
            rid = self._verp.verify(report.verp_token)
            if rid is not None:
                return rid, "VERP token"
        if report.message_id:
            self.catch_up()
            mid = report.message_id.strip()
            if not mid.startswith("<"):
                mid = f"<{mid}>"
            return self._views.recipient_by_message_id(mid), "Message-ID"
        return None, ""

    def record_bounce(
        self, report: BounceReport, received_at: datetime | None = None
    ) -> BounceOutcome:
        """Take in one normalised report: applied, duplicate, late, unmatched or ignored.

        The report must name the failed recipient's address, and it must be the
        address of the delivery its VERP token or Message-ID names; otherwise it
        is ``unmatched`` and changes nothing (SPEC section 2).
        """
        if not isinstance(report, BounceReport):
            raise InvalidInput("report must be a BounceReport", field="report")
        if report.reason is not None and not is_reason(report.reason):
            raise InvalidInput(
                f"report.reason {report.reason!r} is not one of REASONS", field="report.reason"
            )
        require_aware(report.reported_at, "report.reported_at")
        received = (
            require_aware(received_at, "received_at") if received_at is not None else self.now()
        )
        received = received.astimezone(UTC)
        rid, correlated_by = self._correlate(report)
        if rid is None:
            return BounceOutcome(
                kind="unmatched",
                report=report,
                report_id=derive_report_id(report),
                detail="no valid VERP token or known Message-ID",
            )
        now = self.now()

        def decide() -> tuple[BounceOutcome, Sequence[RecipientEvent]]:
            # The recipient's state from the event log (the write side), never a view.
            return normalised_outcome(
                self._load_recipient(rid),
                report,
                correlated_by=correlated_by,
                received_at=received,
                now=now,
                policy=self.policy,
            )

        return self._decide_and_put(decide)

    # --- raw report messages and the unmatched log (logic in application/bounces.py) -----

    def _bounces(self) -> BounceIntake:
        if self._intake is None:
            parser = self._bounce_parser
            if parser is None:
                if self._components is None or not hasattr(self._components, "bounce_parser"):
                    raise BroadcastError(
                        "reading raw bounce messages needs a bounce parser: pass "
                        "bounce_parser= to BroadcastService.open(), or install broadcast-domain "
                        "with its broadcast_adapters package"
                    )
                parser = self._components.bounce_parser()
            self._intake = BounceIntake(self, parser, max_bytes=self._max_bounce_bytes)
        return self._intake

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
        return self._bounces().record_message(raw, received_at, envelope_recipient)

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
        return self._bounces().ingest(source, received_at=received_at, on_progress=on_progress)

    def unmatched_reports(self, page: int = 1, per_page: int = 50) -> Page[UnmatchedMessage]:
        """Kept report messages that matched no delivery yet, oldest received first."""
        page, per_page = check_paging(page, per_page)
        return self._bounces().unmatched_page(page, per_page)

    def retry_unmatched(self) -> list[BounceOutcome]:
        """Correlate every kept message again; those whose reports all match leave the log."""
        return self._bounces().retry()

    # --- monthly usage -------------------------------------------------------------------

    def monthly_usage(self, account_id: str, *, year: int, month: int) -> MonthlyUsage:
        """The month's send count (delivered recipients by first outcome) against the limit."""
        return self._results.monthly_usage(account_id, year=year, month=month)

    # --- acknowledgement -----------------------------------------------------------------

    def unacknowledged_errors(
        self, broadcast_id: UUID, page: int = 1, per_page: int = 50
    ) -> ErrorPage[RecipientItem]:
        """A page of errors nobody has checked, with ``as_of`` for acknowledging them all."""
        return self._results.unacknowledged_errors(broadcast_id, page, per_page)

    def acknowledge_errors(
        self, broadcast_id: UUID, *, actor: Any, as_of: int | None = None
    ) -> int:
        """Acknowledge every unacknowledged error recorded up to ``as_of`` (all pages).

        Returns how many were acknowledged. Errors recorded after ``as_of`` stay
        unacknowledged. Batched: one write per few thousand errors.
        """
        b = self._viewed_broadcast(broadcast_id)
        who = require_inbox_role(actor, b.inbox_id, InboxRole.OPERATOR, "acknowledging errors")
        if as_of is None:
            as_of = self._views.position()
        if isinstance(as_of, bool) or not isinstance(as_of, int) or as_of < 0:
            raise InvalidInput(
                "as_of must be the .as_of of an unacknowledged_errors() page", field="as_of"
            )
        now = self.now()
        total = 0
        for _ in range(_MAX_RETRIES):
            self.catch_up()
            batch: list[DomainEvent] = []
            for rid, version in self._views.iter_unacknowledged_versions(b.id, as_of):
                # The row is an unacknowledged error at its version; if the aggregate
                # moved on since, the put conflicts and the page is read again.
                batch.append(
                    ErrorAcknowledged(
                        originator_id=rid,
                        originator_version=version + 1,
                        timestamp=now,
                        acknowledged_by=who.user_id,
                    )
                )
                if len(batch) >= _WRITE_CHUNK:
                    break
            if not batch:
                return total
            try:
                self._log.put(batch)
            except VersionConflict:
                continue
            total += len(batch)
        raise ConcurrencyConflict(
            "acknowledging errors kept conflicting with other writers; try again"
        )

    def acknowledge_error(self, broadcast_id: UUID, address: str, *, actor: Any) -> bool:
        """Acknowledge one recipient's error; False when it was already acknowledged.

        Raises InvalidTransition when the recipient is not in ERROR.
        """
        b = self._viewed_broadcast(broadcast_id)
        who = require_inbox_role(actor, b.inbox_id, InboxRole.OPERATOR, "acknowledging errors")
        rid = recipient_id(b.id, _require_text(address, "address"))
        now = self.now()

        def decide() -> tuple[bool, list[RecipientEvent]]:
            state = self._load_recipient(rid)
            if state is None:
                raise UnknownRecipient(f"broadcast {b.id} has no recipient {address!r}")
            events = state.acknowledge(by=who.user_id, now=now)
            return bool(events), events

        return self._decide_and_put(decide)

    # --- rebuild and verify --------------------------------------------------------------

    def rebuild_projections(self, *, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Drop every projection and replay the whole log; return the position reached.

        ``on_progress(position, last)`` is called after each applied batch, with
        ``last`` the position of the last event recorded when the rebuild began.
        """
        with self._catch_up_lock:
            self._views.reset()
        if on_progress is None:
            return self._apply_pending(chunk=_REBUILD_CHUNK)
        last = self._log.max_position()
        return self._apply_pending(
            lambda reached: on_progress(reached, max(last, reached)), chunk=_REBUILD_CHUNK
        )

    def _replay(self) -> Views:
        def history() -> Iterable[tuple[int, DomainEvent]]:
            position = 0
            while True:
                batch = self._log.read(position, _READ_CHUNK)
                if not batch:
                    return
                yield from batch
                position = batch[-1][0]

        return fold(history())

    def verify_projections(self) -> list[str]:
        """Replay the log into a scratch fold and compare with the live views ([] when equal)."""
        self.catch_up()
        live = self._views.dump()
        scratch = self._replay()
        return compare_views(scratch, live)


def compare_views(expected: Views, actual: Views, limit: int = 100) -> list[str]:
    """Differences between two sets of views, as readable lines (at most ``limit``)."""
    diffs: list[str] = []

    def cmp(name: str, a: dict[Any, Any], b: dict[Any, Any]) -> None:
        for key in sorted(set(a) | set(b), key=str):
            if len(diffs) >= limit:
                return
            va, vb = a.get(key), b.get(key)
            if va != vb:
                diffs.append(f"{name}[{key}]: replay={va!r} live={vb!r}")

    cmp("recipient", expected.recipients, actual.recipients)
    cmp("broadcast", expected.broadcasts, actual.broadcasts)
    cmp("counts", expected.counts, actual.counts)
    cmp("account", expected.accounts, actual.accounts)
    cmp(
        "monthly",
        {k: v for k, v in expected.monthly.items() if v},
        {k: v for k, v in actual.monthly.items() if v},
    )
    cmp("message_id", expected.message_ids, actual.message_ids)
    cmp("unmatched", expected.unmatched, actual.unmatched)
    if expected.position != actual.position:
        diffs.append(f"position: replay={expected.position} live={actual.position}")
    return diffs
