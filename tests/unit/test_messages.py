"""Unit tests of the MIME message builder: headers, parts, encodings and input checks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from broadcast_domain.domain.messages import build_message, display_name, make_message_id
from broadcast_domain.domain.values import Contact
from broadcast_domain.errors import InvalidInput

JST = timezone(timedelta(hours=9))
WHEN = datetime(2026, 11, 2, 9, 30, tzinfo=JST)
YAMADA = Contact("taro@example.com", last_name="山田", first_name="太郎", company="ACME")


def build(**overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "sender": "news@example.com",
        "sender_name": "ACME ニュース",
        "recipient": YAMADA,
        "subject": "11月のお知らせ",
        "text_body": "山田様\nいつもありがとうございます。\n",
        "html_body": None,
        "message_id": "<b1.r1@mail.example.com>",
        "envelope_from": "bounces+tok@mail.example.com",
        "date": WHEN,
    }
    args.update(overrides)
    return build_message(**args)


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def test_japanese_subject_decodes_back_exactly() -> None:
    """A Japanese subject is RFC 2047 encoded on the wire and decodes to the same text."""
    raw = build(subject="【重要】11月のお知らせ（再送）")
    assert "【重要】".encode() not in raw
    assert parse(raw)["Subject"] == "【重要】11月のお知らせ（再送）"


def test_to_header_carries_family_then_given_name() -> None:
    """To is "山田 太郎" <address>: last name, a space, first name."""
    to = parse(build())["To"]
    assert to.addresses[0].display_name == "山田 太郎"
    assert to.addresses[0].addr_spec == "taro@example.com"


def test_contact_without_names_gets_a_bare_address() -> None:
    """A contact with no names is addressed by address alone."""
    raw = build(recipient=Contact("anon@example.com"))
    assert b"\r\nTo: anon@example.com\r\n" in raw
    assert parse(raw)["To"].addresses[0].display_name == ""


def test_from_header_uses_sender_name_when_given() -> None:
    """From shows the sender's display name, or the bare address without one."""
    assert parse(build())["From"].addresses[0].display_name == "ACME ニュース"
    bare = parse(build(sender_name=None))["From"]
    assert bare.addresses[0].display_name == ""
    assert bare.addresses[0].addr_spec == "news@example.com"


def test_ascii_subject_stays_readable() -> None:
    """A plain ASCII subject is written as it is, not encoded."""
    assert b"\r\nSubject: Monthly news\r\n" in build(subject="Monthly news")


def test_text_only_message_is_a_single_utf8_part() -> None:
    """Without HTML the message is one text/plain part in UTF-8 that decodes to the body."""
    message = parse(build())
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content().replace("\r\n", "\n") == "山田様\nいつもありがとうございます。\n"


def test_html_makes_multipart_alternative_text_first() -> None:
    """With HTML the message is multipart/alternative: text/plain, then text/html."""
    message = parse(build(html_body="<p>山田様</p>"))
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert parts[1].get_content().strip() == "<p>山田様</p>"
    assert all("MIME-Version" not in p for p in parts)
    assert message["MIME-Version"] == "1.0"


def test_every_line_ends_in_crlf_and_the_message_is_seven_bit() -> None:
    """Every line break is CRLF and every byte is ASCII, so any SMTP server takes it."""
    raw = build(html_body="<p>本文</p>\n<p>二行目</p>")
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_message_id_and_date_are_the_given_ones() -> None:
    """Message-ID is the one passed in and Date is the given instant."""
    message = parse(build())
    assert message["Message-ID"] == "<b1.r1@mail.example.com>"
    assert parsedate_to_datetime(message["Date"]) == WHEN


def test_only_standard_headers_are_written() -> None:
    """No Return-Path (the envelope sets it) and no List-Unsubscribe unless asked for."""
    message = parse(build())
    names = {name.lower() for name in message}
    assert names == {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }


