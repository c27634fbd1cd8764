"""Building the RFC 5322 message for one recipient of a broadcast.

Pure: the standard ``email`` package does the MIME structure and bodies; the
headers that carry user text (Subject, display names) are encoded here, because
the ``email`` package silently changes some values on the way (leading and
trailing spaces, text that looks like an encoded word) and a subject must reach
the reader exactly as it was typed.

Every line ends in CRLF; bodies are UTF-8 in a 7-bit-safe transfer encoding,
so the message can be handed to any SMTP server without 8BITMIME.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime

from broadcast_domain.domain.values import Contact, require_aware
from broadcast_domain.errors import InvalidInput

__all__ = [
    "MessageTemplate",
    "build_message",
    "check_address",
    "display_name",
    "make_message_id",
]


class _CachedHeaderRegistry(HeaderRegistry):
    """The standard header registry, remembering the class it makes for each header name.

    ``HeaderRegistry.__getitem__`` builds a new class with ``type()`` on every
    header set or parsed, which was the largest single cost of building a
    message; the class depends only on the lower-cased name, so it is made once.
    (``map_to_type`` is never called on this registry.)
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


# policy.SMTP ends lines in CRLF; cte_type 7bit makes set_content choose
# quoted-printable or base64 for non-ASCII bodies instead of raw 8bit.
_POLICY = email_policy.SMTP.clone(cte_type="7bit", header_factory=_CachedHeaderRegistry())

_MAX_LINE = 78
# "=?utf-8?b?" + base64 + "?=" must stay within 75 characters (RFC 2047 2):
# 60 base64 characters carry 45 bytes.
_WORD_BYTES = 45

# Headers this module writes; a caller cannot override them through extra_headers.
_MANAGED = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "return-path",
        "sender",
        "cc",
        "bcc",
    }
)
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 2.2: printable ASCII except ":"
_ID_PART = re.compile(r"[!-;=?-~]+")  # printable ASCII except "<" and ">" ("@" checked apart)
_MESSAGE_ID = re.compile(r"<([^<>@\s]+)@([^<>@\s]+)>")
_NOT_IN_ADDRESS = frozenset(' \t<>(),;:"\\')


class _RawHeader(str):
    """A header value already encoded and folded here.

    EmailPolicy stores a value that has a matching ``name`` unchanged and calls
    its ``fold`` to write it (documented in ``email.policy.EmailPolicy``), so
    the email package neither re-parses nor re-folds what we encoded.
    """

    name: str
    _folded: str

    def __new__(cls, name: str, folded: str) -> _RawHeader:
        self = super().__new__(cls, folded)
        self.name = name
        self._folded = folded
        return self

    def fold(self, *, policy: Policy) -> str:
        """The header line(s) as written, with the policy's line separator."""
        linesep = policy.linesep
        return f"{self.name}: {self._folded.replace(chr(13) + chr(10), linesep)}{linesep}"


def _check_utf8(value: str, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string, got {type(value).__name__}", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{field} cannot be encoded as UTF-8 ({exc.reason} at position {exc.start})",
            field=field,
        ) from None
    return value


def _check_text(value: str, field: str) -> str:
    if isinstance(value, str) and value.isascii() and value.isprintable():
        return value  # printable ASCII: valid UTF-8, and no CR or LF
    _check_utf8(value, field)
    if "\r" in value or "\n" in value:
        raise InvalidInput(
            f"{field} contains a CR or LF character ({value!r}); header values must be "
            "one line: remove the line break",
            field=field,
        )
    return value


