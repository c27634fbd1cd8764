"""The results screen's routes over HTTP: who may see what, CSRF, the JSON and the CSV bytes."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from web_support import ACTORS, INBOX, SECRET, Seeded, actor_for, seed, served

from broadcast_adapters.web import create_app
from broadcast_domain import REASONS, DeliveryStatus


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[Seeded, httpx.Client]]:
    seeded = seed(recipients=80)
    app = create_app(seeded.svc, actor_for=actor_for, secret_key=SECRET)
    try:
        with served(app) as url, httpx.Client(base_url=url) as http:
            yield seeded, http
    finally:
        seeded.svc.close()


def _get(http: httpx.Client, path: str, user: str | None, **params: Any) -> httpx.Response:
    headers = {"X-Test-User": user} if user else {}
    return http.get(path, headers=headers, params=params)


def _routes(s: Seeded) -> dict[str, str]:
    b = s.csv_broadcast
    return {
        "list": f"/inboxes/{INBOX}/broadcasts",
        "page": f"/broadcasts/{b}",
        "summary": f"/broadcasts/{b}/summary.json",
        "errors": f"/broadcasts/{b}/errors",
        "results.csv": f"/broadcasts/{b}/results.csv",
        "errors.csv": f"/broadcasts/{b}/errors.csv",
        "book results.csv": f"/broadcasts/{s.book_broadcast}/results.csv",
    }


# user -> route -> expected status (and the role a 403 names)
MATRIX: dict[str | None, dict[str, tuple[int, Any]]] = {
    None: dict.fromkeys(
        ["list", "page", "summary", "errors", "results.csv", "errors.csv", "book results.csv"],
        (401, None),
    ),
    "stranger": dict.fromkeys(
        ["list", "page", "summary", "errors", "results.csv", "errors.csv", "book results.csv"],
        (403, "VIEWER"),
    )
    | {
        "results.csv": (403, "OPERATOR"),
        "errors.csv": (403, "OPERATOR"),
        "book results.csv": (403, "ADMIN"),
    },
    "viewer": dict.fromkeys(["list", "page", "summary", "errors"], (200, None))
    | {
        "results.csv": (403, "OPERATOR"),
        "errors.csv": (403, "OPERATOR"),
        "book results.csv": (403, "ADMIN"),
    },
    "operator": dict.fromkeys(
        ["list", "page", "summary", "errors", "results.csv", "errors.csv"], (200, None)
    )
    | {"book results.csv": (403, "ADMIN")},
    "book-editor": dict.fromkeys(
        ["list", "page", "summary", "errors", "results.csv", "errors.csv"], (200, None)
    )
    | {"book results.csv": (403, "ADMIN")},
    "admin": dict.fromkeys(
        ["list", "page", "summary", "errors", "results.csv", "errors.csv", "book results.csv"],
        (200, None),
    ),
}


@pytest.mark.parametrize(
    ("user", "route"),
    [(user, route) for user, routes in MATRIX.items() for route in routes],
)
def test_permission_matrix(site: tuple[Seeded, httpx.Client], user: str | None, route: str) -> None:
    """No actor is 401; a missing role is 403 naming it by its enum name; the rest is 200."""
    seeded, http = site
    status, role = MATRIX[user][route]
    response = _get(http, _routes(seeded)[route], user)
    assert response.status_code == status, response.text[:300]
    if role is not None:
        assert re.search(rf"\b{role}\b", response.text)


def test_summary_json_is_one_flat_object_of_spec_names(site: tuple[Seeded, httpx.Client]) -> None:
    """summary.json: SPEC 4 names, lower-case enum values, ISO times, non-zero reasons only."""
    seeded, http = site
    for bid in (seeded.csv_broadcast, seeded.sending_broadcast):
        got = _get(http, f"/broadcasts/{bid}/summary.json", "viewer").json()
        s = seeded.svc.summary(bid)
        for name in (
            "recipients",
            "scheduled",
            "sending",
            "succeeded",
            "errors",
            "delivered",
            "unacknowledged_errors",
        ):
            assert got[name] == getattr(s, name)
        assert got["status"] == s.status.value == s.status.value.lower()
        assert got["broadcast_id"] == str(bid)
        eta = got["estimated_completion_at"]
        if s.estimated_completion_at is None:
            assert eta is None
        else:
            assert datetime.fromisoformat(eta) == s.estimated_completion_at
        assert got["errors_by_reason"] == {k: v for k, v in s.errors_by_reason.items() if v}
        assert all(k in REASONS and v > 0 for k, v in got["errors_by_reason"].items())
        assert sum(got["errors_by_reason"].values()) == got["errors"]
        assert all(
            not isinstance(v, dict | list) for k, v in got.items() if k != "errors_by_reason"
        )


@pytest.mark.parametrize(
    ("encoding", "headers"), [("utf-8-sig", "ja"), ("utf-8-sig", "en"), ("cp932", "ja")]
)
def test_results_csv_is_exactly_the_service_export(
    site: tuple[Seeded, httpx.Client], encoding: str, headers: str
) -> None:
    """results.csv is byte for byte export_results_csv, an attachment named by the service."""
    seeded, http = site
    response = _get(
        http,
        f"/broadcasts/{seeded.csv_broadcast}/results.csv",
        "operator",
        encoding=encoding,
        headers=headers,
    )
    expected = io.BytesIO()
    seeded.svc.export_results_csv(
        seeded.csv_broadcast,
        expected,
        actor=ACTORS["operator"],
        encoding=encoding,
        headers=headers,
    )
    assert response.status_code == 200
    assert response.content == expected.getvalue()
    name = seeded.svc.results_file_name(seeded.csv_broadcast)
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert f"filename*=UTF-8''{quote(name, safe='')}" in disposition


def test_errors_csv_is_exactly_the_service_export(site: tuple[Seeded, httpx.Client]) -> None:
    """errors.csv is byte for byte export_unacknowledged_errors_csv."""
    seeded, http = site
    response = _get(http, f"/broadcasts/{seeded.csv_broadcast}/errors.csv", "admin")
    expected = io.BytesIO()
    seeded.svc.export_unacknowledged_errors_csv(
        seeded.csv_broadcast, expected, actor=ACTORS["admin"]
    )
    assert response.status_code == 200
    assert response.content == expected.getvalue()
    assert response.headers["content-disposition"].startswith("attachment;")


@pytest.mark.parametrize(
    "query",
    [
        {"status": "ERROR"},
        {"status": "unknown"},
        {"reason": "nonsense"},
        {"page": "0"},
        {"page": "x"},
    ],
)
def test_bad_query_values_are_400(site: tuple[Seeded, httpx.Client], query: dict[str, str]) -> None:
    """status takes lower-case DeliveryStatus names, reason a REASONS name, page from 1."""
    seeded, http = site
    response = _get(http, f"/broadcasts/{seeded.csv_broadcast}", "viewer", **query)
    assert response.status_code == 400


def test_filters_show_what_the_service_returns(site: tuple[Seeded, httpx.Client]) -> None:
    """The status and reason filters list the addresses the service lists."""
    seeded, http = site
    bid = seeded.csv_broadcast
    for reason in seeded.svc.summary(bid).errors_by_reason:
        html = _get(http, f"/broadcasts/{bid}", "viewer", status="error", reason=reason).text
        shown = re.findall(r'<tr data-address="([^"]+)"', html)
        expected = seeded.svc.recipients(bid, status=DeliveryStatus.ERROR, reason=reason)
        assert shown == [item.address for item in expected.items]
        assert shown


def test_unknown_broadcast_is_404(site: tuple[Seeded, httpx.Client]) -> None:
    """An id that names no broadcast, or is no id at all, is 404."""
    _, http = site
    assert (
        _get(http, "/broadcasts/00000000-0000-0000-0000-000000000000", "admin").status_code == 404
    )
    assert _get(http, "/broadcasts/not-an-id/summary.json", "admin").status_code == 404


def _form(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))


@pytest.fixture
def fresh() -> Iterator[tuple[Seeded, httpx.Client]]:
    seeded = seed(recipients=60)
    app = create_app(seeded.svc, actor_for=actor_for, secret_key=SECRET)
    try:
        with served(app) as url, httpx.Client(base_url=url) as http:
            yield seeded, http
    finally:
        seeded.svc.close()


def _post(http: httpx.Client, path: str, user: str | None, form: dict[str, str]) -> httpx.Response:
    headers = {"X-Test-User": user} if user else {}
    return http.post(path, headers=headers, data=form)


@pytest.mark.parametrize(
    ("who", "change"),
    [
        ("operator", lambda f: f.pop("csrf_token")),
        ("operator", lambda f: f.update(csrf_token="1." + "A" * 43)),
        ("operator", lambda f: f.update(csrf_token=f["csrf_token"][:-2] + "xx")),
        ("admin", lambda f: None),  # a token issued to another user
    ],
)
def test_acknowledge_without_a_valid_csrf_token_is_403_and_records_nothing(
    fresh: tuple[Seeded, httpx.Client], who: str, change: Any
) -> None:
    """A missing, forged, altered or someone else's token is refused before anything is written."""
    seeded, http = fresh
    bid = seeded.csv_broadcast
    form = _form(_get(http, f"/broadcasts/{bid}/errors", "operator").text)
    change(form)
    before = seeded.svc.summary(bid).unacknowledged_errors
    response = _post(http, f"/broadcasts/{bid}/errors/acknowledge", who, form)
    assert response.status_code == 403
    assert seeded.svc.summary(bid).unacknowledged_errors == before > 0


