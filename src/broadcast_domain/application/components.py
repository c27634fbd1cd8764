"""The adapters the core needs but never imports, found through an entry point.

``broadcast_adapters.bootstrap.components`` is registered under the
``broadcast_domain.adapters`` entry point group; the core asks it for a view
store (SQLite, PostgreSQL), a CSV codec and a bounce parser, and says what to
do when the adapters are not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from broadcast_domain.application.eventlog import StoreUrl
from broadcast_domain.application.memory_views import InMemoryViewStore
from broadcast_domain.errors import BroadcastError
from broadcast_domain.ports import BounceParser, CsvCodec, ViewStore

__all__ = ["bounce_parser_factory", "csv_codec_factory", "load_components", "view_store_for"]

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
