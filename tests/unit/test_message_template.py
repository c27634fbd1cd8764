"""MessageTemplate renders the same bytes as build_message, boundary aside."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcast_domain import Contact, InvalidInput
from broadcast_domain.domain.messages import MessageTemplate, build_message
from broadcast_domain.testing.strategies import contacts

_BOUNDARY = re.compile(rb'boundary="([^"]+)"')


def _normalise(data: bytes) -> bytes:
    found = _BOUNDARY.search(data)
    return data.replace(found.group(1), b"BOUNDARY") if found else data


@given(
    contacts(),
    st.text(max_size=80).filter(lambda s: "\r" not in s and "\n" not in s),
    st.text(max_size=200),
    st.none() | st.text(max_size=200),
    st.integers(0, 10**6),
)
def test_render_equals_build_message(
    contact: Contact, subject: str, text: str, html: str | None, n: int
) -> None:
    """For any contact, subject and bodies, the template's bytes are build_message's."""
    try:
        template = MessageTemplate(
            sender="news@example.com",
            sender_name="ニュース",
            subject=subject,
            text_body=text,
            html_body=html,
        )
    except InvalidInput:
        with pytest.raises(InvalidInput):
            build_message(
                sender="news@example.com",
                sender_name="ニュース",
                recipient=contact,
                subject=subject,
                text_body=text,
                html_body=html,
                message_id="<a@b>",
                envelope_from="bounces@example.com",
                date=datetime(2026, 1, 1, tzinfo=UTC),
            )
        return
    date = datetime(2026, 11, 2, 9, 0, n % 60, tzinfo=UTC)
    mid = f"<m{n}@mail.example.com>"
    kwargs = {
        "recipient": contact,
        "message_id": mid,
        "envelope_from": "b+x@mail.example.com",
        "date": date,
    }
    rendered = template.render(**kwargs)  # type: ignore[arg-type]
    built = build_message(
        sender="news@example.com",
        sender_name="ニュース",
        subject=subject,
        text_body=text,
        html_body=html,
        **kwargs,  # type: ignore[arg-type]
    )
    assert _normalise(rendered) == _normalise(built)


def test_render_checks_the_recipient_fields() -> None:
    """CR/LF in a name or a bad address is refused, naming the field."""
    t = MessageTemplate(
        sender="n@example.com", sender_name=None, subject="s", text_body="b", html_body=None
    )
    ok = {
        "message_id": "<a@b>",
        "envelope_from": "b@example.com",
        "date": datetime(2026, 1, 1, tzinfo=UTC),
    }
    with pytest.raises(InvalidInput, match="last_name"):
        t.render(recipient=Contact("a@example.com", last_name="x\ny"), **ok)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"recipient\.address"):
        t.render(recipient=Contact("not an address"), **ok)  # type: ignore[arg-type]


def test_render_to_checks_the_recipient_and_the_date_but_takes_ids_as_given() -> None:
    """render_to is render for a dispatcher's own Message-ID and VERP address: the same
    bytes for the same values; the recipient's fields and the date are still checked
    (a naive date after an aware one too), while the id and envelope are not looked at."""
    t = MessageTemplate(
        sender="n@example.com", sender_name=None, subject="s", text_body="b", html_body=None
    )
    when = datetime(2026, 1, 1, tzinfo=UTC)
    ids = {"message_id": "<a@b>", "envelope_from": "b+tok@example.com", "date": when}
    contact = Contact("a@example.com", last_name="山田", first_name="太郎")
    assert t.render_to("a@example.com", "山田", "太郎", **ids) == t.render(  # type: ignore[arg-type]
        recipient=contact,
        **ids,  # type: ignore[arg-type]
    )
    with pytest.raises(InvalidInput, match="last_name"):
        t.render_to("a@example.com", "x\ny", "", **ids)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"recipient\.address"):
        t.render_to("not an address", "", "", **ids)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="date"):
        t.render_to(
            "a@example.com",
            "",
            "",
            message_id="<a@b>",
            envelope_from="b@e.com",
            date=datetime(2026, 1, 1),
        )
    with pytest.raises(InvalidInput, match="message_id"):
        t.render(recipient=contact, message_id="no brackets", envelope_from="b@e.com", date=when)
    unchecked = t.render_to(
        "a@example.com", "", "", message_id="<x@y>", envelope_from="not one", date=when
    )
    assert b"Message-ID: <x@y>\r\n" in unchecked
