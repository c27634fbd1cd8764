"""Bounce intake: raw report messages to recorded outcomes, the unmatched log, and ingestion.

``BroadcastService.record_bounce``, ``record_bounce_message``, ``ingest``,
``unmatched_reports`` and ``retry_unmatched`` are thin calls into
:class:`BounceIntake`, which is handed the event-store gateway, the projector,
the VERP signer, the delivery policy, the clock and the bounce parser. A raw
message is read by the ``BounceParser`` port (found through the adapters'
components, or given to ``BroadcastService.open(bounce_parser=...)``), then
correlated, never by address alone:

1. a signed VERP token in the bounce's own recipient address (the envelope
   recipient the host passes, then the parser's candidates: To, Delivered-To,
   X-Original-To ...); a forged or tampered token never matches;
2. else the Message-ID(s) of the returned original, looked up in the projection.

A message over the intake's size limit (``max_bounce_bytes``, default
:data:`DEFAULT_MAX_BOUNCE_BYTES`) is ``ignored`` before it is read. A larger
message than :data:`~broadcast_domain.domain.unmatched.EXCERPT_BYTES` is read
through its excerpt (headers and the start of each part), the same bytes the
unmatched log keeps, so a retry reads exactly what the first reading read.

Matching follows the signed token (SPEC section 2): when a valid VERP token
names the delivery, its reports are about that delivery whatever case the
report writes the address in; when some report names the delivery's address,
reports about other addresses (a list expansion, a locator list) are
``ignored`` and never give anyone a status; when none does (forwarding), every
failure in it is about the delivery. Without a token, the Message-IDs of the
returned original correlate, each report matched to the correlated recipient
whose address it names (a single report with a single correlated delivery
matches it whatever address it names: forwarding). A failure report or
complaint that matches nothing keeps the message's excerpt in the
event-sourced unmatched log, for ``retry_unmatched``.

A normalised report (``record_bounce``, every webhook) must name the
correlated delivery's address (:func:`normalised_outcome`): a token or
Message-ID never changes another recipient.

A report's id is what it says (:func:`~broadcast_domain.domain.recipient.report_identity`):
the delivery, action, status and diagnostic, never the bounce's own headers,
so a re-delivered report is ``duplicate``. Recipient states are read from the
event log, never from the projections.

Ingestion works in batches (up to 200 messages, or 32 MiB of them): it reads
and parses every message of a batch, reads every recipient their tokens and
Message-IDs name in one query, decides the messages in order (each on
the states the earlier ones left, so a copy in the same batch is a
``duplicate``), writes the batch's events in one transaction and marks each
message done only after that commit, so a crash loses nothing and a second run
records nothing twice. The outcomes and events are those of recording the
messages one at a time, in the same order.
"""

from __future__ import annotations

import gc
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import attrs

from broadcast_domain.application.eventlog import VersionConflict
from broadcast_domain.application.gateway import Gateway
from broadcast_domain.application.projector import Projector
from broadcast_domain.application.results import BounceOutcome, Page
from broadcast_domain.domain.events import DomainEvent, RecipientEvent
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.reasons import is_reason
from broadcast_domain.domain.recipient import (
    OUTCOME_KINDS,
    Recipient,
    derive_report_id,
    outcome_detail,
    report_identity,
)
from broadcast_domain.domain.unmatched import (
    EXCERPT_BYTES,
    BounceUnmatched,
    UnmatchedMessage,
    UnmatchedResolved,
    message_digest,
    report_excerpt,
    unmatched_id_of_digest,
)
from broadcast_domain.domain.values import BounceReport, normalise_address, require_aware
from broadcast_domain.domain.verp import Verp
from broadcast_domain.errors import BroadcastError, InvalidInput
from broadcast_domain.ports import (
    BounceParser,
    BounceSource,
    ParsedMessage,
    ParsedReport,
    ViewStore,
)

__all__ = [
    "DEFAULT_MAX_BOUNCE_BYTES",
    "OUTCOME_KINDS",
    "BounceIntake",
    "normalised_outcome",
    "report_outcome",
]

DEFAULT_MAX_BOUNCE_BYTES = 10 * 1024 * 1024
"""The largest raw report message the intake reads (10 MiB); a larger one is ``ignored``."""

