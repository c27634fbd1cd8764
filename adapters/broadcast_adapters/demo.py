"""``broadcast-domain demo``: the whole product in one run, on a local SMTP server.

The run: configure an account, create a broadcast of N recipients with
Japanese and English names, send it through :class:`SmtpTransport` to an
:class:`SmtpSink` on 127.0.0.1 that rejects some addresses (550) and defers
some once (451), send the deferred ones again after their backoff, feed back
RFC 3464 delivery status notifications for some accepted messages (addressed
to their VERP return paths, one of them twice and one after the bounce
window), show the status bar and the month's count, write the result CSV and
the unacknowledged-errors CSV, acknowledge the errors, and verify the
projections against the event log.

Time: the service runs on a :class:`FakeClock` that starts at the real now
and is moved forward by hand, so the retry backoff (minutes) and the bounce
window (24 h) pass in an instant.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import attrs
from rich.console import Console
from rich.table import Table

from broadcast_adapters import cli_common as cli
from broadcast_adapters.console import progress_bar
from broadcast_adapters.smtp import SmtpTransport
from broadcast_adapters.smtp_sink import ReceivedMessage, SmtpSink
from broadcast_domain import (
    Actor,
    BounceOutcome,
    BounceReport,
    BroadcastService,
    Contact,
    CsvSource,
    DispatchReport,
    InboxRole,
)
from broadcast_domain.testing.clock import FakeClock
from broadcast_domain.testing.reports import report_on, verp_token_of

__all__ = ["DemoPlan", "DemoResult", "demo_contacts", "dsn_for", "run_demo"]

ACCOUNT = "demo-account"
INBOX = "support"
TIMEZONE = "Asia/Tokyo"
CSV_NAME = "members.csv"

_JA_NAMES = [
    ("山田", "太郎", "yamada.taro"),
    ("佐藤", "花子", "sato.hanako"),
    ("鈴木", "一郎", "suzuki.ichiro"),
    ("高橋", "美咲", "takahashi.misaki"),
    ("田中", "健太", "tanaka.kenta"),
    ("伊藤", "さくら", "ito.sakura"),
    ("渡辺", "翔", "watanabe.sho"),
    ("中村", "陽菜", "nakamura.hina"),
]
_EN_NAMES = [
    ("Smith", "Emma"),
    ("Johnson", "Oliver"),
    ("Brown", "Ava"),
    ("Taylor", "Noah"),
    ("Wilson", "Mia"),
]
_COMPANIES = [
    "株式会社サンプル商事",
    "ACME Corporation",
    "合同会社テスト",
    "Example Ltd.",
    "ｻﾝﾌﾟﾙ工業株式会社",  # half-width katakana, as old address books hold it
    "",
]
_DOMAINS = ["example.jp", "example.com", "example.net"]


@attrs.frozen
class DemoPlan:
    """Which demo recipients the local server rejects and which it defers once."""

    contacts: tuple[Contact, ...]
    rejected: frozenset[str]
    deferred: frozenset[str]


def demo_contacts(count: int) -> DemoPlan:
    """``count`` recipients, two in three with Japanese names; some rejected, some deferred."""
    contacts = []
    rejected = set()
    deferred = set()
    for i in range(count):
        domain = _DOMAINS[i % len(_DOMAINS)]
        company = _COMPANIES[i % len(_COMPANIES)]
        if i % 3 == 2:
            last, first = _EN_NAMES[i % len(_EN_NAMES)]
            local = f"{first.lower()}.{last.lower()}{i:05d}"
        else:
            last, first, romaji = _JA_NAMES[i % len(_JA_NAMES)]
            local = f"{romaji}{i:05d}"
        if i % 37 == 5:
            local = f"unknown{i:05d}"
            rejected.add(f"{local}@{domain}")
        elif i % 53 == 7:
            deferred.add(f"{local}@{domain}")
        contacts.append(
            Contact(f"{local}@{domain}", last_name=last, first_name=first, company=company)
        )
    return DemoPlan(tuple(contacts), frozenset(rejected), frozenset(deferred))


@attrs.frozen
class DemoDsn:
    """A delivery status notification about one message the local server accepted."""

    received: ReceivedMessage
    status: str
    reply_code: str
    text: str
    action: str
    arrival: datetime
    mta: str = "mx.example.net"

    @property
    def report(self) -> BounceReport:
        """The DSN's one per-recipient report, as the service takes it."""
        return BounceReport(
            recipient=self.received.recipient,
            status=self.status,
            diagnostic=f"{self.reply_code} {self.status} {self.text}",
            permanent=self.status.startswith("5"),
            reported_at=self.arrival,
            verp_token=verp_token_of(self.received.envelope_from),
            message_id=self.received.message_id,
            action=self.action,
            source="dsn",
            remote_mta=self.mta,
        )

    @property
    def raw(self) -> bytes:
        """The RFC 3464 message, addressed to the VERP return path it bounces to."""
        written = attrs.evolve(self.report, diagnostic=self.text)
        return report_on(self.received, written, reply_code=self.reply_code, line_ending="\n")


