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

Each per-recipient report is matched to the correlated recipient whose address
it names; a message with a single report may name another address (the
recipient forwarded the mail) and still matches its one correlated recipient.
A failure report or complaint that matches nothing keeps the raw message in the
event-sourced unmatched log, for ``retry_unmatched``.

Ingestion writes the events of many messages in one transaction and marks each
message done only after that commit, so a crash loses nothing and a second run
records nothing twice (every report has a content-derived id).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
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
from broadcast_domain.domain.reasons import classify_reason, is_reason
from broadcast_domain.domain.recipient import Recipient, derive_report_id
from broadcast_domain.domain.unmatched import (
    BounceUnmatched,
    UnmatchedMessage,
    UnmatchedResolved,
    canonical_raw,
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

__all__ = ["OUTCOME_KINDS", "BounceIntake", "report_outcome"]

OUTCOME_KINDS = ("applied", "duplicate", "late", "unmatched", "ignored")
"""Every kind a BounceOutcome can have."""

_RECORDED_ACTIONS = ("failed", "complaint")
_INGEST_BATCH = 200
_LIST_CHUNK = 500
_STATE_CACHE = 20_000


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
    ), events


class _Workspace:
    """What one intake knows: recipient states, kept messages, events not yet written.

    Several messages of one ingest run may touch one recipient (a bounce and its
    copy): each is decided on the state the earlier ones left. A single message
    reads states from the event log. An ingest run reads them from the
    projection, caught up when the run starts, and keeps the states its own
    decisions lead to, so it needs neither a log read per message nor a catch-up
    per batch; if another process wrote meanwhile, the batch's write conflicts
    and its messages are decided again from the log.
    """

    def __init__(self, gateway: Gateway, projector: Projector, *, run: bool = False) -> None:
        self.gateway = gateway
        self.projector = projector
        self.run = run
        self.events: list[DomainEvent] = []
        self.states: dict[UUID, Recipient | None] = {}
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
        if rid not in self.states:
            state = self.projector.views.recipient(rid) if self.run else None
            self.states[rid] = state if state is not None else self.gateway.recipient(rid)
        return self.states[rid]

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

    def add(self, events: Sequence[DomainEvent], states: dict[UUID, Recipient | None]) -> None:
        """Take one message's events and the recipient states they lead to."""
        self.events.extend(events)
        self.states.update(states)
        for event in events:
            uid = event.originator_id
            if isinstance(event, RecipientEvent):
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
        if len(self.states) > _STATE_CACHE:
            # Bound memory on huge runs: project what was written, then read afresh.
            self.base, self.own = self.projector.catch_up(), 0
            self.states.clear()

    def forget(self) -> None:
        """Another writer got in first: drop every cached state and the pending events."""
        self.events = []
        self.states.clear()
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
    """Takes in bounce reports for one store: record, keep unmatched, ingest, retry."""

    def __init__(
        self,
        gateway: Gateway,
        projector: Projector,
        verp: Verp,
        *,
        policy: DeliveryPolicy,
        clock: Callable[[], datetime],
        parser: Callable[[], BounceParser],
    ) -> None:
        self.gateway = gateway
        self.projector = projector
        self.verp = verp
        self.policy = policy
        self.now = clock
        # Made on first use: a store that only sends never needs the parser installed.
        self._make_parser = parser
        self._parser: BounceParser | None = None

    @property
    def parser(self) -> BounceParser:
        """The bounce parser (made on first use)."""
        if self._parser is None:
            self._parser = self._make_parser()
        return self._parser

    # --- one normalised report -----------------------------------------------------------

    def _correlate_report(self, report: BounceReport) -> UUID | None:
        if report.verp_token:
            rid = self.verp.verify(report.verp_token)
            if rid is not None:
                return rid
        if report.message_id:
            self.projector.catch_up()
            mid = report.message_id.strip()
            if not mid.startswith("<"):
                mid = f"<{mid}>"
            return self.projector.views.recipient_by_message_id(mid)
        return None

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
        report_id = derive_report_id(report)
        rid = self._correlate_report(report)
        if rid is None:
            return BounceOutcome(
                kind="unmatched",
                report=report,
                report_id=report_id,
                detail="no valid VERP token or known Message-ID",
            )
        now = self.now()

        def decide() -> tuple[BounceOutcome, Sequence[RecipientEvent]]:
            return report_outcome(
                self.gateway.recipient(rid),
                report,
                report_id=report_id,
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

    def _correlate(
        self, parsed: ParsedMessage, envelope_recipient: str | None, batch: _Workspace
    ) -> _Correlation:
        verp = self.verp
        addresses = [envelope_recipient] if envelope_recipient else []
        addresses += parsed.envelope_candidates
        for address in addresses:
            token = verp.token_from_address(address)
            rid = verp.verify(token) if token else None
            if rid is None:
                continue
            state = batch.recipient(rid)
            if state is not None:
                return _Correlation(candidates={rid: state}, verp_token=token)
        candidates: dict[UUID, Recipient] = {}
        message_ids: dict[UUID, str] = {}
        for mid in parsed.original_message_ids:
            found = batch.by_message_id(mid.strip())
            if found is None or found in candidates:
                continue
            state = batch.recipient(found)
            if state is not None:
                candidates[found] = state
                message_ids[found] = mid.strip()
        return _Correlation(candidates=candidates, message_ids=message_ids)

    @staticmethod
    def _match(report: ParsedReport, corr: _Correlation, reports: int) -> UUID | None:
        if report.recipient:
            key = normalise_address(report.recipient)
            for rid, state in corr.candidates.items():
                if normalise_address(state.address) == key:
                    return rid
        if reports == 1 and len(corr.candidates) == 1:
            # The one report of a message correlated to one delivery is about that
            # delivery even when it names another address (forwarding, aliases).
            return next(iter(corr.candidates))
        return None

    def handle(
        self,
        raw: bytes,
        received_at: datetime,
        envelope_recipient: str | None,
        batch: _Workspace,
        now: datetime,
    ) -> list[BounceOutcome]:
        """Decide one message's outcomes; its events go into ``batch`` only if nothing raised."""
        parsed = self._parse(raw)
        canonical = canonical_raw(raw)
        digest = hashlib.sha256(canonical).hexdigest()
        reported_at = parsed.date or received_at
        if not parsed.reports:
            report = BounceReport(
                recipient="",
                status="",
                diagnostic="",
                permanent=False,
                reported_at=reported_at,
                report_id=f"dsn:{digest[:40]}",
                action="none",
                source="dsn",
            )
            return [
                BounceOutcome(
                    kind="ignored",
                    report=report,
                    report_id=f"dsn:{digest[:40]}",
                    detail="no delivery report, complaint or auto-reply found: not a bounce",
                )
            ]
        corr = self._correlate(parsed, envelope_recipient, batch)
        outcomes: list[BounceOutcome] = []
        events: list[DomainEvent] = []
        overlay: dict[UUID, Recipient | None] = {}
        reasons: list[str] = []
        policy = self.policy
        for index, parsed_report in enumerate(parsed.reports):
            rid = self._match(parsed_report, corr, len(parsed.reports))
            state = (
                (overlay[rid] if rid in overlay else batch.recipient(rid))
                if rid is not None
                else None
            )
            address = parsed_report.recipient or (state.address if state else "")
            report_id = (
                f"dsn:{digest[:40]}:{normalise_address(address) if address else f'#{index}'}"
            )
            report = BounceReport(
                recipient=address,
                status=_status(parsed_report),
                diagnostic=parsed_report.diagnostic,
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
                reason=classify_reason(
                    parsed_report.status, parsed_report.reply_code, parsed_report.diagnostic
                ),
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
            if rid is None:
                why = (
                    "no valid VERP token or known Message-ID"
                    if not corr.candidates
                    else f"the report's recipient {address!r} is not the correlated delivery's"
                )
                outcomes.append(
                    BounceOutcome(kind="unmatched", report=report, report_id=report_id, detail=why)
                )
                reasons.append(why)
                continue
            outcome, new = report_outcome(
                state, report, report_id=report_id, received_at=received_at, now=now, policy=policy
            )
            for event in new:
                overlay[rid] = event.apply(overlay.get(rid, state))
            events.extend(new)
            if outcome.kind == "unmatched":
                reasons.append(outcome.detail or "the delivery was never sent")
            outcomes.append(outcome)
        uid = unmatched_id_of_digest(digest)
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
                        raw=canonical,
                        received_at=received_at,
                        reason="; ".join(dict.fromkeys(reasons)),
                        envelope_recipient=envelope_recipient,
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
        batch.add(events, overlay)
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
        if not isinstance(source, BounceSource):
            raise InvalidInput(
                "source must implement BounceSource (iteration, mark_done, set_aside)",
                field="source",
            )
        if received_at is not None:
            received_at = require_aware(received_at, "received_at").astimezone(UTC)
        if on_progress is not None and not callable(on_progress):
            raise InvalidInput(
                "on_progress must be a callable taking the counts", field="on_progress"
            )
        counts = dict.fromkeys((*OUTCOME_KINDS, "set_aside", "messages"), 0)
        work = _Workspace(self.gateway, self.projector, run=True)
        pending: list[tuple[str, bytes, datetime, str | None, list[BounceOutcome] | None]] = []

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
                for i, (key, raw, received, envelope, _) in enumerate(pending):
                    redone: list[BounceOutcome] | None
                    try:
                        redone = self.record_message(raw, received, envelope)
                    except BroadcastError as e:
                        source.set_aside(key, str(e))
                        counts["set_aside"] += 1
                        redone = None
                    pending[i] = (key, raw, received, envelope, redone)
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

        for incoming in source:
            received = received_at or self.now()
            try:
                outcomes = self.handle(
                    incoming.raw, received, incoming.envelope_recipient, work, self.now()
                )
            except BroadcastError as e:
                source.set_aside(incoming.key, str(e))
                counts["set_aside"] += 1
                continue
            pending.append(
                (incoming.key, incoming.raw, received, incoming.envelope_recipient, outcomes)
            )
            if len(pending) >= _INGEST_BATCH:
                flush()
        flush()
        return counts

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
                    kept.raw, kept.received_at, kept.envelope_recipient, batch, self.now()
                )
                return found, batch.events

            outcomes.extend(self.gateway.decide_and_put(decide))
        return outcomes
