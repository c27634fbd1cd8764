"""Store fixtures: every store-dependent test runs on each store kind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broadcast_domain import Actor, AddressBookRole, BroadcastService, InboxRole
from broadcast_domain.testing.clock import FakeClock

SIGNING_KEY = b"test-signing-key-0123456789abcdef"
RETURN_PATH = "bounces@mail.example.com"

OPERATOR = Actor(
    "operator-1",
    inbox_roles={"support": InboxRole.OPERATOR},
    address_book_roles={"book-1": AddressBookRole.ADMIN},
)

ServiceFactory = Callable[..., BroadcastService]


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when told."""
    return FakeClock()


@pytest.fixture
def open_service(store_url: str, clock: FakeClock) -> Iterator[ServiceFactory]:
    """Open (and later close) services on the fixture's store."""
    opened: list[BroadcastService] = []

    def factory(**kwargs: object) -> BroadcastService:
        params: dict[str, object] = {
            "return_path": RETURN_PATH,
            "signing_key": SIGNING_KEY,
            "clock": clock,
        }
        params.update(kwargs)
        svc = BroadcastService.open(store_url, **params)  # type: ignore[arg-type]
        opened.append(svc)
        return svc

    yield factory
    for svc in opened:
        svc.close()


@pytest.fixture
def svc(open_service: ServiceFactory) -> BroadcastService:
    """A service on a fresh store of each kind."""
    return open_service()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def durable_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store that several processes can share: a SQLite file, a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
