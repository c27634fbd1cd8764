"""Strict roles: an Actor holds only InboxRole values for inboxes and AddressBookRole values
for address books, and permission checks compare members of the needed enum, never ints.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from broadcast_domain import (
    Actor,
    AddressBookRole,
    AddressBookSource,
    BroadcastService,
    Contact,
    CsvSource,
    InboxRole,
    InvalidInput,
    PermissionDenied,
)
from broadcast_domain.domain.permissions import require_export, require_inbox_role

KEYS = st.one_of(st.text(max_size=8), st.sampled_from(["support", "book-1", ""]))
# Everything a careless or hostile host might put where a role belongs.
NOT_A_ROLE = st.one_of(
    st.integers(min_value=-5, max_value=1000),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.sampled_from(["OPERATOR", "ADMIN", "owner", "3", ""]),
    st.builds(object),
)
BAD_KEYS = st.one_of(
    st.integers(), st.none(), st.tuples(st.text(max_size=3)), st.binary(max_size=3)
)


def _value_for(role_type: Any, other_type: Any) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(list(role_type)),
        st.sampled_from(list(other_type)),
        NOT_A_ROLE,
    )


def _maps(role_type: type[Any], other_type: type[Any]) -> st.SearchStrategy[dict[Any, Any]]:
    return st.dictionaries(st.one_of(KEYS, BAD_KEYS), _value_for(role_type, other_type), max_size=4)


def _first_bad(roles: dict[Any, Any], role_type: type[Any]) -> Any:
    for key, value in roles.items():
        if not isinstance(key, str) or type(value) is not role_type:
            return key
    return None


@given(inbox=_maps(InboxRole, AddressBookRole), books=_maps(AddressBookRole, InboxRole))
def test_an_actor_accepts_exactly_the_role_maps_of_its_own_enums(
    inbox: dict[Any, Any], books: dict[Any, Any]
) -> None:
    """Actor is built iff every key is a string and every value a member of the field's enum;
    otherwise InvalidInput names the first offending key (checked inbox roles first)."""
    bad_inbox = _first_bad(inbox, InboxRole)
    bad_book = _first_bad(books, AddressBookRole)
    valid_inbox = all(isinstance(k, str) and type(v) is InboxRole for k, v in inbox.items())
    valid_books = all(isinstance(k, str) and type(v) is AddressBookRole for k, v in books.items())
    if valid_inbox and valid_books:
        actor = Actor("u", inbox_roles=inbox, address_book_roles=books)
        assert dict(actor.inbox_roles) == inbox
        assert dict(actor.address_book_roles) == books
        return
    with pytest.raises(InvalidInput) as caught:
        Actor("u", inbox_roles=inbox, address_book_roles=books)
    field = "inbox_roles" if not valid_inbox else "address_book_roles"
    key = bad_inbox if not valid_inbox else bad_book
    assert caught.value.field is not None
    assert caught.value.field.startswith(field)
    assert repr(key) in str(caught.value)


@given(roles=st.dictionaries(KEYS, st.sampled_from(list(InboxRole)), max_size=4))
def test_an_actor_keeps_an_immutable_copy_of_the_host_mapping(roles: dict[str, InboxRole]) -> None:
    """Changing the host's dict afterwards changes nothing, and the actor's map refuses writes."""
    actor = Actor("u", inbox_roles=roles)
    snapshot = dict(actor.inbox_roles)
    roles["intruder"] = InboxRole.ADMIN
    assert dict(actor.inbox_roles) == snapshot
    with pytest.raises(TypeError):
        actor.inbox_roles["x"] = InboxRole.ADMIN  # type: ignore[index]


@pytest.mark.parametrize("roles", [["support"], "support", 3, {("support",): InboxRole.ADMIN}])
def test_a_role_map_that_is_not_a_mapping_of_strings_is_invalid_input(roles: Any) -> None:
    """A list, a string, an int or a non-string key in place of the mapping is InvalidInput."""
    with pytest.raises(InvalidInput, match="inbox_roles"):
        Actor("u", inbox_roles=roles)


@given(role=st.sampled_from(list(InboxRole)), needed=st.sampled_from(list(InboxRole)))
def test_an_inbox_role_grants_exactly_its_rank_and_below(
    role: InboxRole, needed: InboxRole
) -> None:
    """require_inbox_role passes iff the actor's role is the needed one or above."""
    actor = Actor("u", inbox_roles={"support": role})
    ranks = list(InboxRole)
    if ranks.index(role) >= ranks.index(needed):
        assert require_inbox_role(actor, "support", needed, "acting") is actor
    else:
        with pytest.raises(PermissionDenied, match=needed.name):
            require_inbox_role(actor, "support", needed, "acting")


