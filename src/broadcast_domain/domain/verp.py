"""VERP return paths: ``local+TOKEN@domain``, the token naming a recipient delivery.

The token is the recipient aggregate id followed by a truncated HMAC-SHA256 of
it under the service's signing key, in lower-case base32 without padding (some
mail servers lower-case local parts, so the alphabet must survive that). A
forged or tampered token fails verification and can never flip a status.
"""

from __future__ import annotations

import hashlib
import hmac
from uuid import UUID

from broadcast_domain.errors import InvalidInput

__all__ = ["Verp", "split_verp_address", "verp_token_of"]

_MAC_BYTES = 10
_SHA256_BLOCK = 64
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# The base32 alphabet as the digits int(..., 32) reads: "A" is 0 ... "7" is 31.
_BASE32_DIGITS = str.maketrans(_BASE32, "0123456789ABCDEFGHIJKLMNOPQRSTUV")
# A token's length: 16 + 10 bytes in base32 without padding.
_TOKEN_CHARS = -(-(16 + _MAC_BYTES) * 8 // 5)
# Lower-case base32 of every 10-bit value (two characters), and where the 21
# 10-bit groups of a token's 210 bits start: the 208 bits of id and MAC, then
# the 2 zero bits base32 pads the last character with.
_PAIRS = tuple(a + b for a in _BASE32.lower() for b in _BASE32.lower())
_GROUPS = tuple(range(_TOKEN_CHARS * 5 - 10, -1, -10))


def split_verp_address(address: str) -> tuple[str, str, str] | None:
    """``(base, token, domain)`` of ``<base+TOKEN@domain>``; None when it carries no token.

    The one reading of a VERP address: surrounding spaces and angle brackets
    are dropped, the token is everything after the first ``+`` of the local
    part (the base never holds a ``+``, ``Verp`` refuses such return paths).
    """
    if not isinstance(address, str):
        return None
    addr = address.strip().strip("<>").strip()
    local, sep, domain = addr.rpartition("@")
    if not sep or not domain:
        return None
    base, plus, token = local.partition("+")
    if not plus or not base or not token:
        return None
    return base, token, domain


def verp_token_of(address: str | None, *, return_path: str | None = None) -> str | None:
    """The token of a VERP address, or None; with ``return_path``, only when base and domain
    are that return path's (compared case-insensitively).

    The token is not verified here: ``Verp.verify`` decides whether it names a delivery.
    """
    if not address:
        return None
    parts = split_verp_address(address)
    if parts is None:
        return None
    base, token, domain = parts
    if return_path is not None:
        own_base, _, own_domain = return_path.strip().rpartition("@")
        if base.lower() != own_base.lower() or domain.lower() != own_domain.lower():
            return None
    return token


class Verp:
    """Builds and parses signed VERP addresses for one return path and key."""

    def __init__(self, return_path: str, signing_key: bytes) -> None:
        local, sep, domain = return_path.rpartition("@")
        if not sep or not local or not domain or any(c in return_path for c in "\r\n +"):
            raise InvalidInput(
                f"return_path {return_path!r} must be a plain address "
                "like bounces@mail.example.com",
                field="return_path",
            )
        if not isinstance(signing_key, bytes | bytearray) or len(signing_key) < 16:
            raise InvalidInput(
                "signing_key must be at least 16 random bytes (e.g. secrets.token_bytes(32))",
                field="signing_key",
            )
        self.local = local
        self.domain = domain.lower()
        # HMAC-SHA256 (RFC 2104) keyed once: the inner and outer hashes with the
        # padded key already absorbed, and each MAC continues copies of them. The
        # same digest as hmac.new(key, payload, "sha256") (tested), at half the cost
        # of copying an hmac.HMAC, whose copy() is Python code.
        key = bytes(signing_key)
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def _mac(self, payload: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:_MAC_BYTES]

    def token(self, recipient_id: UUID) -> str:
        """The signed token for a recipient delivery."""
        payload = recipient_id.bytes
        # Base32 (lower case, no padding) of id and MAC, two characters per
        # 10 bits read from one integer: base64.b32encode is Python code and
        # took half of a token's time.
        value = int.from_bytes(payload + self._mac(payload), "big") << 2
        pairs = _PAIRS
        return "".join([pairs[(value >> shift) & 1023] for shift in _GROUPS])

    def address(self, recipient_id: UUID) -> str:
        """The envelope sender for a recipient delivery."""
        return f"{self.local}+{self.token(recipient_id)}@{self.domain}"

    def verify(self, token: str) -> UUID | None:
        """The recipient id a genuine token names, or None for anything else.

        Only the canonical spelling of ``token(recipient)`` (any case, spaces
        around) verifies: 42 base32 characters whose two unused last bits are 0.
        """
        text = token.strip().upper()
        if len(text) != _TOKEN_CHARS or text.strip(_BASE32):
            return None
        # Base32 as an integer: each character's 5 bits in order (base64's
        # b32decode, as one int() in C); the last 2 of the 210 bits are unused,
        # and the canonical spelling leaves them 0, so a changed character
        # never verifies.
        value = int(text.translate(_BASE32_DIGITS), 32)
        if value & 3:
            return None
        raw = (value >> 2).to_bytes(16 + _MAC_BYTES, "big")
        payload, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        return UUID(bytes=payload)

    def token_from_address(self, address: str) -> str | None:
        """Extract the token from ``local+TOKEN@domain`` when local and domain are ours."""
        return verp_token_of(address, return_path=f"{self.local}@{self.domain}")
