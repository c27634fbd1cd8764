"""Property tests: whatever Unicode goes into a message's headers and body comes back out."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr

from hypothesis import given
from hypothesis import strategies as st

from broadcast_domain.domain.messages import build_message, display_name
from broadcast_domain.domain.values import Contact

# Any character but CR/LF (refused by design) and lone surrogates (not text).
one_line = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]))
any_text = st.text(st.characters(exclude_categories=["Cs"]))


def build(subject: str, last: str, first: str, sender_name: str, body: str = "x") -> bytes:
    return build_message(
        sender="news@example.com",
        sender_name=sender_name,
        recipient=Contact("a@example.com", last_name=last, first_name=first),
        subject=subject,
        text_body=body,
        html_body=None,
        message_id="<m1@example.com>",
        envelope_from="bounces+t@example.com",
        date=datetime(2026, 1, 1, tzinfo=UTC),
    )


def mailbox(value: str) -> tuple[str, str]:
    """Name and address of a mailbox header, decoded as RFC 2047 6.2 says.

    The legacy decoder is used on purpose: the modern parser of Python 3.11
    keeps the folding space between two encoded words of a display name,
    which RFC 2047 says to drop.
    """
    name, address = parseaddr(value)
    return str(make_header(decode_header(name))), address


def head(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@given(one_line, one_line, one_line, one_line)
def test_subject_and_names_round_trip_exactly(
    subject: str, last: str, first: str, sender_name: str
) -> None:
    """Subject, To and From names decode to exactly what was given (names squeezed)."""
    raw = build(subject, last, first, sender_name)
    legacy = BytesParser(policy=policy.compat32).parsebytes(raw)
    modern = BytesParser(policy=policy.default).parsebytes(raw)
    assert str(modern["Subject"]) == subject
    contact = Contact("a@example.com", last_name=last, first_name=first)
    assert mailbox(str(legacy["To"])) == (display_name(contact), "a@example.com")
    assert mailbox(str(legacy["From"])) == (" ".join(sender_name.split()), "news@example.com")


@given(one_line, one_line, one_line, one_line)
def test_header_lines_stay_within_78_characters(
    subject: str, last: str, first: str, sender_name: str
) -> None:
    """Every header line the builder writes fits RFC 5322's 78-character recommendation."""
    lines = head(build(subject, last, first, sender_name))
    assert all(len(line) <= 78 for line in lines)
    assert all(line.isascii() for line in lines)


@given(any_text)
def test_body_round_trips_with_normalised_line_breaks(body: str) -> None:
    """The text body decodes to the input with every line break as one newline."""
    raw = build("s", "", "", "", body=body)
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    decoded = message.get_content().replace("\r\n", "\n")
    expected = re.sub(r"\r\n|\r", "\n", body)
    if not expected.endswith("\n"):
        expected += "\n"
    assert decoded == expected
    assert raw.count(b"\n") == raw.count(b"\r\n")
