"""``create_app``: the routes of SPEC section 5 on Starlette, server-rendered with Jinja2.

Every service call blocks (SQLite, PostgreSQL, certificate fetches), so each
runs in Starlette's thread pool and the event loop stays free. The app reads
the time from ``svc.now()`` only: signature freshness, ``received_at`` of
webhook reports and CSRF token ages all follow the service's clock, so a host
(or a test) that gives the service a clock moves the whole app with it.

Errors become status codes in one place (:func:`_fail`): no actor 401, a
missing role 403 naming it, a bad value 400, an unknown broadcast 404, a store
that cannot be reached 503. A webhook is answered 2xx once its reports are
recorded, whatever their outcome, so the provider stops resending it.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import tempfile
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, cast
from urllib.parse import parse_qs, quote, urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

import attrs
import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from broadcast_adapters.metrics import CONTENT_TYPE, Metrics
from broadcast_adapters.web.csrf import CsrfTokens
from broadcast_domain import (
    REASONS,
    Actor,
    BounceOutcome,
    BounceReport,
    BroadcastError,
    BroadcastService,
    BroadcastStatus,
    BroadcastView,
    CsvExportError,
    DeliveryStatus,
    InboxRole,
    InvalidInput,
    InvalidSignature,
    PermissionDenied,
    UnknownBroadcast,
)

__all__ = ["SubscriptionConfirmer", "create_app"]

log = logging.getLogger("broadcast_adapters.web")

SubscriptionConfirmer = Callable[[str], None]
ActorResolver = Callable[[Request], Actor | None]

_HERE = Path(__file__).parent
_SPOOL_BYTES = 8 * 1024 * 1024  # exports larger than this spill to a temporary file
_CHUNK = 64 * 1024
_POLL_SECONDS = 3
_VIEWS = {"all": BroadcastView.ALL, "sending": BroadcastView.SENDING, "sent": BroadcastView.SENT}
_TABS = [("all", "すべて", "All"), ("sending", "配信中", "Sending"), ("sent", "配信済み", "Sent")]
_STATUSES = {s.value: s for s in DeliveryStatus}
_STATUS_EN = {
    DeliveryStatus.SCHEDULED: "Scheduled",
    DeliveryStatus.SENDING: "Sending",
    DeliveryStatus.SUCCEEDED: "Succeeded",
    DeliveryStatus.ERROR: "Error",
}
_BROADCAST_EN = {
    BroadcastStatus.SCHEDULED: "Scheduled",
    BroadcastStatus.SENDING: "Sending",
    BroadcastStatus.SENT: "Sent",
    BroadcastStatus.CANCELLED: "Cancelled",
    BroadcastStatus.PAUSED: "Paused",
}
_ROLE_JA = {"VIEWER": "閲覧者", "OPERATOR": "オペレーター", "ADMIN": "管理者", "OWNER": "オーナー"}
_CSV_TYPES = {"utf-8-sig": "text/csv; charset=utf-8", "cp932": "text/csv; charset=shift_jis"}


class HttpError(Exception):
    """A refusal with its status code and a one-line message (and the role, for 403)."""

    def __init__(self, status: int, message: str, *, role: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.role = role


class _TooLarge(HttpError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit:,} bytes")


class _StoreDown(Exception):
    """The store raised something that is not a user's mistake: answer 503."""


@attrs.frozen
class _Settings:
    svc: BroadcastService
    actor_for: ActorResolver
    csrf: CsrfTokens
    webhooks: Mapping[str, Any]
    max_body_bytes: int
    metrics: Metrics
    templates: jinja2.Environment
    confirm_subscriptions: bool
    confirmer: SubscriptionConfirmer


def _lag(svc: BroadcastService) -> float:
    # A scrape must answer even while the store does not: NaN is Prometheus' "unknown".
    try:
        return float(svc.projection_lag())
    except Exception:
        return math.nan