def test_list_unsubscribe_is_added_when_passed() -> None:
    """Extra headers such as List-Unsubscribe appear as given."""
    link = "<https://example.com/unsub?id=1>, <mailto:unsub@example.com>"
    message = parse(build(extra_headers={"List-Unsubscribe": link}))
    assert message["List-Unsubscribe"] == link


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"subject": "Hello\r\nBcc: victim@example.com"}, "subject"),
        ({"subject": "line\nbreak"}, "subject"),
        ({"sender_name": "Evil\rName"}, "sender_name"),
        ({"recipient": Contact("a@example.com", last_name="山\n田")}, "recipient.last_name"),
        ({"recipient": Contact("a@example.com", first_name="太\r郎")}, "recipient.first_name"),
        ({"recipient": Contact("a@example.com\r\nBcc: x@y")}, "recipient.address"),
        ({"sender": "news@example.com\n"}, "sender"),
        ({"envelope_from": "b@x.com\r\n"}, "envelope_from"),
        ({"message_id": "<a@b>\r\nX: y"}, "message_id"),
        (
            {"extra_headers": {"List-Unsubscribe": "<u>\r\nBcc: x@y"}},
            "extra_headers['List-Unsubscribe']",
        ),
    ],
)
def test_line_break_in_a_header_value_is_rejected_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    """CR or LF in any header value raises InvalidInput that names the field."""
    with pytest.raises(InvalidInput) as info:
        build(**overrides)
    assert info.value.field == field
    assert field in str(info.value)


def test_extra_headers_cannot_replace_written_headers() -> None:
    """extra_headers may not set From, Subject, Return-Path or other written headers."""
    for name in ("Subject", "from", "Return-Path", "Content-Type"):
        with pytest.raises(InvalidInput, match="cannot be overridden"):
            build(extra_headers={name: "x"})


def test_bad_extra_header_name_is_rejected() -> None:
    """A header name with a colon or a space is rejected."""
    with pytest.raises(InvalidInput, match="not a valid header name"):
        build(extra_headers={"X Bad:": "x"})


def test_naive_date_is_rejected() -> None:
    """A naive date raises InvalidInput naming the date field."""
    with pytest.raises(InvalidInput) as info:
        build(date=datetime(2026, 11, 2, 9, 30))
    assert info.value.field == "date"


def test_non_ascii_local_part_is_rejected_and_idn_domain_is_encoded() -> None:
    """An address needing SMTPUTF8 is refused; an internationalised domain becomes punycode."""
    with pytest.raises(InvalidInput, match="SMTPUTF8"):
        build(recipient=Contact("山田@example.com"))
    raw = build(recipient=Contact("taro@例え.jp", last_name="山田"))
    assert parse(raw)["To"].addresses[0].domain == "xn--r8jz45g.jp"


def test_address_without_at_sign_is_rejected() -> None:
    """A recipient that is not an address raises InvalidInput."""
    with pytest.raises(InvalidInput, match="not an e-mail address"):
        build(recipient=Contact("nobody"))


def test_malformed_message_id_is_rejected() -> None:
    """A Message-ID without angle brackets and an @ is refused."""
    with pytest.raises(InvalidInput, match="message_id"):
        build(message_id="no-brackets@example.com")


def test_make_message_id_wraps_unique_and_domain() -> None:
    """make_message_id gives <unique@domain>."""
    assert make_message_id("mail.example.com", "b1.r1.2") == "<b1.r1.2@mail.example.com>"


@pytest.mark.parametrize(
    ("domain", "unique"),
    [
        ("", "x"),
        ("ex.com", ""),
        ("ex.com", "a@b"),
        ("ex com", "x"),
        ("ex.com", "a>b"),
        ("ex.com", "a\nb"),
    ],
)
def test_make_message_id_rejects_unusable_parts(domain: str, unique: str) -> None:
    """Empty parts, spaces, angle brackets, @ and line breaks are refused."""
    with pytest.raises(InvalidInput):
        make_message_id(domain, unique)


def test_display_name_squeezes_whitespace() -> None:
    """Surrounding and repeated whitespace in names collapses to single spaces."""
    contact = Contact("a@example.com", last_name=" 山田\u3000", first_name="\t太郎 ")
    assert display_name(contact) == "山田 太郎"
    assert display_name(Contact("a@example.com", first_name="Taro")) == "Taro"
