"""Recipients in: the recipient CSV, and everything ``create_broadcast`` is given, checked.

The CSV bytes are the :class:`~broadcast_domain.ports.CsvCodec` port's business
(an adapter; the core never imports :mod:`csv`). This module checks what a
host passes before anything is written: a bad input raises InvalidInput
naming the field (``recipients[12].address``). The recipients themselves are
checked and folded by normalised address (the first of each address is kept)
while ``create_broadcast`` reads them, a chunk at a time, before it writes
anything (:mod:`broadcast_domain.application.scheduling`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from broadcast_domain.application.results import ImportedRecipients, ImportProblem
from broadcast_domain.application.validation import (
    check_address,
    check_header_field,
    require_text,
)
from broadcast_domain.domain.permissions import require_inbox_role
from broadcast_domain.domain.values import (
    AddressBookSource,
    Contact,
    CsvSource,
    InboxRole,
    require_aware,
)
from broadcast_domain.errors import BroadcastError, InvalidInput
from broadcast_domain.ports import AddressBook, CsvCodec, ImportedCsv

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_ROWS", "Importer", "NewBroadcast"]

DEFAULT_MAX_ROWS: Final = 100_000
DEFAULT_MAX_BYTES: Final = 20 * 1024 * 1024


@attrs.frozen
class NewBroadcast:
    """A checked ``create_broadcast`` request: ready to be recorded."""

    account_id: str
    inbox_id: str
    sender: str
    subject: str
    text_body: str
    html_body: str | None
    source_kind: str
    source_ref: str
    scheduled_at: datetime
    created_by: str
    #: Not yet checked: read once, in order, when the broadcast is recorded.
    recipients: Iterator[object]


def _positive_int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{field} must be a positive int, got {value!r}", field=field)
    return value


class Importer:
    """Reads recipient files and checks new broadcasts' input."""

    def __init__(
        self, csv_codec: Callable[[], CsvCodec], address_book: AddressBook | None = None
    ) -> None:
        self._make_codec = csv_codec
        self._codec: CsvCodec | None = None
        self.address_book = address_book

    def codec(self) -> CsvCodec:
        """The CSV codec (made on first use: a store that never reads CSV needs none)."""
        if self._codec is None:
            self._codec = self._make_codec()
        return self._codec

    def parse_csv(
        self, data: object, *, max_rows: int = DEFAULT_MAX_ROWS, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> ImportedRecipients:
        """Parse a recipient file through the codec; CsvImportError when the file is unusable."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(
                f"data must be the file's bytes, got {type(data).__name__}; read the file in "
                "binary mode ('rb')",
                field="data",
            )
        _positive_int(max_rows, "max_rows")
        _positive_int(max_bytes, "max_bytes")
        parsed = self.codec().parse_recipients(bytes(data), max_rows=max_rows, max_bytes=max_bytes)
        if not isinstance(parsed, ImportedCsv):
            raise BroadcastError(
                f"the CSV codec returned {type(parsed).__name__}, not ImportedCsv; "
                "fix the codec passed as csv_codec="
            )
        return ImportedRecipients(
            contacts=tuple(parsed.contacts),
            problems=tuple(ImportProblem(p.line, p.reason) for p in parsed.problems),
            duplicates=parsed.duplicates,
            ignored_columns=tuple(parsed.ignored_columns),
        )

    def new_broadcast(
        self,
        *,
        account_id: object,
        inbox_id: object,
        sender: object,
        subject: object,
        text_body: object,
        html_body: object,
        source: AddressBookSource | CsvSource,
        recipients: Iterable[Contact] | None,
        scheduled_at: datetime,
        actor: Any,
    ) -> NewBroadcast:
        """Check everything ``create_broadcast`` is given, in the order a reader would.

        The recipients are only made an iterator here: they are checked as they
        are read, before anything is written (``Commands.create_broadcast``).
        """
        account = require_text(account_id, "account_id")
        inbox = require_text(inbox_id, "inbox_id")
        who = require_inbox_role(actor, inbox, InboxRole.OPERATOR, "creating a broadcast")
        sender_address = check_address(require_text(sender, "sender"), "sender")
        subject_text = require_text(subject, "subject", allow_empty=True)
        check_header_field(subject_text, "subject")
        body = require_text(text_body, "text_body", allow_empty=True)
        html = None if html_body is None else require_text(html_body, "html_body", allow_empty=True)
        if isinstance(source, AddressBookSource):
            require_text(source.address_book_id, "source.address_book_id")
            kind, ref = "address_book", source.address_book_id
        elif isinstance(source, CsvSource):
            require_text(source.file_name, "source.file_name")
            kind, ref = "csv", source.file_name
        else:
            raise InvalidInput(
                "source must be AddressBookSource(address_book_id) or CsvSource(file_name)",
                field="source",
            )
        when = require_aware(scheduled_at, "scheduled_at")
        if recipients is None:
            if isinstance(source, AddressBookSource) and self.address_book is not None:
                recipients = self.address_book.contacts(source.address_book_id)
            else:
                raise InvalidInput(
                    "recipients must be given (a list of Contact)", field="recipients"
                )
        try:
            contacts = iter(recipients)
        except TypeError:
            raise InvalidInput(
                "recipients must be an iterable of Contact (a list, a generator ...), got "
                f"{type(recipients).__name__}",
                field="recipients",
            ) from None
        return NewBroadcast(
            account_id=account,
            inbox_id=inbox,
            sender=sender_address,
            subject=subject_text,
            text_body=body,
            html_body=html,
            source_kind=kind,
            source_ref=ref,
            scheduled_at=when.astimezone(UTC),
            created_by=who.user_id,
            recipients=contacts,
        )