_RECORDED_ACTIONS = ("failed", "complaint")
# Messages decided and written together. Larger batches save little more (one query
# and one transaction each already) and keep more objects alive across garbage
# collections, which then cost more than they save.
_INGEST_BATCH = 200
# Raw bytes a batch holds at most (they are kept until the commit, to decide again
# on a conflict): many large messages make smaller batches.
_INGEST_BYTES = 32 * 1024 * 1024
_LIST_CHUNK = 500


def report_outcome(
    state: Recipient | None,
    report: BounceReport,
    *,
    report_id: str,
    received_at: datetime,
    now: datetime,
    policy: DeliveryPolicy,
) -> tuple[BounceOutcome, Sequence[RecipientEvent]]:
    """What one correlated report does to its recipient: the outcome and the events to record."""
    if state is None:
        return BounceOutcome(
            kind="unmatched",
            report=report,
            report_id=report_id,
            detail="the token names no recipient in this store",
        ), []
    kind, events = state.receive_report(
        report, report_id=report_id, received_at=received_at, now=now, policy=policy
    )
    return BounceOutcome(
        kind=kind,
        report=report,
        report_id=report_id,
        broadcast_id=state.broadcast_id,
        address=state.address,
        detail=outcome_detail(state, kind, report, received_at=received_at, policy=policy),
    ), events


def normalised_outcome(
    state: Recipient | None,
    report: BounceReport,
    *,
    correlated_by: str,
    received_at: datetime,
    now: datetime,
    policy: DeliveryPolicy,
) -> tuple[BounceOutcome, Sequence[RecipientEvent]]:
    """What a normalised report (``record_bounce``, a webhook) does to its correlated delivery.

    The report names its failed recipient; unless that is the correlated
    delivery's address (compared by ``normalise_address``), the token or
    Message-ID belongs to another delivery (another recipient, another account)
    and the report is ``unmatched``: it never changes a recipient it does not
    name. The outcome then says nothing about the other delivery, which may
    belong to another tenant. ``correlated_by`` names what correlated it.
    """
    if state is None:
        return BounceOutcome(
            kind="unmatched",
            report=report,
            report_id=derive_report_id(report),
            detail=f"the {correlated_by} names no recipient in this store",
        ), []
    named = normalise_address(report.recipient) if report.recipient.strip() else ""
    if named != normalise_address(state.address):
        why = (
            "the report names no recipient address"
            if not named
            else f"the report names {report.recipient!r}, but its {correlated_by} belongs to "
            "a delivery to another address"
        )
        return BounceOutcome(
            kind="unmatched",
            report=report,
            report_id=derive_report_id(report),
            detail=f"{why}: a report never changes a recipient it does not name",
        ), []
    return report_outcome(
        state,
        report,
        report_id=derive_report_id(report, delivery=state.id),
        received_at=received_at,
        now=now,
        policy=policy,
    )


_UNKNOWN: Any = object()
"""A recipient whose state the workspace has not read (None is a state: no such recipient)."""