def test_an_expired_csrf_token_is_refused(fresh: tuple[Seeded, httpx.Client]) -> None:
    """Tokens age by the service clock: nine hours later the form must be reloaded."""
    seeded, http = fresh
    bid = seeded.csv_broadcast
    form = _form(_get(http, f"/broadcasts/{bid}/errors", "operator").text)
    seeded.clock.advance(timedelta(hours=9))
    response = _post(http, f"/broadcasts/{bid}/errors/acknowledge", "operator", form)
    assert response.status_code == 403
    assert "expired" in response.text


def _bounce_a_success(seeded: Seeded, bid: Any) -> None:
    """Turn one succeeded recipient of ``bid`` into an error, as a bounce would now."""
    from web_support import verp_token

    from broadcast_domain import BounceReport

    svc = seeded.svc
    late = next(i for i in svc.recipients(bid, status=DeliveryStatus.SUCCEEDED, per_page=5).items)
    message = next(m for m in seeded.transport.accepted if m.recipient == late.address)
    svc.record_bounce(
        BounceReport(
            recipient=late.address,
            status="5.1.1",
            diagnostic="550 5.1.1 user unknown",
            permanent=True,
            reported_at=seeded.clock(),
            verp_token=verp_token(message.envelope_from),
        )
    )


def test_acknowledge_all_as_of_the_page_and_303_back(fresh: tuple[Seeded, httpx.Client]) -> None:
    """A valid form acknowledges every error read with the page; later errors stay."""
    seeded, http = fresh
    svc, bid = seeded.svc, seeded.csv_broadcast
    page = _get(http, f"/broadcasts/{bid}/errors", "operator").text
    form = _form(page)
    assert set(form) == {"as_of", "csrf_token", "position"}
    assert datetime.fromisoformat(form["as_of"]).tzinfo is not None
    total = svc.summary(bid).unacknowledged_errors
    assert f"{total}件 確認済みにする" in page
    # An error recorded after the page was read is not acknowledged by it.
    _bounce_a_success(seeded, bid)
    response = _post(http, f"/broadcasts/{bid}/errors/acknowledge", "operator", form)
    assert response.status_code == 303
    assert response.headers["location"].endswith(f"/broadcasts/{bid}/errors?acknowledged={total}")
    assert svc.summary(bid).unacknowledged_errors == 1
    # A viewer with a valid token is still refused: acknowledging needs OPERATOR.
    viewer_form = _form(_get(http, f"/broadcasts/{bid}/errors", "viewer").text)
    refused = _post(http, f"/broadcasts/{bid}/errors/acknowledge", "viewer", viewer_form)
    assert refused.status_code == 403
    assert "OPERATOR" in refused.text
    assert svc.summary(bid).unacknowledged_errors == 1


