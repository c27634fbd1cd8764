"""Serialisation: one cattrs converter, and the eventsourcing mapper built on it.

Shaped like cattrs' ``preconf`` modules: :func:`make_converter` builds the
converter and :func:`configure_converter` lists every rule. The mapper turns
our frozen, slotted attrs events into eventsourcing ``StoredEvent`` rows and
back (eventsourcing's default mapper reads ``event.__dict__``, which slotted
classes do not have).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast, get_origin
from uuid import UUID, SafeUUID

import orjson
from cattrs.gen import make_dict_unstructure_fn, override
from cattrs.preconf.orjson import OrjsonConverter
from cattrs.preconf.orjson import configure_converter as configure_orjson
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder

from broadcast_domain.domain import events as ev
from broadcast_domain.domain import unmatched as um
from broadcast_domain.domain.values import without_nul
from broadcast_domain.errors import BroadcastError

__all__ = [
    "EVENT_TYPES",
    "AttrsMapper",
    "ContactColumns",
    "Row",
    "acknowledgement_rows_encoder",
    "attempt_rows_encoder",
    "configure_converter",
    "decode_state",
    "encode_state",
    "make_converter",
    "scheduled_rows_encoder",
    "success_rows_encoder",
    "uuid_from_hex",
]

EVENT_TYPES: dict[str, type[ev.DomainEvent]] = {
    "recipient.Scheduled": ev.Scheduled,
    "recipient.Sent": ev.Sent,
    "recipient.Succeeded": ev.Succeeded,
    "recipient.Deferred": ev.Deferred,
    "recipient.Bounced": ev.Bounced,
    "recipient.ErrorAcknowledged": ev.ErrorAcknowledged,
    "recipient.Complained": ev.Complained,
    "broadcast.Scheduled": ev.BroadcastScheduled,
    "broadcast.SendingStarted": ev.SendingStarted,
    "broadcast.Completed": ev.BroadcastCompleted,
    "broadcast.Cancelled": ev.BroadcastCancelled,
    "broadcast.Paused": ev.BroadcastPaused,
    "broadcast.Resumed": ev.BroadcastResumed,
    "broadcast.ResultsExported": ev.ResultsExported,
    "account.Configured": ev.AccountConfigured,
    "allowance.SendsReserved": ev.SendsReserved,
    "unmatched.Kept": um.BounceUnmatched,
    "unmatched.Resolved": um.UnmatchedResolved,
}
"""Stable topics: stored events name these, not Python module paths, so modules can move."""

_TOPICS = {cls: topic for topic, cls in EVENT_TYPES.items()}

_new = object.__new__
_set = object.__setattr__
_UNKNOWN = SafeUUID.unknown


_RECENT: dict[str, UUID] = {}
# Ids made recently, by their text: a log holds each recipient's events close together
# and one broadcast's id in every Scheduled event. A bounded dict (emptied when full):
# at most about 10 MB.
_RECENT_LIMIT = 1 << 15


def uuid_from_hex(text: str) -> UUID:
    """``UUID(text)`` for an id a store wrote, faster when it is 32 hex digits.

    Reading the log or a view table makes one UUID per row, and ``UUID()``
    first tries every spelling it accepts; the stores write ``.hex``, so build
    that one directly (the same slots ``UUID.__init__`` sets). An id read
    recently is the same object again (UUIDs are immutable): no new object, and
    the dict lookups of a fold find their key by identity, without a call of
    ``UUID.__eq__`` (Python code). Any other text goes through ``UUID()`` and
    its checks.
    """
    u = _RECENT.get(text)
    if u is not None:
        return u
    if len(text) == 32 and text.isalnum():
        u = _new(UUID)
        _set(u, "int", int(text, 16))
        _set(u, "is_safe", _UNKNOWN)
        if len(_RECENT) >= _RECENT_LIMIT:
            _RECENT.clear()
        _RECENT[text] = u
        return u
    return UUID(text)


Row = tuple[str, int, str, bytes]
"""A stored event as the event log writes it: (originator id hex, version, topic, state)."""

ContactColumns = tuple[
    Sequence[str], Sequence[str], Sequence[str], Sequence[str], Sequence["str | None"]
]
"""Checked contacts a field at a time: addresses, last names, first names, companies, ids."""


class CodecError(BroadcastError):
    """A stored event could not be decoded."""


def _structure_datetime(value: Any, _: Any) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"naive datetime in stored event: {value!r}")
    return parsed


def _is_frozenset(t: Any) -> bool:
    return t is frozenset or get_origin(t) is frozenset


def configure_converter(converter: OrjsonConverter) -> None:
    """Configure a converter for broadcast-domain values and events.

    * everything orjson's preconf does (sets as lists, enums by value, ...);
    * UUIDs are strings (orjson writes them natively) and structure back to UUID;
    * datetimes are RFC 3339 strings with their offset; a naive one is refused;
    * frozensets are sorted lists, so equal states serialise to equal bytes;
    * ``originator_id`` and ``originator_version`` are left out of an event's
      state: the store keeps them in their own columns.
    """
    configure_orjson(converter)
    converter.register_structure_hook(
        UUID, lambda v, _: v if isinstance(v, UUID) else uuid_from_hex(v)
    )
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_unstructure_hook_func(_is_frozenset, sorted)


def make_converter() -> OrjsonConverter:
    """A new converter configured by :func:`configure_converter`."""
    converter = OrjsonConverter()
    configure_converter(converter)
    return converter


_SKIP = ("originator_id", "originator_version")


_EVENT_CONVERTER = make_converter()
_ENCODERS: dict[type[ev.DomainEvent], Callable[[Any], Any]] = {}
_DECODERS: dict[str, Callable[[dict[str, Any]], ev.DomainEvent]] = {}


def _compact(encoded: bytes) -> bytes:
    """A right-sized copy of orjson's output, for bytes that are kept.

    orjson's result keeps the block it was written into (about 4 KB whatever
    the length), so 10,000 rows of 300 bytes held for one batch insert take 40 MB
    of memory instead of 3; the copy costs about 0.2 µs.
    """
    return bytes(memoryview(encoded))


class AttrsMapper(Mapper[UUID]):
    """Maps attrs domain events to stored events with cattrs + orjson, no ``__dict__``."""

    def __init__(self, transcoder: Transcoder | None = None, **_: Any) -> None:
        # The transcoder, cipher and compressor of eventsourcing are not used: events
        # are encoded by cattrs + orjson, which is both faster and slot-friendly.
        # Shared by every mapper of the process: all are configured alike, and the
        # generated (un)structure functions cost milliseconds per event class, which
        # each store opened would otherwise pay again.
        self.converter = _EVENT_CONVERTER
        self._encoders = _ENCODERS
        self._decoders = _DECODERS

    def _encoder(self, cls: type[ev.DomainEvent]) -> Callable[[Any], Any]:
        fn = self._encoders.get(cls)
        if fn is None:
            # Generated per class with the id and version left out, rather than
            # unstructured whole and popped: the same dict, built once.
            fn = make_dict_unstructure_fn(
                cls,
                self.converter,
                originator_id=override(omit=True),
                originator_version=override(omit=True),
            )
            self._encoders[cls] = fn
        return fn

    def encode_state(self, event: ev.DomainEvent) -> bytes:
        """The event's payload bytes (without id and version)."""
        return _compact(orjson.dumps(self._encoder(type(event))(event)))

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        event = cast(ev.DomainEvent, domain_event)
        try:
            topic = _TOPICS[type(event)]
        except KeyError:
            raise CodecError(f"{type(event).__qualname__} is not a registered event type") from None
        return StoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            topic=topic,
            state=self.encode_state(event),
        )

    def to_row(self, domain_event: ev.DomainEvent) -> tuple[str, int, str, bytes]:
        """The event as a ``(originator_id hex, version, topic, state)`` row (batch inserts)."""
        try:
            topic = _TOPICS[type(domain_event)]
        except KeyError:
            raise CodecError(
                f"{type(domain_event).__qualname__} is not a registered event type"
            ) from None
        return (
            domain_event.originator_id.hex,
            domain_event.originator_version,
            topic,
            self.encode_state(domain_event),
        )

    def to_rows(self, events: Iterable[ev.DomainEvent]) -> list[Row]:
        """``[to_row(e) for e in events]``, with a bulk acknowledgement's payload encoded once.

        An ``ErrorAcknowledged`` carries only its time and who acknowledged
        (the id and version are columns), and the events of one bulk
        acknowledgement share both objects: while they are the very same
        objects as the previous acknowledgement's, its encoded payload is
        reused (same bytes; one shared copy).
        """
        ack_type = ev.ErrorAcknowledged
        ack_topic = _TOPICS[ack_type]
        to_row = self.to_row
        rows: list[Row] = []
        append = rows.append
        last_at: object = None
        last_by: object = None
        shared = b""
        for event in events:
            if type(event) is ack_type:
                ack: Any = event
                if ack.timestamp is not last_at or ack.acknowledged_by is not last_by:
                    shared = self.encode_state(ack)
                    last_at, last_by = ack.timestamp, ack.acknowledged_by
                append((ack.originator_id.hex, ack.originator_version, ack_topic, shared))
            else:
                append(to_row(event))
        return rows

    def decode(
        self, topic: str, originator_id: UUID | str, version: int, state: bytes
    ) -> ev.DomainEvent:
        """Rebuild one event from its stored parts."""
        fn = self._decoders.get(topic)
        if fn is None:
            try:
                cls = EVENT_TYPES[topic]
            except KeyError:
                raise CodecError(f"unknown event topic {topic!r} in the store") from None
            hook = self.converter.get_structure_hook(cls)

            def fn(d: dict[str, Any], _hook: Any = hook, _cls: type[Any] = cls) -> ev.DomainEvent:
                return cast(ev.DomainEvent, _hook(d, _cls))

            self._decoders[topic] = fn
        data = orjson.loads(state)
        data["originator_id"] = (
            originator_id if isinstance(originator_id, UUID) else uuid_from_hex(originator_id)
        )
        data["originator_version"] = version
        try:
            return fn(data)
        except Exception as e:
            raise CodecError(
                f"stored event {topic} of {originator_id} v{version} cannot be decoded: {e}"
            ) from e

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return self.decode(
            stored_event.topic,
            stored_event.originator_id,
            stored_event.originator_version,
            stored_event.state,
        )


