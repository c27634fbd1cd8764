"""A new broadcast's recipients in bounded memory: read, check, fold and encode, then write.

``create_broadcast`` takes its recipients as any iterable (a list, a generator,
an address book that reads lazily), so that a million of them never have to be
in memory at once. They are read :data:`CHUNK` at a time; each chunk is
checked (:func:`~broadcast_domain.application.validation.check_contacts`),
folded against every address seen before it and encoded into the rows the
event log stores. The folding remembers each kept recipient's id (one 128-bit
int: the id is derived from the normalised address, so equal keys are equal
ids), not its contact.

Nothing is written while the recipients are read: the first bad contact, or
an error raised by the host's iterable, leaves the store untouched. The rows
wait in memory up to :data:`ROWS_IN_MEMORY` and beyond that in an anonymous
temporary file, and are written only once every recipient has been checked
(docs/decisions.md, "Scheduling: check everything, then write").
"""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from types import TracebackType
from typing import IO
from uuid import UUID

from broadcast_domain.application.validation import Columns, check_contacts
from broadcast_domain.codec import Row, scheduled_rows_encoder
from broadcast_domain.domain.recipient import recipient_id_hasher

__all__ = ["CHUNK", "ROWS_IN_MEMORY", "RecipientRows", "Row", "prepare_recipients"]

CHUNK = 10_000
"""Recipients read, checked and encoded at a time (and written per transaction)."""

ROWS_IN_MEMORY = 100_000
"""Encoded rows kept in memory before the rest go to a temporary file (about 50 MB).

A broadcast the size of the largest CSV import never touches the disk (the
file costs about 2 us a row, written and read back); a million recipients
hold this much plus the folding's 80 MB.
"""


class RecipientRows:
    """The checked, folded and encoded recipients of one new broadcast, ready to write.

    A context manager: leaving it removes the temporary file, if one was needed.
    """

    def __init__(self) -> None:
        self.count = 0
        self._held: list[list[Row]] = []
        self._held_rows = 0
        self._spill: IO[bytes] | None = None
        self._spilled = 0

    def add(self, rows: list[Row]) -> None:
        """Keep the next chunk of rows (positions continue from :attr:`count`)."""
        self.count += len(rows)
        if self._spill is None and self._held_rows + len(rows) <= ROWS_IN_MEMORY:
            self._held.append(rows)
            self._held_rows += len(rows)
            return
        if self._spill is None:
            # Closed by close(), which the context manager and every error path call.
            self._spill = tempfile.TemporaryFile(prefix="broadcast-recipients-")  # noqa: SIM115
        # pickle: plain str/int/bytes tuples that this process writes and reads
        # back itself (never a file from elsewhere); it loads twice as fast as marshal.
        pickle.dump(rows, self._spill, protocol=pickle.HIGHEST_PROTOCOL)
        self._spilled += 1

    def chunks(self) -> Iterator[list[Row]]:
        """The rows in position order, a chunk at a time (once: held chunks are let go)."""
        while self._held:
            yield self._held.pop(0)
        if self._spill is not None:
            self._spill.seek(0)
            for _ in range(self._spilled):
                yield pickle.load(self._spill)  # noqa: S301 - our own rows, see add()

    def close(self) -> None:
        """Drop the rows and remove the temporary file."""
        self._held.clear()
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def __enter__(self) -> RecipientRows:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def prepare_recipients(
    recipients: Iterator[object],
    *,
    broadcast_id: UUID,
    account_id: str,
    now: datetime,
    field: str = "recipients",
) -> RecipientRows:
    """Check, fold and encode every recipient; InvalidInput names the first bad one.

    The rows are the ``Scheduled`` events :func:`broadcast_domain.domain.recipient.schedule`
    makes for the folded contacts (the first contact of each normalised address
    wins, positions count the kept ones from 0), encoded as the mapper would.
    """
    encode = scheduled_rows_encoder(broadcast_id, account_id, now)
    ids_of = recipient_id_hasher(broadcast_id)
    seen: set[int] = set()
    prepared = RecipientRows()
    start = 0
    try:
        while chunk := list(islice(recipients, CHUNK)):
            keys, columns = check_contacts(chunk, start, field)
            start += len(chunk)
            del chunk
            rids = ids_of(keys)
            fresh = set(rids)
            if len(fresh) == len(rids) and seen.isdisjoint(fresh):
                seen |= fresh
            else:
                rids, columns = _first_of_each(rids, columns, seen)
            hexes = [rid.to_bytes(16, "big").hex() for rid in rids]
            prepared.add(encode(hexes, columns, prepared.count))
    except BaseException:
        prepared.close()
        raise
    return prepared


def _first_of_each(rids: list[int], columns: Columns, seen: set[int]) -> tuple[list[int], Columns]:
    # The chunk folds onto itself or onto earlier chunks: keep the first of each id.
    kept: list[int] = []
    for index, rid in enumerate(rids):
        if rid not in seen:
            seen.add(rid)
            kept.append(index)
    addresses, lasts, firsts, companies, ids = columns
    return [rids[i] for i in kept], (
        [addresses[i] for i in kept],
        [lasts[i] for i in kept],
        [firsts[i] for i in kept],
        [companies[i] for i in kept],
        [ids[i] for i in kept],
    )