def test_list_tabs_show_the_views(site: tuple[Seeded, httpx.Client]) -> None:
    """The tabs すべて / 配信中 / 配信済み list what list_broadcasts lists."""
    seeded, http = site
    from broadcast_domain import BroadcastView

    for view in BroadcastView:
        html = _get(http, f"/inboxes/{INBOX}/broadcasts", "viewer", view=view.value).text
        shown = re.findall(r'<tr data-broadcast="([^"]+)"', html)
        expected = seeded.svc.list_broadcasts(INBOX, view=view)
        assert shown == [str(item.broadcast_id) for item in expected.items]
    html = _get(http, f"/inboxes/{INBOX}/broadcasts", "viewer").text
    for label in ("すべて", "配信中", "配信済み", "宛先を確認する", "状況"):
        assert label in html


def test_healthz_and_metrics(site: tuple[Seeded, httpx.Client]) -> None:
    """/healthz reports the store and the lag; /metrics is Prometheus text with our names."""
    _, http = site
    health = http.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "store": "reachable", "projection_lag": 0}
    metrics = http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        "broadcast_messages_handed_over_total",
        "broadcast_messages_accepted_total",
        "broadcast_messages_refused_total",
        "broadcast_messages_deferred_total",
        "broadcast_projection_lag_events",
    ):
        assert name in metrics.text