_STATE_CONVERTER = make_converter()


def scheduled_rows_encoder(
    broadcast_id: UUID, account_id: str, timestamp: datetime
) -> Callable[[Iterable[str], ContactColumns, int], list[Row]]:
    """The stored rows of a new broadcast's ``Scheduled`` events, without building them.

    ``encode(ids, columns, first_position)`` gives, for each recipient id (hex)
    and its ``address, last_name, first_name, company, contact_id`` (one column
    each), the row
    ``AttrsMapper().to_row(Scheduled(...))`` gives for the broadcast, account
    and time given here, positions counting from ``first_position``: the same
    keys in the same order, the time unstructured by the same converter.
    Scheduling a million recipients skips a million event objects, their
    unstructuring and a function call each.
    """
    dumps = orjson.dumps
    topic = _TOPICS[ev.Scheduled]
    # The fields every recipient of the broadcast shares, encoded once; the rest is
    # one small dict per recipient, spliced on after its opening brace. The splice
    # also makes each state a right-sized copy (see _compact).
    head = (
        dumps(
            {
                "timestamp": _STATE_CONVERTER.unstructure(timestamp),
                "broadcast_id": broadcast_id,
                "account_id": account_id,
            }
        )[:-1]
        + b","
    )

    def encode(ids: Iterable[str], columns: ContactColumns, first_position: int) -> list[Row]:
        return [
            (
                rid,
                1,
                topic,
                head
                + dumps(
                    {
                        "address": address,
                        "last_name": last_name,
                        "first_name": first_name,
                        "company": company,
                        "contact_id": contact_id,
                        "position": position,
                    }
                )[1:],
            )
            for position, (rid, address, last_name, first_name, company, contact_id) in enumerate(
                zip(ids, *columns, strict=True), first_position
            )
        ]

    return encode