@given(
    inbox=st.one_of(st.none(), st.sampled_from(list(InboxRole))),
    book=st.one_of(st.none(), st.sampled_from(list(AddressBookRole))),
    csv=st.booleans(),
)
def test_exports_follow_the_source_rule_and_never_the_other_enum(
    inbox: InboxRole | None, book: AddressBookRole | None, csv: bool
) -> None:
    """Address-book exports need book ADMIN+, CSV exports inbox OPERATOR+, whatever else is held."""
    actor = Actor(
        "u",
        inbox_roles={} if inbox is None else {"support": inbox},
        address_book_roles={} if book is None else {"book-1": book},
    )
    source = CsvSource("m.csv") if csv else AddressBookSource("book-1")
    if csv:
        allowed = inbox is not None and inbox >= InboxRole.OPERATOR
    else:
        allowed = book is not None and book >= AddressBookRole.ADMIN
    if allowed:
        assert require_export(actor, "support", source, "export") is actor
    else:
        with pytest.raises(PermissionDenied):
            require_export(actor, "support", source, "export")


@given(
    smuggled=st.one_of(
        st.sampled_from(list(AddressBookRole)), st.integers(), st.booleans(), st.text(max_size=5)
    )
)
def test_a_role_smuggled_past_the_constructor_grants_nothing(smuggled: Any) -> None:
    """Even a map forced into an Actor without its checks (object.__setattr__) grants nothing
    unless its value is a member of the needed enum: the checks never compare raw integers."""
    actor = Actor("u")
    object.__setattr__(actor, "inbox_roles", {"support": smuggled})
    object.__setattr__(actor, "address_book_roles", {"book-1": smuggled})
    with pytest.raises(PermissionDenied):
        require_inbox_role(actor, "support", InboxRole.VIEWER, "viewing")
    if type(smuggled) is not AddressBookRole:
        with pytest.raises(PermissionDenied):
            require_export(actor, "support", AddressBookSource("book-1"), "export")


T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("inbox_roles", "book_roles"),
    [
        ({"support": AddressBookRole.OWNER}, {}),
        ({"support": 99}, {}),
        ({"support": True}, {}),
        ({"support": "ADMIN"}, {}),
        ({}, {"book-1": InboxRole.ADMIN}),
        ({}, {"book-1": 4}),
    ],
)
def test_the_issue_s_hostile_actors_cannot_be_built_so_nothing_is_written(
    inbox_roles: dict[str, Any], book_roles: dict[str, Any]
) -> None:
    """The actors of the report (other enum, 99, True, a string) are InvalidInput before any
    command runs, and the store stays empty."""
    svc = BroadcastService.open(
        "memory://", return_path="bounces@mail.example.com", signing_key=b"k" * 32
    )
    try:
        with pytest.raises(InvalidInput):
            svc.create_broadcast(
                account_id="acme",
                inbox_id="support",
                sender="news@example.com",
                subject="s",
                text_body="t",
                html_body=None,
                source=AddressBookSource("book-1"),
                recipients=[Contact("a@example.com")],
                scheduled_at=T0,
                actor=Actor("e", inbox_roles=inbox_roles, address_book_roles=book_roles),
            )
        assert svc.list_broadcasts("support").total == 0
    finally:
        svc.close()
