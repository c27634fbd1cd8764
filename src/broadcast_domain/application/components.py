"""The composition root: the collaborators of ``BroadcastService``, built once.

:func:`assemble` makes the gateway, the projector, the use cases and the read
side, each handed what it needs. The adapters the core needs but never imports
are found through an entry point: ``broadcast_adapters.bootstrap.components``
is registered under the ``broadcast_domain.adapters`` group; the core asks it
for a view store (SQLite, PostgreSQL), a CSV codec and a bounce parser, and
says what to do when the adapters are not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Any

import attrs

from broadcast_domain.application.commands import Commands
from broadcast_domain.application.dispatching import Dispatcher
from broadcast_domain.application.eventlog import EventLog, StoreUrl
from broadcast_domain.application.gateway import Gateway
from broadcast_domain.application.importing import Importer
from broadcast_domain.application.intake import BounceIntake
from broadcast_domain.application.memory_views import InMemoryViewStore
from broadcast_domain.application.projector import Projector
from broadcast_domain.application.reading import Results
from broadcast_domain.domain.policies import DeliveryPolicy
from broadcast_domain.domain.values import require_aware
from broadcast_domain.domain.verp import Verp
from broadcast_domain.errors import BroadcastError, InvalidInput
from broadcast_domain.ports import AddressBook, BounceParser, CsvCodec, ViewStore

__all__ = [
    "Collaborators",
    "assemble",
    "aware_clock",
    "bounce_parser_factory",
    "check_open_options",
    "csv_codec_factory",
    "load_components",
    "system_clock",
    "view_store_for",
]

_ENTRY_POINT_GROUP = "broadcast_domain.adapters"


def load_components() -> Any:
    """The installed adapters' factories (None when the adapters are not installed)."""
    for ep in entry_points(group=_ENTRY_POINT_GROUP):
        if ep.name == "default":
            return ep.load()()
    return None


def view_store_for(store: StoreUrl, components: Any) -> ViewStore:
    """The view store of a parsed store URL: in memory, or the adapters' SQL store."""
    if store.kind == "memory":
        return InMemoryViewStore()
    if components is None:
        raise BroadcastError(
            f"the {store.kind} store needs the broadcast_adapters package, which ships in the "
            "broadcast-domain distribution; reinstall broadcast-domain"
        )
    views: ViewStore = components.view_store(store)
    return views


def csv_codec_factory(given: CsvCodec | None, components: Any) -> Callable[[], CsvCodec]:
    """A factory of the CSV codec, made on first use; it says what is missing if none is."""
    if given is not None:
        return lambda: given
    factory = getattr(components, "csv_codec", None)
    if factory is not None:
        return factory  # type: ignore[no-any-return]

    def missing() -> CsvCodec:
        raise BroadcastError(
            "reading and writing CSV needs the broadcast_adapters package, which ships "
            "in the broadcast-domain distribution; reinstall it or pass csv_codec= to "
            "BroadcastService.open"
        )

    return missing


def bounce_parser_factory(
    given: BounceParser | None, components: Any
) -> Callable[[], BounceParser]:
    """A factory of the bounce parser, made on first use; it says what is missing if none is."""
    if given is not None:
        return lambda: given
    factory = getattr(components, "bounce_parser", None)
    if factory is not None:
        return factory  # type: ignore[no-any-return]

    def missing() -> BounceParser:
        raise BroadcastError(
            "reading raw bounce messages needs a bounce parser: pass "
            "bounce_parser= to BroadcastService.open(), or install broadcast-domain "
            "with its broadcast_adapters package"
        )

    return missing


def check_open_options(bounce_window: object, clock: object, max_bounce_bytes: object) -> None:
    """InvalidInput naming the option of ``BroadcastService.open`` that is unusable."""
    if not isinstance(bounce_window, timedelta) or bounce_window <= timedelta(0):
        raise InvalidInput("bounce_window must be a positive timedelta", field="bounce_window")
    if clock is not None and not callable(clock):
        raise InvalidInput("clock must be a callable returning an aware datetime", field="clock")
    if (
        isinstance(max_bounce_bytes, bool)
        or not isinstance(max_bounce_bytes, int)
        or max_bounce_bytes < 1
    ):
        raise InvalidInput(
            f"max_bounce_bytes must be a positive number of bytes, got {max_bounce_bytes!r}",
            field="max_bounce_bytes",
        )


def system_clock() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def aware_clock(clock: Callable[[], datetime]) -> Callable[[], datetime]:
    """``clock`` checked on every reading: aware (InvalidInput otherwise), in UTC."""

    def now() -> datetime:
        value = clock()
        require_aware(value, "clock()")
        return value.astimezone(UTC)

    return now


@attrs.frozen
class Collaborators:
    """What the facade holds: the stores and settings, and what it delegates to (each
    collaborator built once, all sharing one event log and one view store)."""

    log: EventLog
    views: ViewStore
    verp: Verp
    policy: DeliveryPolicy
    now: Callable[[], datetime]
    address_book: AddressBook | None
    gateway: Gateway
    projector: Projector
    commands: Commands
    dispatcher: Dispatcher
    intake: BounceIntake
    importer: Importer
    results: Results


def assemble(
    *,
    log: EventLog,
    views: ViewStore,
    verp: Verp,
    policy: DeliveryPolicy,
    now: Callable[[], datetime],
    components: Any,
    address_book: AddressBook | None,
    csv_codec: CsvCodec | None,
    bounce_parser: BounceParser | None,
    max_bounce_bytes: int,
) -> Collaborators:
    """Build the collaborators over one event log and one view store."""
    gateway = Gateway(log)
    projector = Projector(log, views)
    commands = Commands(gateway, projector, now)
    importer = Importer(csv_codec_factory(csv_codec, components), address_book)
    return Collaborators(
        log=log,
        views=views,
        verp=verp,
        policy=policy,
        now=now,
        address_book=address_book,
        gateway=gateway,
        projector=projector,
        commands=commands,
        dispatcher=Dispatcher(gateway, projector, verp, policy, now),
        intake=BounceIntake(
            gateway,
            projector,
            verp,
            policy=policy,
            clock=now,
            parser=bounce_parser_factory(bounce_parser, components),
            max_bytes=max_bounce_bytes,
        ),
        importer=importer,
        results=Results(
            views=views,
            clock=now,
            csv=importer.codec,
            events=log,
            catch_up=projector.catch_up,
            record_export=commands.record_export,
        ),
    )