def _fetch_subscribe_url(url: str) -> None:
    # SesWebhook has validated the URL (https, an sns.<region>.amazonaws.com host).
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
        response.read(64 * 1024)


def create_app(
    svc: BroadcastService,
    *,
    actor_for: ActorResolver,
    secret_key: bytes,
    webhooks: Mapping[str, Any] | None = None,
    max_body_bytes: int = 1_000_000,
    confirm_subscriptions: bool = False,
    subscription_confirmer: SubscriptionConfirmer | None = None,
    metrics: Metrics | None = None,
) -> Starlette:
    """The ASGI application of SPEC section 5 over ``svc``.

    ``actor_for(request)`` is the host's login: the ``Actor`` of the request, or
    None (answered 401). ``secret_key`` (16+ random bytes) signs CSRF tokens.
    ``webhooks`` maps ``"ses"``, ``"sendgrid"``, ``"mailgun"``, ``"postmark"``
    to configured normalisers; a provider left out answers 404. An SNS
    ``SubscriptionConfirmation`` is always logged; it is confirmed (its
    ``SubscribeURL`` fetched with ``subscription_confirmer``, an HTTPS GET by
    default) only with ``confirm_subscriptions=True`` or when the SES webhook
    itself has a true ``confirm_subscriptions`` attribute.
    """
    if not callable(actor_for):
        raise InvalidInput("actor_for must be a callable taking the request", field="actor_for")
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
        raise InvalidInput("max_body_bytes must be a positive int", field="max_body_bytes")
    if max_body_bytes <= 0:
        raise InvalidInput("max_body_bytes must be a positive int", field="max_body_bytes")
    try:
        csrf = CsrfTokens(secret_key)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="secret_key") from None
    hooks = dict(webhooks or {})
    unknown = set(hooks) - {"ses", "sendgrid", "mailgun", "postmark"}
    if unknown:
        raise InvalidInput(
            f"webhooks has unknown providers {sorted(unknown)}; use ses, sendgrid, mailgun, "
            "postmark",
            field="webhooks",
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    settings = _Settings(
        svc=svc,
        actor_for=actor_for,
        csrf=csrf,
        webhooks=hooks,
        max_body_bytes=max_body_bytes,
        metrics=metrics or Metrics(projection_lag=lambda: _lag(svc)),
        templates=env,
        confirm_subscriptions=confirm_subscriptions,
        confirmer=subscription_confirmer or _fetch_subscribe_url,
    )

    def bind(handler: Callable[[_Settings, Request], Awaitable[Response]]) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(settings, request)
            except Exception as exc:  # every refusal leaves through one mapping
                return _fail(settings, request, exc)

        return endpoint

    routes = [
        Route("/inboxes/{inbox_id}/broadcasts", bind(_broadcast_list), methods=["GET"]),
        Route("/broadcasts/{broadcast_id}", bind(_broadcast_page), methods=["GET"]),
        Route("/broadcasts/{broadcast_id}/summary.json", bind(_summary_json), methods=["GET"]),
        Route("/broadcasts/{broadcast_id}/results.csv", bind(_results_csv), methods=["GET"]),
        Route("/broadcasts/{broadcast_id}/errors", bind(_errors_page), methods=["GET"]),
        Route("/broadcasts/{broadcast_id}/errors.csv", bind(_errors_csv), methods=["GET"]),
        Route(
            "/broadcasts/{broadcast_id}/errors/acknowledge",
            bind(_acknowledge),
            methods=["POST"],
        ),
        Route("/webhooks/{provider}", bind(_webhook), methods=["POST"]),
        Route("/healthz", bind(_healthz), methods=["GET"]),
        Route("/metrics", bind(_metrics), methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.metrics = settings.metrics
    return app


# --------------------------------------------------------------------------- errors


def _role_of(exc: PermissionDenied) -> str:
    return exc.required.rpartition(".")[2] or exc.required


def _store_failure(exc: BaseException) -> bool:
    # StoreUnavailable is the core's name for it; the drivers' own errors (sqlite3,
    # psycopg, eventsourcing's) are not public names, so anything else that is not
    # a BroadcastError is taken as the store failing: 503 makes a provider retry,
    # which loses nothing because recording is idempotent.
    if isinstance(exc, _StoreDown | sqlite3.Error | OSError):
        return True
    if isinstance(exc, BroadcastError):
        return type(exc).__name__ in {"StoreUnavailable", "ConcurrencyConflict"}
    return not isinstance(exc, HttpError)


def _fail(settings: _Settings, request: Request, exc: Exception) -> Response:
    if isinstance(exc, HttpError):
        error = exc
    elif isinstance(exc, PermissionDenied):
        error = HttpError(403, str(exc), role=_role_of(exc))
    elif isinstance(exc, UnknownBroadcast):
        error = HttpError(404, str(exc))
    elif isinstance(exc, CsvExportError):
        error = HttpError(422, str(exc))
    elif isinstance(exc, InvalidInput) and not _store_failure(exc):
        error = HttpError(400, str(exc))
    elif _store_failure(exc):
        log.error(
            "store unavailable on %s %s: %s",
            request.method,
            request.url.path,
            exc,
            exc_info=exc,
        )
        error = HttpError(503, f"the store is unavailable, try again later ({type(exc).__name__})")
    else:
        error = HttpError(400, str(exc))
    path = request.url.path
    headers = {"Retry-After": "30"} if error.status == 503 else {}
    if error.status == 401 and path.startswith("/webhooks/postmark"):
        headers["WWW-Authenticate"] = 'Basic realm="webhooks"'
    if path.startswith(("/webhooks/", "/healthz")) or path.endswith(".json"):
        body: dict[str, Any] = {"error": error.message, "status": error.status}
        if error.role:
            body["required_role"] = error.role
        return JSONResponse(body, status_code=error.status, headers=headers)
    page = settings.templates.get_template("error.html").render(
        status=error.status,
        message=error.message,
        role=error.role,
        role_ja=_ROLE_JA.get(error.role or "", ""),
        static=_static(request),
    )
    return HTMLResponse(page, status_code=error.status, headers=headers)


# --------------------------------------------------------------------------- helpers


def _static(request: Request) -> str:
    # Relative to where the app is mounted, so a host may mount it under a prefix.
    return f"{request.scope.get('root_path', '')}/static"


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(fn, *args, **kwargs)


async def _actor(settings: _Settings, request: Request) -> Actor:
    # In the thread pool: a host's resolver may look the session up in a database.
    actor = await _call(settings.actor_for, request)
    if actor is None:
        raise HttpError(401, "ログインが必要です (authentication required)")
    if not isinstance(actor, Actor):
        raise TypeError(f"actor_for returned {type(actor).__name__}, not an Actor or None")
    return actor


def _require_viewer(actor: Actor, inbox_id: str) -> None:
    role = actor.inbox_role(inbox_id)
    if role is None or role < InboxRole.VIEWER:
        raise PermissionDenied(
            f"viewing the broadcasts of inbox {inbox_id!r} needs inbox role VIEWER or above; "
            f"user {actor.user_id!r} has no role there",
            required="InboxRole.VIEWER",
        )


def _broadcast_id(request: Request) -> UUID:
    text = request.path_params["broadcast_id"]
    try:
        return UUID(text)
    except ValueError:
        raise HttpError(404, f"{text!r} is not a broadcast id") from None


def _page(request: Request) -> int:
    text = request.query_params.get("page", "1") or "1"
    if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
        raise HttpError(400, f"page must be a whole number from 1, got {text!r}")
    return int(text)


def _choice(request: Request, name: str, allowed: Mapping[str, Any], default: str) -> str:
    value = request.query_params.get(name, default) or default
    if value not in allowed:
        raise HttpError(400, f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _zone(svc: BroadcastService, account_id: str) -> ZoneInfo:
    account = svc.account(account_id)
    return ZoneInfo(account.timezone if account is not None else "UTC")


def _local(moment: datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return ""
    return moment.astimezone(zone).strftime("%Y/%m/%d %H:%M:%S")


def _summary_dict(summary: Any) -> dict[str, Any]:
    """``summary()`` as one flat JSON object: enum values, ISO 8601 times, ids as text."""

    def value(v: Any) -> Any:
        if isinstance(v, UUID):
            return str(v)
        if isinstance(v, datetime):
            return v.isoformat()
        if isinstance(v, BroadcastStatus | DeliveryStatus):
            return v.value
        return v

    out: dict[str, Any] = {}
    for field in attrs.fields(type(summary)):
        out[field.name] = value(getattr(summary, field.name))
    by_reason = summary.errors_by_reason
    out["errors_by_reason"] = {k: int(v) for k, v in sorted(by_reason.items()) if v}
    return out


def _bar(summary: Any) -> dict[str, Any]:
    total = max(summary.recipients, 1)

    def pct(n: int) -> str:
        return f"{100 * n / total:.2f}"

    return {
        "succeeded": pct(summary.succeeded),
        "errors": pct(summary.errors),
        "sending": pct(summary.sending),
        "scheduled": pct(summary.scheduled),
    }


def _reason_rows(summary: Any) -> list[dict[str, Any]]:
    by_reason = summary.errors_by_reason
    rows = []
    for name, count in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
        if count:
            en, ja = REASONS.get(name, (name, name))
            rows.append({"name": name, "en": en, "ja": ja, "count": count})
    return rows


def _render(settings: _Settings, request: Request, name: str, **context: Any) -> HTMLResponse:
    page = settings.templates.get_template(name).render(
        static=_static(request), base=_base(request), **context
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


def _query(**params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "", 1) or k == "view"}
    return urlencode(kept)


# --------------------------------------------------------------------------- screens


async def _broadcast_list(settings: _Settings, request: Request) -> Response:
    svc = settings.svc
    inbox_id = request.path_params["inbox_id"]
    actor = await _actor(settings, request)
    _require_viewer(actor, inbox_id)
    view = _choice(request, "view", _VIEWS, "all")
    page_no = _page(request)
    page = await _call(svc.list_broadcasts, inbox_id, view=_VIEWS[view], page=page_no)
    rows = []
    for item in page.items:
        b = await _call(svc.broadcast, item.broadcast_id)
        zone = await _call(_zone, svc, b.account_id)
        rows.append(
            {
                "id": str(item.broadcast_id),
                "subject": item.subject,
                "status": item.status.value,
                "status_ja": item.status.label,
                "status_en": _BROADCAST_EN[item.status],
                "created_at": _local(item.created_at, zone),
                "scheduled_at": _local(item.scheduled_at, zone),
                "recipients": item.recipients,
                "delivered": item.delivered,
                "errors": item.errors,
            }
        )
    return _render(
        settings,
        request,
        "list.html",
        inbox_id=inbox_id,
        tabs=_TABS,
        view=view,
        rows=rows,
        page=page,
        user=actor.user_id,
        prev_q=_query(view=view, page=page.page - 1),
        next_q=_query(view=view, page=page.page + 1),
    )


async def _load(settings: _Settings, request: Request) -> tuple[Actor, UUID, Any]:
    actor = await _actor(settings, request)
    bid = _broadcast_id(request)
    b = await _call(settings.svc.broadcast, bid)
    _require_viewer(actor, b.inbox_id)
    return actor, bid, b


def _status_view(summary: Any, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "summary": summary,
        "bar": _bar(summary),
        "status_ja": summary.status.label,
        "status_en": _BROADCAST_EN[summary.status],
        "eta": _local(summary.estimated_completion_at, zone),
        "reasons": _reason_rows(summary),
        "sending": summary.status is BroadcastStatus.SENDING,
    }


async def _broadcast_page(settings: _Settings, request: Request) -> Response:
    svc = settings.svc
    actor, bid, b = await _load(settings, request)
    keyword = request.query_params.get("q", "").strip()
    status_name = _choice(request, "status", {"": None, **_STATUSES}, "")
    reason = _choice(request, "reason", {"": None, **REASONS}, "")
    page_no = _page(request)
    filters: dict[str, Any] = {"keyword": keyword or None, "page": page_no, "per_page": 50}
    if status_name:
        filters["status"] = _STATUSES[status_name]
    if reason:
        filters["reason"] = reason
    zone = await _call(_zone, svc, b.account_id)
    summary = await _call(svc.summary, bid)
    page = await _call(svc.recipients, bid, **filters)
    items = [
        {
            "status": item.status.value,
            "status_ja": item.status.label,
            "status_en": _STATUS_EN[item.status],
            "acknowledged_at": _local(item.acknowledged_at, zone),
            "last_name": item.last_name,
            "first_name": item.first_name,
            "address": item.address,
            "company": item.company,
            "reason": _reason_label(item.reason),
            "detail_message": item.detail_message,
            "status_updated_at": _local(item.status_updated_at, zone),
        }
        for item in page.items
    ]
    params = {"q": keyword, "status": status_name, "reason": reason}
    return _render(
        settings,
        request,
        "broadcast.html",
        b=b,
        bid=str(bid),
        inbox_id=b.inbox_id,
        user=actor.user_id,
        items=items,
        page=page,
        keyword=keyword,
        status_name=status_name,
        reason=reason,
        statuses=[(s.value, s.label, _STATUS_EN[s]) for s in DeliveryStatus],
        reason_names=[(k, en, ja) for k, (en, ja) in REASONS.items()],
        prev_q=_query(**params, page=page.page - 1),
        next_q=_query(**params, page=page.page + 1),
        poll_seconds=_POLL_SECONDS,
        **_status_view(summary, zone),
    )


def _reason_label(name: str | None) -> dict[str, str] | None:
    if not name:
        return None
    en, ja = REASONS.get(name, (name, name))
    return {"name": name, "en": en, "ja": ja}


async def _summary_json(settings: _Settings, request: Request) -> Response:
    _, bid, _ = await _load(settings, request)
    summary = await _call(settings.svc.summary, bid)
    return JSONResponse(_summary_dict(summary), headers={"Cache-Control": "no-store"})


def _as_of_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _parse_as_of(text: str) -> Any:
    text = text.strip()
    if not text:
        raise HttpError(400, "as_of is missing: acknowledge from the errors page")
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HttpError(400, f"as_of is not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise HttpError(400, f"as_of has no time zone: {text!r}")
    return moment


async def _errors_page(settings: _Settings, request: Request) -> Response:
    svc = settings.svc
    actor, bid, b = await _load(settings, request)
    page_no = _page(request)
    zone = await _call(_zone, svc, b.account_id)
    page = await _call(svc.unacknowledged_errors, bid, page=page_no)
    # The moment the list was read, as SPEC 5's ``as_of`` (ISO 8601), and the log
    # position it was read at: the form posts both, and the position wins, so an
    # error recorded after the read in the same clock tick stays unacknowledged.
    read_at = svc.now()
    items = [
        {
            "last_name": item.last_name,
            "first_name": item.first_name,
            "address": item.address,
            "company": item.company,
            "reason": _reason_label(item.reason),
            "detail_message": item.detail_message,
            "status_updated_at": _local(item.status_updated_at, zone),
        }
        for item in page.items
    ]
    done = request.query_params.get("acknowledged", "")
    return _render(
        settings,
        request,
        "errors.html",
        b=b,
        bid=str(bid),
        inbox_id=b.inbox_id,
        user=actor.user_id,
        items=items,
        page=page,
        as_of=read_at.isoformat(),
        position=_as_of_text(page.as_of),
        csrf_token=settings.csrf.issue(actor.user_id, f"acknowledge:{bid}", settings.svc.now()),
        acknowledged=int(done) if done.isdigit() else None,
        prev_q=_query(page=page.page - 1),
        next_q=_query(page=page.page + 1),
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) past ``limit`` before or while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise HttpError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise _TooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _acknowledge(settings: _Settings, request: Request) -> Response:
    svc = settings.svc
    actor = await _actor(settings, request)
    bid = _broadcast_id(request)
    body = await _read_body(request, settings.max_body_bytes)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HttpError(400, "the form must be sent as application/x-www-form-urlencoded")
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpError(400, f"the form is not readable: {exc}") from None
    token = (form.get("csrf_token") or [""])[0]
    problem = settings.csrf.check(token, actor.user_id, f"acknowledge:{bid}", svc.now())
    if problem is not None:
        raise HttpError(403, problem)
    position = (form.get("position") or [""])[0].strip()
    as_of = int(position) if position.isdigit() else _parse_as_of((form.get("as_of") or [""])[0])
    done = await _call(svc.acknowledge_errors, bid, actor=actor, as_of=as_of)
    log.info("acknowledged %d errors of broadcast %s by %s", done, bid, actor.user_id)
    target = f"{_base(request)}/broadcasts/{bid}/errors?acknowledged={done}"
    return RedirectResponse(target, status_code=303)


# --------------------------------------------------------------------------- downloads


def _disposition(name: str) -> str:
    """``attachment`` with the name; RFC 6266 ``filename*`` when it is not plain ASCII."""
    plain = name.isascii() and all(c not in '"\\' and c.isprintable() for c in name)
    if plain:
        return f'attachment; filename="{name}"'
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def _download(settings: _Settings, request: Request, kind: str) -> Response:
    svc = settings.svc
    actor = await _actor(settings, request)
    bid = _broadcast_id(request)
    encoding = _choice(request, "encoding", _CSV_TYPES, "utf-8-sig")
    headers = _choice(request, "headers", {"ja": None, "en": None}, "ja")
    export = svc.export_results_csv if kind == "results" else svc.export_unacknowledged_errors_csv
    # Spooled: the export finishes (or refuses, before a byte is sent) ahead of the
    # response, so a refusal is a proper status code, never half a download.
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 - closed below
    try:
        rows = await _call(
            export,
            bid,
            cast(BinaryIO, spool),
            actor=actor,
            encoding=encoding,
            headers=headers,
        )
        name = await _call(svc.results_file_name, bid, kind)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    log.info("exported %d %s rows of broadcast %s for %s", rows, kind, bid, actor.user_id)
    return StreamingResponse(
        _drain(cast(IO[bytes], spool)),
        media_type=_CSV_TYPES[encoding],
        headers={"Content-Disposition": _disposition(name), "Cache-Control": "no-store"},
    )


async def _drain(spool: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await run_in_threadpool(spool.read, _CHUNK):
            yield chunk
    finally:
        spool.close()


async def _results_csv(settings: _Settings, request: Request) -> Response:
    return await _download(settings, request, "results")


async def _errors_csv(settings: _Settings, request: Request) -> Response:
    return await _download(settings, request, "errors")


# --------------------------------------------------------------------------- webhooks


def _normalise(
    settings: _Settings, provider: str, hook: Any, body: bytes, headers: dict[str, str]
) -> tuple[list[BounceReport], datetime]:
    now = settings.svc.now()
    if provider == "ses" and hasattr(hook, "handle"):
        result = hook.handle(body, headers, now)
        url = getattr(result, "subscribe_url", None)
        if url:
            _subscription(settings, hook, result, url)
        return list(result.reports), now
    return list(hook.normalise(body, headers, now)), now


def _subscription(settings: _Settings, hook: Any, result: Any, url: str) -> None:
    topic = getattr(result.message, "topic_arn", "?")
    allowed = (
        settings.confirm_subscriptions or getattr(hook, "confirm_subscriptions", False) is True
    )
    if not allowed:
        log.warning(
            "SNS subscription confirmation for topic %s received and NOT confirmed "
            "(confirm_subscriptions is off); confirm it by opening %s",
            topic,
            url,
        )
        return
    log.info("SNS subscription confirmation for topic %s: confirming", topic)
    try:
        settings.confirmer(url)
    except Exception as exc:
        # SNS re-sends the confirmation; answering 503 asks it to.
        raise _StoreDown(f"could not confirm the SNS subscription: {exc}") from exc
    log.info("SNS subscription for topic %s confirmed", topic)


def _record(settings: _Settings, reports: list[BounceReport], now: datetime) -> list[BounceOutcome]:
    outcomes = []
    for report in reports:
        try:
            outcomes.append(settings.svc.record_bounce(report, received_at=now))
        except InvalidInput:
            raise
        except BroadcastError as exc:
            if type(exc).__name__ in {"StoreUnavailable", "ConcurrencyConflict"}:
                raise _StoreDown(str(exc)) from exc
            raise
        except Exception as exc:
            raise _StoreDown(f"{type(exc).__name__}: {exc}") from exc
    return outcomes


def _take_in(
    settings: _Settings, provider: str, hook: Any, body: bytes, headers: dict[str, str]
) -> list[BounceOutcome]:
    """Verify and normalise the request, then record its reports (in a worker thread)."""
    try:
        reports, now = _normalise(settings, provider, hook, body, headers)
    except InvalidSignature as exc:
        raise HttpError(401 if provider == "postmark" else 403, str(exc)) from None
    except BroadcastError as exc:  # InvalidInput and any other refusal of the payload
        raise HttpError(400, str(exc)) from None
    return _record(settings, reports, now)


async def _webhook(settings: _Settings, request: Request) -> Response:
    provider = request.path_params["provider"]
    status = 500
    try:
        # The size first: nothing else is looked at for a body over the limit.
        body = await _read_body(request, settings.max_body_bytes)
        hook = settings.webhooks.get(provider)
        if hook is None:
            raise HttpError(404, f"no {provider!r} webhook is configured in this app")
        headers = {k.lower(): v for k, v in request.headers.items()}
        # One trip to the thread pool for both steps: each hand-off between the event
        # loop and a worker thread costs a GIL switch, a large share of a small request.
        outcomes = await _call(_take_in, settings, provider, hook, body, headers)
        settings.metrics.observe_outcomes(outcomes)
        kinds: dict[str, int] = {}
        for outcome in outcomes:
            kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
        status = 200
        log.info("webhook %s: %d reports recorded %s", provider, len(outcomes), kinds)
        return JSONResponse({"recorded": len(outcomes), "outcomes": kinds})
    except HttpError as exc:
        status = exc.status
        log.warning("webhook %s refused with %d: %s", provider, exc.status, exc.message)
        raise
    except Exception as exc:
        status = 503 if _store_failure(exc) else 400
        raise
    finally:
        if provider in ("ses", "sendgrid", "mailgun", "postmark"):
            settings.metrics.webhook_requests.labels(provider=provider, status=str(status)).inc()


# --------------------------------------------------------------------------- operations


async def _healthz(settings: _Settings, request: Request) -> Response:
    try:
        lag = await _call(settings.svc.projection_lag)
    except Exception as exc:
        log.error("health check: store unreachable: %s", exc)
        return JSONResponse(
            {"status": "unavailable", "store": "unreachable", "error": str(exc)},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "store": "reachable", "projection_lag": lag})


async def _metrics(settings: _Settings, request: Request) -> Response:
    text = await _call(settings.metrics.exposition)
    return Response(text, media_type=CONTENT_TYPE)
