"""Properties of the web app's small pieces: CSRF tokens and download names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from broadcast_adapters.web.app import _disposition
from broadcast_adapters.web.csrf import CsrfTokens

KEY = b"property-test-secret-0123456789"
users = st.text(min_size=1, max_size=20)
purposes = st.text(min_size=1, max_size=60)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(users, purposes, moments, st.integers(min_value=0, max_value=8 * 3600 - 1))
def test_a_token_is_valid_for_its_user_and_form_until_it_expires(
    user: str, purpose: str, issued: datetime, age: int
) -> None:
    """A token issued to a user for a form checks for that user and form within max_age."""
    tokens = CsrfTokens(KEY)
    token = tokens.issue(user, purpose, issued)
    assert tokens.check(token, user, purpose, issued + timedelta(seconds=age)) is None
    assert tokens.check(token, user, purpose, issued + timedelta(hours=8, seconds=1)) is not None


@given(users, users, purposes, purposes, moments)
def test_a_token_never_checks_for_another_user_or_form(
    user: str, other_user: str, purpose: str, other_purpose: str, now: datetime
) -> None:
    """Taken from one user's page or one broadcast's form, a token is refused elsewhere."""
    tokens = CsrfTokens(KEY)
    token = tokens.issue(user, purpose, now)
    if other_user != user:
        assert tokens.check(token, other_user, purpose, now) is not None
    if other_purpose != purpose:
        assert tokens.check(token, user, other_purpose, now) is not None
    assert CsrfTokens(KEY + b"x").check(token, user, purpose, now) is not None


@given(users, purposes, moments, st.data())
def test_any_altered_token_is_refused(
    user: str, purpose: str, now: datetime, data: st.DataObject
) -> None:
    """Changing any one character of a token makes it invalid."""
    tokens = CsrfTokens(KEY)
    token = tokens.issue(user, purpose, now)
    i = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.characters().filter(lambda c: c != token[i]))
    altered = token[:i] + replacement + token[i + 1 :]
    assert tokens.check(altered, user, purpose, now) is not None


@given(st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=80))
def test_the_download_name_survives_rfc_6266(name: str) -> None:
    """Content-Disposition is plain ASCII, an attachment, and names the file exactly."""
    header = _disposition(name)
    header.encode("ascii")
    assert header.startswith("attachment; filename=")
    assert "\r" not in header
    assert "\n" not in header
    if "filename*=" in header:
        encoded = header.split("filename*=UTF-8''", 1)[1]
        assert unquote(encoded, errors="strict") == name
    else:
        assert header == f'attachment; filename="{name}"'