class _Workspace:
    """What one intake knows: recipient states, kept messages, events not yet written.

    Several messages of one ingest batch may touch one recipient (a bounce and
    its copy): each is decided on the state the earlier ones left. States are
    read from the event log (writes decide from the write side, never from the
    projections), every recipient a batch names in one read (:meth:`load`),
    and kept with the changes the batch's own decisions make until its events
    are committed; the next batch reads afresh, so it also sees what another
    process wrote meanwhile. If another process wrote during the batch, its
    write conflicts and its messages are decided again from the log. Only
    Message-ID correlation reads a projection (the Message-ID index).
    """

    def __init__(self, gateway: Gateway, projector: Projector, *, run: bool = False) -> None:
        self.gateway = gateway
        self.projector = projector
        self.run = run
        self.events: list[DomainEvent] = []
        self.states: dict[UUID, Recipient | None] = {}
        self.unapplied: dict[UUID, list[RecipientEvent]] = {}
        self.kept: dict[UUID, int] = {}
        self.unresolved: set[UUID] | None = None
        self.refreshed = False
        # Where the projection stood, plus what this run wrote since: if the log is
        # no further, nobody else wrote and a catch-up could not reveal anything.
        self.base = 0
        self.own = 0
        if run:
            self.base = projector.catch_up()
            self.unresolved = set(_unmatched_ids(projector.views))

    def recipient(self, rid: UUID) -> Recipient | None:
        """The recipient's state, with the batch's own events so far applied."""
        states = self.states
        state: Recipient | None = states.get(rid, _UNKNOWN)
        if state is _UNKNOWN:
            state = states[rid] = self.gateway.recipient(rid)
        later = self.unapplied.pop(rid, None) if self.unapplied else None
        if later:
            # Applied only when another message of the batch reads the recipient:
            # most are bounced once, and their new state is never looked at.
            for event in later:
                state = event.apply(state)
            states[rid] = state
        return state

    def load(self, rids: Iterable[UUID]) -> None:
        """Read the states of the recipients not known yet, together (one query per 500).

        What a batch of messages names is read before any of them is decided;
        each is then decided on the state the earlier ones left. If the read
        fails, nothing is known and each message reads its own recipients
        (and is set aside alone if that fails too).
        """
        states = self.states
        missing = [rid for rid in dict.fromkeys(rids) if rid not in states]
        if not missing:
            return
        try:
            found = self.gateway.recipients(missing)
        except BroadcastError:
            return
        for rid in missing:
            states[rid] = found.get(rid)

    def kept_version(self, uid: UUID, *, keeping: bool) -> int:
        """The unmatched-log aggregate's version (0: never kept) where it matters."""
        if uid in self.kept:
            return self.kept[uid]
        if not keeping and self.unresolved is not None and uid not in self.unresolved:
            return 0  # not in the list: nothing to resolve (the log is read only to keep)
        version = self.gateway.log.last_version(uid)
        self.kept[uid] = version
        return version

    def by_message_id(self, message_id: str) -> UUID | None:
        views = self.projector.views
        found = views.recipient_by_message_id(message_id)
        if found is None and not self.refreshed:
            # A miss may be a Message-ID recorded since the projection last moved.
            self.refreshed = True
            if not self.run or self.gateway.log.max_position() > self.base + self.own:
                self.base, self.own = self.projector.catch_up(), 0
                found = views.recipient_by_message_id(message_id)
        return found

    def add(self, events: Sequence[DomainEvent]) -> None:
        """Take one message's events (recipient events are applied when next read)."""
        self.events.extend(events)
        for event in events:
            uid = event.originator_id
            if isinstance(event, RecipientEvent):
                self.unapplied.setdefault(uid, []).append(event)
                continue
            self.kept[uid] = event.originator_version
            if self.unresolved is not None:
                if isinstance(event, BounceUnmatched):
                    self.unresolved.add(uid)
                else:
                    self.unresolved.discard(uid)

    def written(self) -> None:
        """The pending events are committed."""
        self.own += len(self.events)
        self.events = []
        self.refreshed = False
        # What was written is in the log: the next batch reads its recipients
        # afresh in one query (and sees another writer's changes); memory stays
        # bounded by one batch.
        self.states.clear()
        self.unapplied.clear()

    def forget(self) -> None:
        """Another writer got in first: drop every cached state and the pending events."""
        self.events = []
        self.states.clear()
        self.unapplied.clear()
        self.kept.clear()
        self.refreshed = False


def _unmatched_ids(views: ViewStore) -> list[UUID]:
    ids: list[UUID] = []
    offset = 0
    while True:
        rows, _ = views.unmatched_page(offset, _LIST_CHUNK)
        ids.extend(m.id for m in rows)
        if len(rows) < _LIST_CHUNK:
            return ids
        offset += len(rows)


@attrs.frozen
class _Correlation:
    """The recipients a message was correlated to, and what correlated them."""

    candidates: dict[UUID, Recipient]
    verp_token: str | None = None
    message_ids: dict[UUID, str] = attrs.field(factory=dict)


@attrs.frozen
class _Read:
    """One message as read: what correlating and deciding it need, or its outcomes already."""

    size: int
    excerpt: bytes
    digest: str
    received_at: datetime
    now: datetime
    envelope_recipient: str | None
    # None when reading alone decided the message (too large, no report): ``done``.
    parsed: ParsedMessage | None
    done: tuple[BounceOutcome, ...] | None = None


class _Collector:
    """The cyclic garbage collector, paused while a batch is read and decided.

    A batch's parsed messages, states and events live until its commit and form
    no cycles worth finding: the collector would walk them again and again for
    nothing. It runs again between batches (whatever cycles a batch left are
    freed then), and is never turned on if the caller had turned it off.
    """

    __slots__ = ("enabled",)

    def __init__(self) -> None:
        self.enabled = gc.isenabled()

    def pause(self) -> None:
        if self.enabled:
            gc.disable()

    def resume(self) -> None:
        if self.enabled:
            gc.enable()

    def __enter__(self) -> _Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.resume()


