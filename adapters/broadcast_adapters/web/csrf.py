"""CSRF tokens: an HMAC of the app's secret key over who asked, for what and when.

A token is ``<issued unix seconds>.<base64url HMAC-SHA256>``. The HMAC covers
the issue time, the user id and the form's purpose (the broadcast it acts on),
so a token taken from one user's page or one broadcast's form is useless for
another, and it expires after ``max_age``. No server-side state: any worker of
the app checks any token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta

__all__ = ["CsrfTokens"]


class CsrfTokens:
    """Issues and checks the tokens of one app's forms."""

    __slots__ = ("_key", "_max_age")

    def __init__(self, secret_key: bytes, *, max_age: timedelta = timedelta(hours=8)) -> None:
        if not isinstance(secret_key, bytes) or len(secret_key) < 16:
            raise ValueError("secret_key must be at least 16 random bytes")
        # A key of its own, so the CSRF MAC can never be confused with another use
        # a host makes of the same secret.
        self._key = hmac.new(secret_key, b"broadcast-web csrf v1", hashlib.sha256).digest()
        self._max_age = max_age

    def _mac(self, issued: int, user_id: str, purpose: str) -> str:
        message = f"{issued}\n{user_id}\n{purpose}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def issue(self, user_id: str, purpose: str, now: datetime) -> str:
        """A token for ``user_id`` to submit the form named ``purpose``."""
        issued = int(now.timestamp())
        return f"{issued}.{self._mac(issued, user_id, purpose)}"

    def check(self, token: str, user_id: str, purpose: str, now: datetime) -> str | None:
        """None when the token is valid; otherwise why it is not (for the 403 page)."""
        # Tokens are ASCII; anything else (a tampered form) is malformed, not an error.
        stamp, dot, mac = token.partition(".")
        if not token.isascii() or not dot or not stamp.isdigit() or len(stamp) > 12:
            return "the form's CSRF token is missing or malformed; reload the page and try again"
        issued = int(stamp)
        if not hmac.compare_digest(mac, self._mac(issued, user_id, purpose)):
            return "the form's CSRF token is not valid for this user and form"
        age = now.timestamp() - issued
        if age > self._max_age.total_seconds() or age < -300:
            return "the form's CSRF token has expired; reload the page and try again"
        return None
