"""One reading of VERP addresses: ``verp_token_of`` (used by the webhooks) and
``Verp.token_from_address`` (used by raw-report intake) agree on every address."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given

from broadcast_domain.domain.verp import Verp, split_verp_address, verp_token_of

PART = st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True)
TOKEN = st.from_regex(r"[A-Za-z0-9=+_.-]{1,20}", fullmatch=True)
DOMAIN = st.from_regex(r"[A-Za-z0-9-]{1,10}\.(example|test)", fullmatch=True)
WRAP = st.sampled_from(["{}", "<{}>", " {} ", " <{}> "])


@given(base=PART, token=TOKEN, domain=DOMAIN, wrap=WRAP)
def test_the_token_is_everything_after_the_first_plus(
    base: str, token: str, domain: str, wrap: str
) -> None:
    """``base+TOKEN@domain`` (in angle brackets or spaces or not) gives TOKEN, whatever TOKEN
    holds (a '+' too)."""
    address = wrap.format(f"{base}+{token}@{domain}")
    assert verp_token_of(address) == token
    assert split_verp_address(address) == (base, token, domain)


@given(base=PART, domain=DOMAIN, other=st.one_of(st.none(), st.just(""), PART))
def test_an_address_without_a_token_gives_none(base: str, domain: str, other: str | None) -> None:
    """No '+', an empty token, no '@' or no domain: None."""
    assert verp_token_of(f"{base}@{domain}") is None
    assert verp_token_of(f"{base}+@{domain}") is None
    assert verp_token_of(f"{base}+tok") is None
    assert verp_token_of(f"{base}+tok@") is None
    assert verp_token_of(other) is None


@given(
    base=PART,
    domain=DOMAIN,
    address_base=PART,
    address_domain=DOMAIN,
    token=TOKEN,
    upper=st.booleans(),
)
def test_the_webhooks_and_the_intake_read_an_address_alike(
    base: str, domain: str, address_base: str, address_domain: str, token: str, upper: bool
) -> None:
    """With a return path, the token is read iff base and domain are the return path's (in
    any case); ``Verp.token_from_address`` says exactly the same."""
    verp = Verp(f"{base}@{domain}", b"k" * 32)
    for b, d in ((base, domain), (address_base, address_domain), (base, address_domain)):
        spelt_b, spelt_d = (b.upper(), d.upper()) if upper else (b, d)
        address = f"{spelt_b}+{token}@{spelt_d}"
        expected = token if (b.lower(), d.lower()) == (base.lower(), domain.lower()) else None
        assert verp_token_of(address, return_path=f"{base}@{domain}") == expected
        assert verp.token_from_address(address) == expected


@given(key=st.binary(min_size=16, max_size=100), raw_id=st.binary(min_size=16, max_size=16))
def test_a_token_is_the_base32_of_the_id_and_its_truncated_hmac(key: bytes, raw_id: bytes) -> None:
    """``token`` spells the id and the first 10 bytes of its HMAC-SHA256 exactly as
    ``base64.b32encode`` would (lower case, no padding), and ``verify`` reads it back;
    keys longer than SHA-256's block (64 bytes) are hashed first, as RFC 2104 says."""
    import base64
    import hmac
    import uuid

    rid = uuid.UUID(bytes=raw_id)
    verp = Verp("bounces@mail.example.com", key)
    mac = hmac.digest(key, raw_id, "sha256")[:10]
    expected = base64.b32encode(raw_id + mac).decode("ascii").rstrip("=").lower()
    assert verp.token(rid) == expected
    assert verp.verify(expected) == rid