def acknowledgement_rows_encoder(
    timestamp: datetime, acknowledged_by: str
) -> Callable[[Sequence[UUID], Sequence[int]], list[Row]]:
    """The stored rows of a bulk acknowledgement's ``ErrorAcknowledged`` events, unbuilt.

    ``encode(ids, versions)`` gives, for each recipient id and the version its
    event takes, the row ``AttrsMapper().to_row(ErrorAcknowledged(...))`` gives
    for the time and actor given here: the payload holds only those two, so it
    is encoded once and shared by every row.
    """
    topic = _TOPICS[ev.ErrorAcknowledged]
    state = AttrsMapper().encode_state(
        ev.ErrorAcknowledged(
            originator_id=UUID(int=0),
            originator_version=1,
            timestamp=timestamp,
            acknowledged_by=acknowledged_by,
        )
    )

    def encode(ids: Sequence[UUID], versions: Sequence[int]) -> list[Row]:
        return [
            (f"{rid.int:032x}", version, topic, state)  # UUID.hex, without its property call
            for rid, version in zip(ids, versions, strict=True)
        ]

    return encode


S = TypeVar("S")


def encode_state(obj: Any) -> bytes:
    """Serialise a view row (Recipient, Broadcast, Account, Counts ...) to bytes."""
    return _compact(orjson.dumps(_STATE_CONVERTER.unstructure(obj)))


