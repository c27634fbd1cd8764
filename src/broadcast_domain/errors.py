"""The error family: every error the library raises derives from BroadcastError.

Each message says what was wrong, where (field, line, row) and what to do.
"""

from __future__ import annotations

__all__ = [
    "BroadcastError",
    "ConcurrencyConflict",
    "CsvExportError",
    "CsvImportError",
    "InvalidInput",
    "InvalidSignature",
    "InvalidTransition",
    "PermissionDenied",
    "QuotaExceeded",
    "StoreUnavailable",
    "UnknownBroadcast",
    "UnknownRecipient",
]


class BroadcastError(Exception):
    """Root of every error raised by broadcast-domain."""


class InvalidInput(BroadcastError, ValueError):
    """An argument was malformed: a naive datetime, CR/LF in a header, a bad address."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidTransition(BroadcastError):
    """The command is not allowed in the aggregate's current state."""


class PermissionDenied(BroadcastError, PermissionError):
    """The actor lacks the role the action needs; the message names that role."""

    def __init__(self, message: str, *, required: str) -> None:
        super().__init__(message)
        self.required = required


class QuotaExceeded(BroadcastError):
    """The account's monthly allowance does not admit the requested sends."""


class UnknownBroadcast(BroadcastError, LookupError):
    """No broadcast has the given id."""


class UnknownRecipient(BroadcastError, LookupError):
    """The broadcast has no recipient with the given address."""


class ConcurrencyConflict(BroadcastError):
    """Another writer changed the same aggregate first and retries did not resolve it."""


class CsvImportError(BroadcastError):
    """A recipient CSV file has a fatal problem; nothing was imported."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class CsvExportError(BroadcastError):
    """A result row cannot be written in the requested encoding."""

    def __init__(self, message: str, *, row: int, column: str) -> None:
        super().__init__(message)
        self.row = row
        self.column = column


class InvalidSignature(BroadcastError):
    """A webhook or VERP signature is missing, wrong or stale; nothing was recorded."""


class StoreUnavailable(BroadcastError):
    """The store named by the URL cannot be reached or opened (server down, wrong credentials)."""
