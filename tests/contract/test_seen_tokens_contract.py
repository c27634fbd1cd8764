"""Every SeenTokens store (in memory, SQLite, PostgreSQL) answers claims like one model:
a new or expired token is taken, the same token with the same digest is accepted again,
the same live token with another digest is refused; and concurrent claims agree."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from broadcast_adapters.bounces.webhooks import InMemorySeenTokens
from broadcast_adapters.storage.seen_tokens import SqlSeenTokens
from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import SeenTokens

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
STORES = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
CONTRACT = settings(
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(params=STORES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory of empty stores of one kind (each call: a fresh table)."""
    opened: list[Any] = []
    counter = iter(range(10_000))

    def make() -> SeenTokens:
        if request.param == "memory":
            return InMemorySeenTokens()
        if request.param == "sqlite":
            store = SqlSeenTokens.sqlite(str(tmp_path / f"tokens-{next(counter)}.db"))
        else:
            databases = request.getfixturevalue("postgres_databases")
            store = SqlSeenTokens.postgresql(databases())
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


CLAIMS = st.lists(
    st.tuples(
        st.sampled_from(["tok-a", "tok-b", "tok-c"]),
        st.sampled_from(["d1", "d2"]),
        st.integers(min_value=0, max_value=400),  # seconds since T0 at the claim
        st.integers(min_value=1, max_value=300),  # lifetime in seconds
    ),
    max_size=12,
)


@CONTRACT
@given(claims=CLAIMS)
def test_a_store_answers_claims_like_the_model(make_store: Any, claims: list[Any]) -> None:
    """Sorted by time, each claim is True iff the token is unknown, expired, or live with the
    same digest; a refused claim changes nothing."""
    store = make_store()
    model: dict[str, tuple[str, datetime]] = {}
    for token, digest, at, life in sorted(claims, key=lambda c: c[2]):
        now = T0 + timedelta(seconds=at)
        expires = now + timedelta(seconds=life)
        live = model.get(token)
        expected = live is None or live[1] <= now or live[0] == digest
        assert store.claim(token, digest, expires_at=expires, now=now) is expected
        if live is None or live[1] <= now:
            model[token] = (digest, expires)


def test_concurrent_claims_with_different_digests_let_exactly_one_win(make_store: Any) -> None:
    """Eight threads claim one token with their own digest at once: exactly one is accepted,
    and a second claim with the winner's digest is accepted again (a retry)."""
    store = make_store()
    results: dict[str, bool] = {}
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait()
        results[f"d{i}"] = store.claim("tok", f"d{i}", expires_at=T0 + timedelta(minutes=5), now=T0)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [d for d, ok in results.items() if ok]
    assert len(winners) == 1
    assert store.claim("tok", winners[0], expires_at=T0 + timedelta(minutes=5), now=T0)


def test_two_sql_handles_on_one_database_share_their_tokens(tmp_path: Path) -> None:
    """Two workers' stores on one SQLite file see each other's claims."""
    path = str(tmp_path / "shared.db")
    first, second = SqlSeenTokens.sqlite(path), SqlSeenTokens.sqlite(path)
    try:
        later = T0 + timedelta(minutes=5)
        assert first.claim("tok", "d1", expires_at=later, now=T0)
        assert not second.claim("tok", "d2", expires_at=later, now=T0)
        assert second.claim("tok", "d1", expires_at=later, now=T0)
        assert second.claim("tok", "d2", expires_at=later + timedelta(minutes=5), now=later)
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    ("token", "digest", "moment"),
    [
        ("", "d", T0),
        ("t" * 513, "d", T0),
        ("t", "", T0),
        ("t", "d", T0.replace(tzinfo=None)),
    ],
)
def test_sql_claims_refuse_malformed_arguments(
    tmp_path: Path, token: str, digest: str, moment: datetime
) -> None:
    """An empty or absurd token, an empty digest or a naive time is InvalidInput."""
    store = SqlSeenTokens.sqlite(str(tmp_path / "t.db"))
    try:
        with pytest.raises(InvalidInput):
            store.claim(token, digest, expires_at=moment, now=moment)
        assert len(store) == 0
    finally:
        store.close()