def decode_state(data: bytes | str, cls: type[S]) -> S:
    """Rebuild a view row serialised by :func:`encode_state`."""
    return _STATE_CONVERTER.structure(orjson.loads(data), cls)


def _time_head(timestamp: datetime) -> bytes:
    """``{"timestamp":"…",`` as ``encode_state`` begins every recipient event's payload."""
    return orjson.dumps({"timestamp": _STATE_CONVERTER.unstructure(timestamp)})[:-1] + b","


def attempt_rows_encoder(
    timestamp: datetime, lease_until: datetime
) -> Callable[[UUID, int, int, str], Row]:
    """The stored row of a ``Sent`` event (a claim), without building it.

    ``encode(recipient_id, version, attempt, message_id)`` gives the row
    ``AttrsMapper().to_row(Sent(...))`` gives for the claim time and lease
    given here: the time and the lease are encoded once per batch of claims,
    the attempt and Message-ID per row.
    """
    dumps = orjson.dumps
    topic = _TOPICS[ev.Sent]
    head = _time_head(timestamp)
    tail = b"," + dumps({"lease_until": _STATE_CONVERTER.unstructure(lease_until)})[1:]

    def encode(rid: UUID, version: int, attempt: int, message_id: str) -> Row:
        return (
            f"{rid.int:032x}",  # UUID.hex, without its property call
            version,
            topic,
            head + dumps({"attempt": attempt, "message_id": message_id})[1:-1] + tail,
        )

    return encode


def success_rows_encoder(timestamp: datetime) -> Callable[[UUID, int, int, int, str], Row]:
    """The stored row of a ``Succeeded`` event (a 2xx reply), without building it.

    ``encode(recipient_id, version, attempt, reply_code, reply_text)`` gives the
    row ``AttrsMapper().to_row(Succeeded(...))`` gives for the time given here.
    """
    dumps = orjson.dumps
    topic = _TOPICS[ev.Succeeded]
    head = _time_head(timestamp)

    def encode(rid: UUID, version: int, attempt: int, reply_code: int, reply_text: str) -> Row:
        return (
            f"{rid.int:032x}",
            version,
            topic,
            head
            + dumps(
                {
                    "attempt": attempt,
                    "reply_code": reply_code,
                    "reply_text": without_nul(reply_text),
                }
            )[1:],
        )

    return encode