_Pending = tuple[str, bytes, datetime, str | None, list[BounceOutcome] | None]
"""A decided message waiting for its batch's commit: key, raw, received, envelope, outcomes."""


def _check_ingest(
    source: object, received_at: datetime | None, on_progress: object
) -> datetime | None:
    """``ingest``'s arguments checked; the received time in UTC when given."""
    if not isinstance(source, BounceSource):
        raise InvalidInput(
            "source must implement BounceSource (iteration, mark_done, set_aside)",
            field="source",
        )
    if received_at is not None:
        received_at = require_aware(received_at, "received_at").astimezone(UTC)
    if on_progress is not None and not callable(on_progress):
        raise InvalidInput("on_progress must be a callable taking the counts", field="on_progress")
    return received_at


def _as_bytes(raw: object) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, bytearray | memoryview):
        return bytes(raw)
    raise InvalidInput(
        f"raw must be the message's bytes, got {type(raw).__name__}; read the file in binary mode",
        field="raw",
    )


def _status(report: ParsedReport) -> str:
    if report.status:
        return report.status
    if report.reply_code:
        return report.reply_code
    return "5.0.0" if report.permanent else "4.0.0"


class BounceIntake:
    """Reads raw report messages for one service: record, keep unmatched, ingest, retry."""

    def __init__(
        self,
        gateway: Gateway,
        projector: Projector,
        verp: Verp,
        *,
        policy: DeliveryPolicy,
        clock: Callable[[], datetime],
        parser: Callable[[], BounceParser],
        max_bytes: int = DEFAULT_MAX_BOUNCE_BYTES,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidInput(
                f"max_bounce_bytes must be a positive number of bytes, got {max_bytes!r}",
                field="max_bounce_bytes",
            )
        self.gateway = gateway
        self.projector = projector
        self.verp = verp
        self.policy = policy
        self.now = clock
        # Made on first use: a store that only sends never needs the parser installed.
        self._make_parser = parser
        self._parser: BounceParser | None = None
        self.max_bytes = max_bytes

    @property
    def parser(self) -> BounceParser:
        """The bounce parser (made on first use)."""
        if self._parser is None:
            self._parser = self._make_parser()
        return self._parser

    # --- one normalised report -----------------------------------------------------------

    def _correlate_report(self, report: BounceReport) -> tuple[UUID | None, str]:
        """The delivery a normalised report's token or Message-ID names, and which one did."""
        if report.verp_token:
            rid = self.verp.verify(report.verp_token)
            if rid is not None:
                return rid, "VERP token"
        if report.message_id:
            self.projector.catch_up()
            mid = report.message_id.strip()
            if not mid.startswith("<"):
                mid = f"<{mid}>"
            return self.projector.views.recipient_by_message_id(mid), "Message-ID"
        return None, ""

    def record_report(self, report: object, received_at: datetime | None) -> BounceOutcome:
        """Record one normalised report (``BroadcastService.record_bounce``)."""
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
        rid, correlated_by = self._correlate_report(report)
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
                self.gateway.recipient(rid),
                report,
                correlated_by=correlated_by,
                received_at=received,
                now=now,
                policy=self.policy,
            )

        return self.gateway.decide_and_put(decide)

    # --- one message ---------------------------------------------------------------------

    def _parse(self, raw: bytes) -> ParsedMessage:
        try:
            parsed = self.parser(raw)
        except BroadcastError:
            raise
        except Exception as e:
            # The port promises never to raise; a host's parser that does gets the
            # message set aside by ingest rather than crashing the run.
            raise InvalidInput(
                f"the bounce parser failed on this message: {e!r}", field="raw"
            ) from e
        if not isinstance(parsed, ParsedMessage):
            raise InvalidInput(
                f"the bounce parser returned {type(parsed).__name__}, not a ParsedMessage",
                field="bounce_parser",
            )
        return parsed

    def _tokens(
        self, parsed: ParsedMessage, envelope_recipient: str | None
    ) -> list[tuple[str, UUID]]:
        """The genuine VERP tokens of the message's own recipient addresses, in order."""
        verp = self.verp
        addresses = [envelope_recipient] if envelope_recipient else []
        addresses += parsed.envelope_candidates
        tokens: list[tuple[str, UUID]] = []
        for address in dict.fromkeys(addresses):
            token = verp.token_from_address(address)
            rid = verp.verify(token) if token else None
            if token and rid is not None:
                tokens.append((token, rid))
        return tokens

    def _correlate_all(
        self, reads: Sequence[_Read], batch: _Workspace
    ) -> list[_Correlation | BroadcastError | None]:
        """Each message's correlation (None: read alone decided it), or what it raised.

        The recipients every token of the batch names are read together, then
        those the Message-IDs of the messages no token correlated name: two
        reads for the batch instead of one or more per message.
        """
        tokens: list[list[tuple[str, UUID]] | BroadcastError | None] = []
        for read in reads:
            if read.parsed is None:
                tokens.append(None)
                continue
            try:
                tokens.append(self._tokens(read.parsed, read.envelope_recipient))
            except BroadcastError as e:
                tokens.append(e)
        batch.load(rid for found in tokens if isinstance(found, list) for _, rid in found)
        # First the token (a state to correlate to), else the returned original's
        # Message-IDs, never an address.
        partial: list[_Correlation | dict[UUID, str] | BroadcastError | None] = []
        for read, found in zip(reads, tokens, strict=True):
            if not isinstance(found, list):
                partial.append(found)
                continue
            try:
                partial.append(
                    self._by_token(found, batch) or self._by_message_id(read.parsed, batch)
                )
            except BroadcastError as e:
                partial.append(e)
        batch.load(rid for ids in partial if isinstance(ids, dict) for rid in ids)
        out: list[_Correlation | BroadcastError | None] = []
        for item in partial:
            if not isinstance(item, dict):
                out.append(item)
                continue
            try:
                states = {rid: batch.recipient(rid) for rid in item}
            except BroadcastError as e:
                out.append(e)
                continue
            candidates = {rid: state for rid, state in states.items() if state is not None}
            out.append(
                _Correlation(
                    candidates=candidates,
                    message_ids={rid: mid for rid, mid in item.items() if rid in candidates},
                )
            )
        return out

    @staticmethod
    def _by_token(tokens: list[tuple[str, UUID]], batch: _Workspace) -> _Correlation | None:
        """The first token naming a recipient of this store."""
        for token, rid in tokens:
            state = batch.recipient(rid)
            if state is not None:
                return _Correlation(candidates={rid: state}, verp_token=token)
        return None

    @staticmethod
    def _by_message_id(parsed: ParsedMessage | None, batch: _Workspace) -> dict[UUID, str]:
        """The recipients the returned original's Message-IDs name, with the Message-ID."""
        found: dict[UUID, str] = {}
        for mid in parsed.original_message_ids if parsed is not None else ():
            rid = batch.by_message_id(mid.strip())
            if rid is not None and rid not in found:
                found[rid] = mid.strip()
        return found

    @staticmethod
    def _match(
        reports: Sequence[ParsedReport], corr: _Correlation
    ) -> list[tuple[UUID | None, str]]:
        """For each report: the delivery it is about (or None), and why not when None."""
        keys = [normalise_address(r.recipient) if r.recipient else None for r in reports]
        if corr.verp_token is not None:
            # The signed token names the delivery (SPEC section 2): its own reports
            # are about it whatever case they write; when none names it (forwarding,
            # a list expansion), every report is. Other addresses get nothing.
            ((named, state),) = corr.candidates.items()
            own = normalise_address(state.address)
            if own not in keys:
                return [(named, "")] * len(reports)
            return [
                (named, "")
                if key == own
                else (
                    None,
                    f"about {r.recipient!r}, not the delivery the VERP token names: "
                    "another address in a report gets no status from it",
                )
                for r, key in zip(reports, keys, strict=True)
            ]
        if not corr.candidates:
            return [(None, "no valid VERP token or known Message-ID")] * len(reports)
        by_address = {normalise_address(s.address): rid for rid, s in corr.candidates.items()}
        single = len(reports) == 1 and len(corr.candidates) == 1
        matched: list[tuple[UUID | None, str]] = []
        for r, key in zip(reports, keys, strict=True):
            rid = by_address.get(key) if key is not None else None
            if rid is None and single:
                # The one report of a message correlated to one delivery is about that
                # delivery even when it names another address (forwarding, aliases).
                rid = next(iter(corr.candidates))
            matched.append(
                (rid, "")
                if rid is not None
                else (
                    None,
                    f"the report's recipient {r.recipient!r} is not the correlated delivery's",
                )
            )
        return matched

    def _too_large(self, size: int, received_at: datetime) -> BounceOutcome:
        report = BounceReport(
            recipient="",
            status="",
            diagnostic="",
            permanent=False,
            reported_at=received_at,
            report_id=f"dsn:oversized:{size}",
            action="none",
            source="dsn",
        )
        return BounceOutcome(
            kind="ignored",
            report=report,
            report_id=report.report_id or "",
            detail=(
                f"the message is {size} bytes, over the intake's limit of {self.max_bytes} "
                "bytes (max_bounce_bytes): not read, nothing recorded"
            ),
        )

    def read(
        self,
        raw: bytes,
        received_at: datetime,
        envelope_recipient: str | None,
        now: datetime,
        *,
        digest: str | None = None,
    ) -> _Read:
        """Parse one message; its outcomes already when it is too large or reports nothing.

        ``digest`` is the whole message's when ``raw`` is a kept excerpt (a retry).
        """
        if digest is None and len(raw) > self.max_bytes:
            return _Read(
                size=len(raw),
                excerpt=b"",
                digest="",
                received_at=received_at,
                now=now,
                envelope_recipient=envelope_recipient,
                parsed=None,
                done=(self._too_large(len(raw), received_at),),
            )
        excerpt = report_excerpt(raw)
        # A small message is read as it came; a large one through the excerpt the
        # log would keep, so that a retry reads the same bytes.
        small = len(raw) <= EXCERPT_BYTES
        parsed = self._parse(raw if small else excerpt)
        if digest is None:
            # A small message's excerpt is its canonical form, which is what the
            # digest hashes: one pass over the bytes instead of two.
            digest = hashlib.sha256(excerpt).hexdigest() if small else message_digest(raw)
        read = _Read(
            size=len(raw),
            excerpt=excerpt,
            digest=digest,
            received_at=received_at,
            now=now,
            envelope_recipient=envelope_recipient,
            parsed=parsed,
        )
        if parsed.reports:
            return read
        report = BounceReport(
            recipient="",
            status="",
            diagnostic="",
            permanent=False,
            reported_at=parsed.date or received_at,
            report_id=f"dsn:{digest[:40]}",
            action="none",
            source="dsn",
        )
        ignored = BounceOutcome(
            kind="ignored",
            report=report,
            report_id=f"dsn:{digest[:40]}",
            detail=parsed.refused
            or "no delivery report, complaint or auto-reply found: not a bounce",
        )
        return attrs.evolve(read, parsed=None, done=(ignored,))

    def decide_all(
        self, reads: Sequence[_Read], batch: _Workspace
    ) -> list[list[BounceOutcome] | BroadcastError]:
        """Decide messages in order, each on the states the earlier ones left.

        Each message's events go into ``batch`` only if nothing raised for it;
        what raised is returned in its place.
        """
        corrs = self._correlate_all(reads, batch)
        results: list[list[BounceOutcome] | BroadcastError] = []
        for read, corr in zip(reads, corrs, strict=True):
            if isinstance(corr, BroadcastError):
                results.append(corr)
            elif read.parsed is None or corr is None:
                results.append(list(read.done or ()))
            else:
                try:
                    results.append(self._decide(read, read.parsed, corr, batch))
                except BroadcastError as e:
                    results.append(e)
        return results

    def handle(
        self,
        raw: bytes,
        received_at: datetime,
        envelope_recipient: str | None,
        batch: _Workspace,
        now: datetime,
        *,
        digest: str | None = None,
    ) -> list[BounceOutcome]:
        """Decide one message's outcomes; its events go into ``batch`` only if nothing raised.

        ``digest`` is the whole message's when ``raw`` is a kept excerpt (a retry).
        """
        read = self.read(raw, received_at, envelope_recipient, now, digest=digest)
        (result,) = self.decide_all([read], batch)
        if isinstance(result, BroadcastError):
            raise result
        return result

    def _decide(
        self, read: _Read, parsed: ParsedMessage, corr: _Correlation, batch: _Workspace
    ) -> list[BounceOutcome]:
        """One parsed message's outcomes, decided on the batch's states."""
        received_at, now, envelope_recipient = read.received_at, read.now, read.envelope_recipient
        reported_at = parsed.date or received_at
        matches = self._match(parsed.reports, corr)
        outcomes: list[BounceOutcome] = []
        events: list[DomainEvent] = []
        # States after this message's own earlier reports, for a recipient it
        # names twice (the batch applies the events of earlier messages).
        overlay: dict[UUID, Recipient | None] = {}
        named = Counter(rid for rid, _ in matches if rid is not None)
        twice = {rid for rid, n in named.items() if n > 1}
        reasons: list[str] = []
        policy = self.policy
        unmatched_key = "\x1e".join([corr.verp_token or "", *parsed.original_message_ids])
        for parsed_report, (rid, why) in zip(parsed.reports, matches, strict=True):
            state = (
                (overlay[rid] if rid in overlay else batch.recipient(rid))
                if rid is not None
                else None
            )
            address = parsed_report.recipient or (state.address if state else "")
            status = _status(parsed_report)
            # What the report says about which delivery: never the bounce's own bytes.
            delivery = (
                rid.hex if rid is not None else f"{unmatched_key}\x1e{normalise_address(address)}"
            )
            report_id = report_identity(
                delivery, parsed_report.action, status, parsed_report.diagnostic
            )
            report = BounceReport(
                recipient=address,
                status=status,
                # The parser's detail: the best explanation the report gives (never
                # empty for a failure); the diagnostic alone may be.
                diagnostic=parsed_report.detail or parsed_report.diagnostic,
                permanent=parsed_report.permanent,
                reported_at=reported_at,
                verp_token=corr.verp_token,
                message_id=(corr.message_ids.get(rid) if rid is not None else None)
                or (parsed.original_message_ids[0] if parsed.original_message_ids else None),
                report_id=report_id,
                action=parsed_report.action,
                source="dsn",
                remote_mta=parsed_report.remote_mta,
                feedback_type=parsed_report.feedback_type,
                reason=parsed_report.reason,
            )
            if parsed_report.action not in _RECORDED_ACTIONS:
                outcomes.append(
                    BounceOutcome(
                        kind="ignored",
                        report=report,
                        report_id=report_id,
                        broadcast_id=state.broadcast_id if state else None,
                        address=state.address if state else None,
                        detail=f"{parsed_report.action} is not a delivery error",
                    )
                )
                continue
            if rid is None and corr.verp_token is not None:
                # Another address in a report the token ties to one delivery.
                outcomes.append(
                    BounceOutcome(kind="ignored", report=report, report_id=report_id, detail=why)
                )
                continue
            if rid is None:
                outcomes.append(
                    BounceOutcome(kind="unmatched", report=report, report_id=report_id, detail=why)
                )
                reasons.append(why)
                continue
            outcome, new = report_outcome(
                state, report, report_id=report_id, received_at=received_at, now=now, policy=policy
            )
            if rid in twice:
                for event in new:
                    overlay[rid] = event.apply(overlay.get(rid, state))
            events.extend(new)
            if outcome.kind == "unmatched":
                reasons.append(outcome.detail or "the delivery was never sent")
            outcomes.append(outcome)
        uid = unmatched_id_of_digest(read.digest)
        version = batch.kept_version(uid, keeping=bool(reasons))
        if reasons:
            kept_note = (
                "kept in the unmatched log" if version == 0 else "already in the unmatched log"
            )
            outcomes = [
                attrs.evolve(o, detail=f"{o.detail}; {kept_note}") if o.kind == "unmatched" else o
                for o in outcomes
            ]
            if version == 0:
                events.append(
                    BounceUnmatched(
                        originator_id=uid,
                        originator_version=1,
                        timestamp=now,
                        raw=read.excerpt,
                        received_at=received_at,
                        reason="; ".join(dict.fromkeys(reasons)),
                        envelope_recipient=envelope_recipient,
                        digest=read.digest,
                        size=read.size,
                    )
                )
        elif version == 1:
            # Kept earlier and every report now matches: the message leaves the log.
            events.append(
                UnmatchedResolved(
                    originator_id=uid,
                    originator_version=2,
                    timestamp=now,
                    outcome=",".join(sorted({o.kind for o in outcomes})),
                )
            )
        batch.add(events)
        return outcomes

    def record_message(
        self, raw: object, received_at: datetime | None, envelope_recipient: str | None
    ) -> list[BounceOutcome]:
        """Record one raw message (``BroadcastService.record_bounce_message``)."""
        data = _as_bytes(raw)
        if envelope_recipient is not None and not isinstance(envelope_recipient, str):
            raise InvalidInput(
                "envelope_recipient must be an address string or None", field="envelope_recipient"
            )
        received = (
            require_aware(received_at, "received_at") if received_at is not None else self.now()
        ).astimezone(UTC)
        now = self.now()

        def decide() -> tuple[list[BounceOutcome], list[DomainEvent]]:
            batch = _Workspace(self.gateway, self.projector)
            outcomes = self.handle(data, received, envelope_recipient, batch, now)
            return outcomes, batch.events

        return self.gateway.decide_and_put(decide)

    # --- ingestion -----------------------------------------------------------------------

    def ingest(
        self,
        source: BounceSource,
        *,
        received_at: datetime | None = None,
        on_progress: Callable[[dict[str, int]], None] | None = None,
    ) -> dict[str, int]:
        """Record every message of ``source``; see ``BroadcastService.ingest``."""
        received_at = _check_ingest(source, received_at, on_progress)
        counts = dict.fromkeys((*OUTCOME_KINDS, "set_aside", "messages"), 0)
        work = _Workspace(self.gateway, self.projector, run=True)
        pending: list[_Pending] = []

        def flush() -> None:
            if not pending:
                return
            try:
                # One transaction for the whole batch; nothing is marked done before it.
                self.gateway.put(work.events)
                work.written()
            except VersionConflict:
                # Another writer touched one of these recipients: decide each
                # message again, alone, on fresh state from the log.
                work.forget()
                self._redo(pending, source, counts)
                # From now on the run reads the other writer's changes.
                work.base, work.own = self.projector.catch_up(), 0
            for key, _, _, _, outcomes in pending:
                if outcomes is None:
                    continue
                source.mark_done(key)
                counts["messages"] += 1
                for outcome in outcomes:
                    counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
            pending.clear()
            if on_progress is not None:
                on_progress(dict(counts))

        reading: list[tuple[str, bytes, _Read]] = []

        def decide() -> None:
            # The whole batch is correlated first (its recipients read together),
            # then decided message by message in the order the source gave them.
            results = self.decide_all([read for _, _, read in reading], work)
            for (key, raw, read), result in zip(reading, results, strict=True):
                if isinstance(result, BroadcastError):
                    source.set_aside(key, str(result))
                    counts["set_aside"] += 1
                    continue
                pending.append((key, raw, read.received_at, read.envelope_recipient, result))
            reading.clear()
            flush()

        held = 0
        with _Collector() as collector:
            for incoming in source:
                collector.pause()
                try:
                    read = self.read(
                        incoming.raw,
                        received_at or self.now(),
                        incoming.envelope_recipient,
                        self.now(),
                    )
                except BroadcastError as e:
                    source.set_aside(incoming.key, str(e))
                    counts["set_aside"] += 1
                    continue
                reading.append((incoming.key, incoming.raw, read))
                held += len(incoming.raw)
                if len(reading) >= _INGEST_BATCH or held >= _INGEST_BYTES:
                    decide()
                    held = 0
                    collector.resume()
            decide()
        return counts

    def _redo(self, pending: list[_Pending], source: BounceSource, counts: dict[str, int]) -> None:
        """Decide each pending message again, alone (after a version conflict)."""
        for i, (key, raw, received, envelope, _) in enumerate(pending):
            redone: list[BounceOutcome] | None
            try:
                redone = self.record_message(raw, received, envelope)
            except BroadcastError as e:
                source.set_aside(key, str(e))
                counts["set_aside"] += 1
                redone = None
            pending[i] = (key, raw, received, envelope, redone)

    # --- the unmatched log ---------------------------------------------------------------

    def unmatched_page(self, page: int, per_page: int) -> Page[UnmatchedMessage]:
        """A page of kept, unresolved messages, oldest received first."""
        self.projector.catch_up()
        rows, total = self.projector.views.unmatched_page((page - 1) * per_page, per_page)
        return Page(items=rows, total=total, page=page, per_page=per_page)

    def retry(self) -> list[BounceOutcome]:
        """Correlate every kept message again; the ones that now match are resolved."""
        self.projector.catch_up()
        outcomes: list[BounceOutcome] = []
        for uid in _unmatched_ids(self.projector.views):

            def decide(uid: UUID = uid) -> tuple[list[BounceOutcome], list[DomainEvent]]:
                kept: Any = None
                for event in self.gateway.log.get(uid):
                    if isinstance(event, BounceUnmatched | UnmatchedResolved):
                        kept = event.apply(kept)
                if not isinstance(kept, UnmatchedMessage):
                    return [], []  # resolved by another process meanwhile
                batch = _Workspace(self.gateway, self.projector)
                found = self.handle(
                    kept.raw,
                    kept.received_at,
                    kept.envelope_recipient,
                    batch,
                    self.now(),
                    digest=kept.digest,
                )
                return found, batch.events

            outcomes.extend(self.gateway.decide_and_put(decide))
        return outcomes