def check_address(value: str, field: str) -> str:
    """An ASCII addr-spec; an internationalised domain is IDNA-encoded (InvalidInput naming
    ``field`` otherwise)."""
    _check_text(value, field)
    local, at, domain = value.strip().rpartition("@")
    if not at or not local or not domain:
        raise InvalidInput(f"{field} is not an e-mail address: {value!r}", field=field)
    if not local.isascii():
        raise InvalidInput(
            f"{field} has a non-ASCII local part ({value!r}); such addresses need SMTPUTF8, "
            "which this library does not send",
            field=field,
        )
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidInput(
                f"{field} has a domain that cannot be IDNA-encoded: {value!r}", field=field
            ) from None
    address = f"{local}@{domain}"
    if not _NOT_IN_ADDRESS.isdisjoint(address) or not address.isprintable():
        raise InvalidInput(
            f"{field} contains characters not allowed in an address: {value!r}", field=field
        )
    return address


def _is_plain(value: str) -> bool:
    """Text that survives as-is: printable ASCII, single spaces, no encoded-word look."""
    return (
        value.isascii()
        and value.isprintable()
        and value == value.strip()
        and "  " not in value
        and "=?" not in value
    )


def _encoded_words(value: str, first_line_room: int) -> list[str]:
    """RFC 2047 B-encoded words, UTF-8, never splitting a character.

    The first word is made small enough to fit after the header name, so no
    line grows past 78 characters.
    """
    limit = _word_bytes(first_line_room)
    whole = value.encode("utf-8")
    if len(whole) <= limit:
        return [_b_word(whole)]  # what the loop below gives when nothing is split
    words: list[str] = []
    chunk = bytearray()
    for char in value:
        encoded = char.encode("utf-8")
        if chunk and len(chunk) + len(encoded) > limit:
            words.append(_b_word(bytes(chunk)))
            chunk.clear()
            limit = _WORD_BYTES
        chunk += encoded
    if chunk:
        words.append(_b_word(bytes(chunk)))
    return words