def dsn_for(received: ReceivedMessage, *, kind: str, arrival: datetime) -> DemoDsn:
    """A DSN of one of the demo's kinds: ``unknown``, ``full`` or ``delayed``."""
    rcpt = received.recipient
    if kind == "full":
        return DemoDsn(received, "5.2.2", "552", f"<{rcpt}>: Mailbox full", "failed", arrival)
    if kind == "delayed":
        return DemoDsn(
            received,
            "4.4.1",
            "451",
            f"<{rcpt}>: Connection timed out, still trying",
            "delayed",
            arrival,
        )
    return DemoDsn(
        received,
        "5.1.1",
        "550",
        f"<{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
        "failed",
        arrival,
    )


@attrs.frozen
class DemoResult:
    """How the demo ended: the broadcast it sent and whether the projections verified."""

    broadcast_id: UUID
    consistent: bool

    def __bool__(self) -> bool:
        return self.consistent


class _Steps:
    """Numbered step headings, each with how long it took."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.number = 0
        self.timings: list[tuple[str, float]] = []

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.number += 1
        self.out.rule(f"[bold]{self.number}. {title}", align="left")
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        self.timings.append((title, elapsed))
        self.out.print(f"[dim]({elapsed:.2f} s)[/dim]")


def _write_members_csv(path: Path, contacts: Sequence[Contact]) -> None:
    # The demo's own file, so the cells are known to need no quoting.
    lines = ["姓,名,メールアドレス,会社名"]
    lines += [f"{c.last_name},{c.first_name},{c.address},{c.company}" for c in contacts]
    # Two rows a real export from an address book often has: a typo and a repeat.
    lines.insert(4, "誤記,太郎,not-an-address,株式会社サンプル商事")
    if contacts:
        first = contacts[0]
        lines.append(f"{first.last_name},{first.first_name},{first.address},{first.company}")
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8-sig"))


def _dispatch(
    svc: BroadcastService, transport: SmtpTransport, err: Console, label: str, total: int
) -> DispatchReport:
    with progress_bar(err, "msg") as bar:
        task = bar.add_task(label, total=total)

        def progress(report: DispatchReport) -> None:
            bar.update(task, completed=report.sent)

        report = svc.dispatch_due(transport, on_progress=progress)
        bar.update(task, completed=report.sent, total=max(total, report.sent))
    return report


def _dispatch_line(report: DispatchReport) -> str:
    return (
        f"handed over {report.sent:,}: {report.succeeded:,} accepted, "
        f"{report.errors:,} refused (5xx), {report.retried:,} deferred (4xx, retried later)"
    )


def run_demo(  # noqa: PLR0915 - the demo is one narrative, step by step
    *,
    settings: cli.Settings,
    url: str,
    recipients: int,
    out_dir: Path,
    connections: int,
    out: Console,
    err: Console,
) -> DemoResult:
    """Run the demo on the store at ``url``; falsy when verification found differences."""
    started = time.perf_counter()
    clock = FakeClock(datetime.now(UTC))
    zone = ZoneInfo(TIMEZONE)
    steps = _Steps(out)
    plan = demo_contacts(recipients)
    out_dir.mkdir(parents=True, exist_ok=True)

    out.print(f"Store: {url}")
    key = cli.key_file(url)
    if key is not None:
        out.print(f"Signing key: {key}")

    sink = SmtpSink(reject=plan.rejected, defer=dict.fromkeys(plan.deferred, 1))
    with (
        cli.open_service(settings, url, need_key=True, create=True, clock=clock) as svc,
        sink,
        SmtpTransport("127.0.0.1", sink.port, connections=connections, timeout=30) as transport,
    ):
        actor = Actor(
            settings.user,
            inbox_roles={INBOX: InboxRole.ADMIN},
            address_book_roles={},
        )
        with steps.step("Account and recipients"):
            limit = recipients + 1_000
            svc.configure_account(ACCOUNT, monthly_limit=limit, timezone=TIMEZONE)
            out.print(f"Account {ACCOUNT}: monthly limit {limit:,}, time zone {TIMEZONE}")
            members = out_dir / CSV_NAME
            _write_members_csv(members, plan.contacts)
            imported = svc.parse_recipient_csv(members.read_bytes())
            out.print(
                f"{members}: {len(imported.contacts):,} contacts, "
                f"{len(imported.problems)} problems:"
            )
            for problem in imported.problems:
                out.print(f"  line {problem.line}: {problem.reason}", markup=False)
            bid = svc.create_broadcast(
                account_id=ACCOUNT,
                inbox_id=INBOX,
                sender="news@example.com",
                subject="【重要】メンテナンスのお知らせ / Scheduled maintenance",
                text_body=(
                    "いつもご利用いただきありがとうございます。\n"
                    "11月の定期メンテナンスについてお知らせいたします。\n\n"
                    "Thank you for using our service. This is a notice of our "
                    "scheduled maintenance.\n"
                ),
                source=CsvSource(CSV_NAME),
                recipients=imported.contacts,
                scheduled_at=clock(),
                actor=actor,
            )
            out.print(f"Broadcast {bid}: {len(imported.contacts):,} recipients scheduled")

        with steps.step(f"Sending through SMTP to 127.0.0.1:{sink.port}"):
            sending_started = clock()
            first = _dispatch(svc, transport, err, "Sending", len(imported.contacts))
            out.print(_dispatch_line(first))

        with steps.step("Retrying the deferred ones after their backoff (clock +6 min)"):
            clock.advance(minutes=6)
            second = _dispatch(svc, transport, err, "Retrying", first.retried)
            out.print(_dispatch_line(second))

        with steps.step("Failure reports (RFC 3464 DSNs to the VERP return paths)"):
            outcomes = _feed_reports(svc, sink, clock, out)
            table = Table(title="Report outcomes", title_justify="left")
            table.add_column("outcome")
            table.add_column("reports", justify="right")
            for kind, count in sorted(outcomes.items()):
                table.add_row(kind, str(count))
            out.print(table)

        with steps.step("Status"):
            # The month the recipients were delivered in, whatever the clock says now.
            cli.show_status(svc, bid, out, month_of=sending_started)

        with steps.step("Exports"):
            for errors_only in (False, True):
                name = svc.results_file_name(bid, "errors" if errors_only else "results")
                target = out_dir / name
                rows = cli.export_csv(
                    svc,
                    bid,
                    target,
                    actor=actor,
                    errors_only=errors_only,
                    encoding="utf-8-sig",
                    headers="ja",
                    console=err,
                )
                out.print(f"Wrote {rows:,} rows to {target}")

        with steps.step("Acknowledging the errors"):
            page = svc.unacknowledged_errors(bid)
            done = svc.acknowledge_errors(bid, actor=actor, as_of=page.as_of)
            out.print(f"Acknowledged {done:,} of {page.total:,} unacknowledged errors")
            summary = svc.summary(bid)
            out.print(f"Unacknowledged errors now: {summary.unacknowledged_errors:,}")

        with steps.step("Verifying the projections against the event log"):
            diffs = svc.verify_projections()
            consistent = not cli.report_differences(diffs, out)

    elapsed = time.perf_counter() - started
    out.rule()
    out.print(
        f"Demo finished in {elapsed:.1f} s ({recipients:,} recipients, "
        f"local time {clock().astimezone(zone):%Y/%m/%d %H:%M %Z} on the demo clock)."
    )
    out.print(f"Look again: broadcast-domain --db {url} status {bid}")
    return DemoResult(bid, consistent)


def _feed_reports(
    svc: BroadcastService, sink: SmtpSink, clock: FakeClock, out: Console
) -> Counter[str]:
    """DSNs for about one accepted message in 40, a duplicate, a delayed and a late one."""
    accepted = sink.messages
    chosen = accepted[3::40]
    dsns = [
        dsn_for(m, kind="full" if i % 4 == 3 else "unknown", arrival=clock())
        for i, m in enumerate(chosen)
    ]
    outcomes: Counter[str] = Counter()
    clock.advance(minutes=20)
    for dsn in dsns:
        outcomes.update(o.kind for o in _record(svc, dsn))
    if dsns:
        # Mail systems resend; the same report twice must count once.
        outcomes.update(o.kind for o in _record(svc, dsns[0]))
    taken = set(chosen)
    rest = [m for m in accepted if m not in taken]
    if rest:
        outcomes.update(
            o.kind for o in _record(svc, dsn_for(rest[0], kind="delayed", arrival=clock()))
        )
    if len(rest) > 1:
        clock.advance(hours=25)
        out.print("Clock +25 h: the next report arrives after the 24 h bounce window")
        outcomes.update(
            o.kind for o in _record(svc, dsn_for(rest[1], kind="unknown", arrival=clock()))
        )
    return outcomes


def _record(svc: BroadcastService, dsn: DemoDsn) -> list[BounceOutcome]:
    # The raw message goes through the same parser and correlation as `ingest`.
    return svc.record_bounce_message(dsn.raw)