def test_mounted_under_a_prefix_every_link_keeps_it(fresh: tuple[Seeded, httpx.Client]) -> None:
    """Mounted at /broadcast in a host's Starlette app, pages, links and static files work."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    seeded, _ = fresh
    inner = create_app(seeded.svc, actor_for=actor_for, secret_key=SECRET)
    host = Starlette(routes=[Mount("/broadcast", app=inner)])
    with served(host) as url, httpx.Client(base_url=url) as http:
        listing = _get(http, f"/broadcast/inboxes/{INBOX}/broadcasts", "viewer")
        assert listing.status_code == 200
        links = re.findall(r'href="(/[^"]*)"', listing.text)
        assert links
        assert all(link.startswith("/broadcast/") for link in links)
        for link in links:
            assert _get(http, link.replace("&amp;", "&"), "viewer").status_code == 200, link
        page = _get(http, f"/broadcast/broadcasts/{seeded.csv_broadcast}/errors", "operator")
        form_action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert form_action is not None
        response = _post(http, form_action.group(1), "operator", _form(page.text))
        assert response.status_code == 303
        assert response.headers["location"].startswith("/broadcast/broadcasts/")


def test_acknowledging_as_of_an_iso_time_alone_leaves_later_errors(
    fresh: tuple[Seeded, httpx.Client],
) -> None:
    """A form with only ``as_of`` (ISO 8601) acknowledges the errors recorded up to that time."""
    seeded, http = fresh
    svc, bid = seeded.svc, seeded.csv_broadcast
    form = _form(_get(http, f"/broadcasts/{bid}/errors", "operator").text)
    del form["position"]
    total = svc.summary(bid).unacknowledged_errors
    seeded.clock.advance(timedelta(minutes=1))
    _bounce_a_success(seeded, bid)
    response = _post(http, f"/broadcasts/{bid}/errors/acknowledge", "operator", form)
    assert response.status_code == 303
    assert response.headers["location"].endswith(f"acknowledged={total}")
    assert svc.summary(bid).unacknowledged_errors == 1