def _word_bytes(room: int) -> int:
    """How many bytes one encoded word carries in ``room`` characters (at most 45)."""
    b64_chars = (room - len("=?utf-8?b??=")) // 4 * 4
    # a header name too long to leave room gets a full-size word (a long line,
    # still far below the 998 limit) rather than a word per character
    return _WORD_BYTES if b64_chars < 8 else min(_WORD_BYTES, b64_chars // 4 * 3)


def _b_word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def _fold(name: str, tokens: list[str]) -> str:
    """Join tokens with single spaces, breaking lines before a space when too long.

    Only whitespace between tokens is ever folded, so unfolding (removing
    CRLF) gives back the exact text; between encoded words the whitespace is
    ignored by decoders (RFC 2047 6.2).
    """
    lines: list[str] = []
    line = tokens[0]
    budget = _MAX_LINE - len(name) - 2
    for token in tokens[1:]:
        if len(line) + 1 + len(token) <= budget:
            line += " " + token
        else:
            lines.append(line)
            line = token
            budget = _MAX_LINE - 1  # a continuation line starts with the folding space
    lines.append(line)
    return "\r\n ".join(lines)


def _unstructured(name: str, value: str) -> _RawHeader:
    if not value:
        return _RawHeader(name, "")
    words = value.split(" ")
    if (
        _is_plain(value)
        and len(name) + 2 + len(words[0]) <= _MAX_LINE
        and all(len(w) + 1 <= _MAX_LINE for w in words)
    ):
        return _RawHeader(name, _fold(name, words))
    return _RawHeader(name, _fold(name, _encoded_words(value, _MAX_LINE - len(name) - 2)))


def _mailbox(name: str, display: str, address: str) -> _RawHeader:
    return _RawHeader(name, _mailbox_value(name, display, address))


def _mailbox_value(name: str, display: str, address: str) -> str:
    """The folded value of a mailbox header (CRLF between lines)."""
    if not display:
        return address
    if _is_plain(display):
        quoted = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(name) + 2 + len(quoted) + 1 + len(address) + 2 <= _MAX_LINE:
            return f"{quoted} <{address}>"
    words = _encoded_words(display, _MAX_LINE - len(name) - 2)
    return _fold(name, [*words, f"<{address}>"])


def _squeeze(text: str) -> str:
    # Decoders turn whitespace inside a display name into plain spaces, so a
    # name is normalised to single spaces up front and reads back exactly.
    return " ".join(text.split())


def display_name(contact: Contact) -> str:
    """The name shown in To: family name, a space, given name ("山田 太郎").

    Runs of whitespace become one space and the ends are trimmed.
    """
    return _display(contact.last_name, contact.first_name)


def _display(last_name: str, first_name: str) -> str:
    return _squeeze(f"{last_name} {first_name}")


def make_message_id(domain: str, unique: str) -> str:
    """A Message-ID ``<unique@domain>``; both parts must be printable ASCII without ``<>@``."""
    for field, value in (("domain", domain), ("unique", unique)):
        _check_text(value, field)
        if not value or not _ID_PART.fullmatch(value) or "@" in value:
            raise InvalidInput(
                f"Message-ID {field} must be non-empty printable ASCII without spaces, "
                f"'<', '>' or '@': {value!r}",
                field=field,
            )
    return f"<{unique}@{domain}>"


def _check_message_id(value: str) -> str:
    _check_text(value, "message_id")
    match = _MESSAGE_ID.fullmatch(value)
    if match is None or not value.isascii() or not value.isprintable():
        raise InvalidInput(
            f"message_id must look like <unique@domain> (printable ASCII), got {value!r}; "
            "make one with make_message_id()",
            field="message_id",
        )
    return value


def build_message(
    *,
    sender: str,
    sender_name: str | None,
    recipient: Contact,
    subject: str,
    text_body: str,
    html_body: str | None,
    message_id: str,
    envelope_from: str,
    date: datetime,
    extra_headers: Mapping[str, str] | None = None,
) -> bytes:
    """The whole message for one recipient, as bytes with CRLF line endings.

    Text only, or multipart/alternative (text, then HTML). Headers: From, To,
    Subject, Date, Message-ID, MIME-Version and whatever ``extra_headers``
    adds (e.g. List-Unsubscribe). ``envelope_from`` is checked but not written:
    the receiving server records it as Return-Path. Raises InvalidInput naming
    the field for CR/LF in any header value, a bad address or a naive date.
    """
    sender_addr = check_address(sender, "sender")
    check_address(envelope_from, "envelope_from")
    to_addr = check_address(recipient.address, "recipient.address")
    from_name = _squeeze(_check_text(sender_name or "", "sender_name"))
    _check_text(recipient.last_name, "recipient.last_name")
    _check_text(recipient.first_name, "recipient.first_name")
    _check_text(subject, "subject")
    _check_message_id(message_id)
    require_aware(date, "date")
    _check_utf8(text_body, "text_body")
    if html_body is not None:
        _check_utf8(html_body, "html_body")
    extras = dict(extra_headers or {})
    for key, value in extras.items():
        field = f"extra_headers[{key!r}]"
        if not isinstance(key, str) or not _FIELD_NAME.fullmatch(key):
            raise InvalidInput(f"{field}: not a valid header name", field=field)
        if key.lower() in _MANAGED:
            raise InvalidInput(
                f"{field}: {key} is written by build_message and cannot be overridden",
                field=field,
            )
        _check_text(value, field)

    msg = EmailMessage(policy=_POLICY)
    msg["From"] = _mailbox("From", from_name, sender_addr)
    msg["To"] = _mailbox("To", display_name(recipient), to_addr)
    msg["Subject"] = _unstructured("Subject", subject)
    msg["Date"] = _RawHeader("Date", format_datetime(date))
    msg["Message-ID"] = _RawHeader("Message-ID", message_id)
    for key, value in extras.items():
        msg[key] = _unstructured(key, value)
    msg.set_content(text_body, subtype="plain", charset="utf-8")
    if html_body is not None:
        msg.add_alternative(html_body, subtype="html", charset="utf-8")
        for part in msg.iter_parts():
            # the email package stamps MIME-Version on the added part too; it
            # belongs on the top level only (RFC 2045 4)
            del part["MIME-Version"]
    return msg.as_bytes()


_PLACEHOLDER = Contact("placeholder@example.invalid")
_PLACEHOLDER_ID = "<placeholder@example.invalid>"
_PER_RECIPIENT = ("to", "date", "message-id")


def _header_fields(block: bytes) -> list[tuple[str, bytes]]:
    """Split a header block (CRLF lines) into (lower-case name, raw lines incl. folding)."""
    fields: list[tuple[str, bytes]] = []
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + line + b"\r\n")
        else:
            name = line.split(b":", 1)[0].decode("ascii").lower()
            fields.append((name, line + b"\r\n"))
    return fields


class MessageTemplate:
    """One broadcast's message, built once; ``render`` adds the per-recipient headers.

    Every recipient's message has the same bytes as :func:`build_message`
    would give (the multipart boundary aside, which is shared by the messages of
    one template): only To, Date and Message-ID differ, so the MIME body and the
    other headers are encoded once instead of once per recipient.
    """

    def __init__(
        self,
        *,
        sender: str,
        sender_name: str | None,
        subject: str,
        text_body: str,
        html_body: str | None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        template = build_message(
            sender=sender,
            sender_name=sender_name,
            recipient=_PLACEHOLDER,
            subject=subject,
            text_body=text_body,
            html_body=html_body,
            message_id=_PLACEHOLDER_ID,
            envelope_from=sender,
            date=datetime(2000, 1, 1, tzinfo=UTC),
            extra_headers=extra_headers,
        )
        head, _, body = template.partition(b"\r\n\r\n")
        fields = _header_fields(head)
        names = [name for name, _ in fields]
        first, last = names.index("to"), names.index("message-id")
        if names[first : last + 1] != ["to", "subject", "date", "message-id"]:  # pragma: no cover
            raise AssertionError(f"unexpected header order from build_message: {names}")
        subject_raw = fields[first + 1][1]
        self._before = b"".join(raw for _, raw in fields[:first])
        self._subject = subject_raw
        self._after = b"".join(raw for _, raw in fields[last + 1 :]) + b"\r\n" + body
        self._date: datetime | None = None
        self._date_line = ""

    def render(
        self, *, recipient: Contact, message_id: str, envelope_from: str, date: datetime
    ) -> bytes:
        """The whole message for one recipient (checks as :func:`build_message` does)."""
        check_address(envelope_from, "envelope_from")
        _check_message_id(message_id)
        return self.render_to(
            recipient.address,
            recipient.last_name,
            recipient.first_name,
            message_id=message_id,
            envelope_from=envelope_from,
            date=date,
        )

    def render_to(
        self,
        address: str,
        last_name: str,
        first_name: str,
        *,
        message_id: str,
        envelope_from: str,
        date: datetime,
    ) -> bytes:
        """:meth:`render` for a Message-ID and an envelope sender the caller vouches for.

        The recipient's address and names, and the date, are checked as
        :meth:`render` checks them; ``message_id`` and ``envelope_from`` are
        not: they are for a caller that makes them by rules that keep them
        valid (a dispatcher: :func:`make_message_id`'s shape, and VERP
        addresses of a return path it checked with :func:`check_address`).
        """
        to_addr = check_address(address, "recipient.address")
        _check_text(last_name, "recipient.last_name")
        _check_text(first_name, "recipient.first_name")
        # The lines _RawHeader.fold writes under _POLICY (CRLF), without the objects.
        to = f"To: {_mailbox_value('To', _display(last_name, first_name), to_addr)}\r\n"
        if date != self._date:
            # One Date line per batch, not per message: formatting it is a third of a render.
            require_aware(date, "date")
            self._date = date
            self._date_line = _RawHeader("Date", format_datetime(date)).fold(policy=_POLICY)
        return b"".join(
            (
                self._before,
                to.encode("ascii"),
                self._subject,
                self._date_line.encode("ascii"),
                f"Message-ID: {message_id}\r\n".encode("ascii"),
                self._after,
            )
        )
