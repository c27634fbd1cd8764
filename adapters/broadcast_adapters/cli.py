"""The ``broadcast-domain`` command: demo, status, export, import-csv, ingest, rebuild, verify,
and the worker commands serve, dispatch and follow (their loops live in ``workers.py``).

Every command opens the store named by ``--db`` (default
``sqlite:///broadcasts.db`` in the working directory). The CLI is the local
operator: it acts with full roles on whatever broadcast it is pointed at (see
:func:`operator_for`). A user's mistake (a bad id, path, URL or file) prints
one ``Error: ...`` line and exits non-zero; a traceback means a bug.

Configuration, by option or environment variable:

* ``--db`` / ``BROADCAST_DB``: the store URL.
* ``--signing-key`` / ``BROADCAST_SIGNING_KEY``: the VERP signing key in hex.
  Without it, a SQLite store's key is read from ``<database file>.key`` (the
  demo writes one there). Only ``ingest`` and ``demo`` use the key; the other
  commands neither send nor read bounces.
* ``--return-path`` / ``BROADCAST_RETURN_PATH``: the VERP return path.
* ``--user`` / ``BROADCAST_USER``: who the operator is, recorded in events.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import click
from rich.console import Console
from rich.table import Table

from broadcast_adapters.cli_common import (
    DEFAULT_DB,
    DEFAULT_RETURN_PATH,
    CliError,
    Settings,
    default_user,
    export_csv,
    open_service,
    operator_for,
    report_differences,
    show_status,
    sqlite_path,
)
from broadcast_adapters.console import progress_bar
from broadcast_adapters.demo import INBOX, run_demo
from broadcast_adapters.workers import follow as follow_store
from broadcast_adapters.workers import run_dispatcher, run_ingester, stop_on_signals
from broadcast_domain import (
    Actor,
    BroadcastError,
    BroadcastService,
    InboxRole,
    UnknownBroadcast,
)
from broadcast_domain.ports import BounceSource

__all__ = ["cli", "main", "operator_for"]

log = logging.getLogger("broadcast_adapters.cli")


def _broadcast_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise CliError(f"{value!r} is not a broadcast id (a UUID)") from None


def _stdout() -> Console:
    # Made per call: click's test runner swaps sys.stdout for each invocation.
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def _stderr() -> Console:
    return Console(file=sys.stderr, highlight=False)


class _Group(click.Group):
    """A click group whose errors are one ``Error:`` line, never a traceback."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = self._run(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        **extra: Any,
    ) -> int:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _fail(f"{exc.format_message()}{hint}")
            return exc.exit_code
        except click.ClickException as exc:
            _fail(exc.format_message())
            return exc.exit_code
        except click.Abort:
            _fail("interrupted")
            return 130
        except BroadcastError as exc:
            _fail(str(exc))
            return 1
        except (OSError, sqlite3.Error) as exc:
            _fail(_os_message(exc))
            return 1
        return rv if isinstance(rv, int) else 0


def _os_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}"
    return str(exc)


def _fail(message: str) -> None:
    click.echo(f"Error: {' '.join(message.split())}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    envvar="BROADCAST_DB",
    default=None,
    metavar="URL",
    help=f"Store URL: sqlite:///FILE, postgresql://... or memory://. "
    f"[default: {DEFAULT_DB}; for demo, a new file in a temporary folder]",
)
@click.option(
    "--signing-key",
    envvar="BROADCAST_SIGNING_KEY",
    default=None,
    metavar="HEX",
    help="VERP signing key in hex [default: read from <database file>.key].",
)
@click.option(
    "--return-path",
    envvar="BROADCAST_RETURN_PATH",
    default=DEFAULT_RETURN_PATH,
    show_default=True,
    help="VERP return path (bounces+TOKEN@domain).",
)
@click.option(
    "--user",
    envvar="BROADCAST_USER",
    default=default_user,
    show_default="your login name",
    help="Who acts (recorded in events); the CLI acts with every role as the local operator.",
)
@click.version_option(package_name="broadcast-domain")
@click.pass_context
def cli(
    ctx: click.Context, db: str | None, signing_key: str | None, return_path: str, user: str
) -> None:
    """Event-sourced bulk e-mail broadcasts (一斉配信): try `broadcast-domain demo`."""
    ctx.obj = Settings(db=db, signing_key=signing_key, return_path=return_path, user=user)


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.find_object(Settings)
    if settings is None:  # pragma: no cover - the group always sets it
        raise CliError("the command was run outside its group")
    return settings


def _url(settings: Settings) -> str:
    return settings.db or DEFAULT_DB


# --- status ------------------------------------------------------------------------------


@cli.command()
@click.argument("broadcast_id")
@click.pass_context
def status(ctx: click.Context, broadcast_id: str) -> None:
    """Show a broadcast's status bar and its account's count for this month."""
    settings = _settings(ctx)
    bid = _broadcast_id(broadcast_id)
    with open_service(settings, _url(settings), read_only=True, replay_if_behind=True) as svc:
        show_status(svc, bid, _stdout())


# --- export ------------------------------------------------------------------------------


@cli.command()
@click.argument("broadcast_id")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write [default: the broadcast's results file name, in the working folder].",
)
@click.option("--errors-only", is_flag=True, help="Only the unacknowledged errors.")
@click.option(
    "--encoding",
    type=click.Choice(["utf-8-sig", "cp932"], case_sensitive=False),
    default="utf-8-sig",
    show_default=True,
    help="UTF-8 with BOM (opens right in Excel) or CP932 (Shift_JIS).",
)
@click.option(
    "--headers",
    type=click.Choice(["ja", "en"], case_sensitive=False),
    default="ja",
    show_default=True,
    help="Column names in Japanese or English.",
)
@click.pass_context
def export(
    ctx: click.Context,
    *,
    broadcast_id: str,
    out_path: Path | None,
    errors_only: bool,
    encoding: str,
    headers: str,
) -> None:
    """Write a broadcast's result CSV (or its unacknowledged errors) to a file."""
    settings = _settings(ctx)
    bid = _broadcast_id(broadcast_id)
    with open_service(settings, _url(settings)) as svc:
        target = out_path or Path(
            svc.results_file_name(bid, "errors" if errors_only else "results")
        )
        rows = export_csv(
            svc,
            bid,
            target,
            actor=operator_for(settings.user, svc, bid),
            errors_only=errors_only,
            encoding=encoding.lower(),
            headers=headers.lower(),
            console=_stderr(),
        )
    _stdout().print(f"Wrote {rows:,} rows to {target}")


# --- import-csv --------------------------------------------------------------------------


@cli.command("import-csv")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Exit 1 when any row has a problem.")
@click.pass_context
def import_csv(ctx: click.Context, file: Path, strict: bool) -> None:
    """Check a recipient CSV: count its contacts and list every problem with its line.

    Nothing is written to the store: a host imports the contacts into a
    broadcast with create_broadcast(source=CsvSource(FILE), recipients=...).
    """
    settings = _settings(ctx)
    data = file.read_bytes()
    # Parsing reads no store: an in-memory one serves.
    with open_service(settings, "memory://") as svc:
        imported = svc.parse_recipient_csv(data)
    out = _stdout()
    out.print(f"{file.name}: {len(imported.contacts):,} contacts")
    if imported.problems:
        table = Table(title=f"{len(imported.problems):,} problems", title_justify="left")
        table.add_column("line", justify="right")
        table.add_column("problem")
        for problem in imported.problems:
            table.add_row(str(problem.line), problem.reason)
        out.print(table)
        if strict:
            ctx.exit(1)


# --- ingest ------------------------------------------------------------------------------


def _counted(source: BounceSource) -> int:
    return sum(1 for _ in source)


@cli.command()
@click.argument(
    "path", required=False, type=click.Path(exists=True, path_type=Path), metavar="[PATH]"
)
@click.option(
    "--maildir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A Maildir of bounce messages (new/ and cur/).",
)
@click.option(
    "--mbox",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An mbox file of bounce messages.",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep watching for new messages (poll every --interval seconds) until SIGTERM/Ctrl-C.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between two looks at the folder with --watch.",
)
@click.pass_context
def ingest(
    ctx: click.Context,
    *,
    path: Path | None,
    maildir: Path | None,
    mbox: Path | None,
    watch: bool,
    interval: float,
) -> None:
    """Record the bounce messages of a Maildir or an mbox; print the outcomes.

    PATH is a Maildir (a folder) or an mbox (a file). With --watch the command
    runs as a worker: it ingests what arrives until SIGTERM or Ctrl-C, logging
    one line per pass that found messages, and exits 0.
    """
    from broadcast_adapters.bounces.sources import MaildirSource, MboxSource

    given = [p for p in (path, maildir, mbox) if p is not None]
    if len(given) != 1:
        raise click.UsageError(
            "give exactly one of --maildir PATH or --mbox PATH (or the PATH alone)"
        )
    if path is not None:
        maildir, mbox = (path, None) if path.is_dir() else (None, path)

    def source() -> BounceSource:
        return MaildirSource(maildir) if maildir is not None else MboxSource(cast(Path, mbox))

    settings = _settings(ctx)
    if watch:
        _log_setup()
        with (
            open_service(settings, _url(settings), need_key=True) as svc,
            stop_on_signals() as stop,
        ):
            log.info("watching %s for bounce messages every %.1f s", maildir or mbox, interval)
            totals = run_ingester(svc, source, stop=stop, watch=True, interval=interval)
        log.info("ingester stopped after %d messages", totals.get("messages", 0))
        return
    first = source()
    total = _counted(first)
    with (
        open_service(settings, _url(settings), need_key=True) as svc,
        progress_bar(_stderr(), "msg") as bar,
    ):
        task = bar.add_task("Ingesting", total=total)

        def progress(counts: dict[str, int]) -> None:
            bar.update(task, completed=counts.get("messages", 0))

        counts = svc.ingest(first, on_progress=progress)
        bar.update(task, completed=counts.get("messages", total))
    out = _stdout()
    table = Table(title="Outcomes", title_justify="left")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for kind, count in sorted(counts.items()):
        table.add_row(kind, f"{count:,}")
    out.print(table)


# --- workers ------------------------------------------------------------------------------


def _log_setup() -> None:
    """One line per event on stderr, unless the host configured logging already."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )


def _smtp_address(value: str) -> tuple[str, int]:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.UsageError(f"--smtp needs HOST:PORT with a port from 1 to 65535, got {value!r}")
    return host.strip("[]"), int(port)


@cli.command()
@click.option(
    "--smtp", "smtp", required=True, metavar="HOST:PORT", help="The SMTP server to hand over to."
)
@click.option("--once", is_flag=True, help="Send what is due now, then exit.")
@click.option("--connections", type=click.IntRange(min=1, max=64), default=4, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="SMTP timeout in seconds.",
)
@click.option("--starttls", is_flag=True, help="Upgrade the connection with STARTTLS.")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Messages per dispatch_due call; a stop request waits at most for one batch.",
)
@click.option(
    "--idle",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds to wait when nothing is due.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    default=None,
    help="Serve this worker's Prometheus metrics on 127.0.0.1:PORT.",
)
@click.pass_context
def dispatch(
    ctx: click.Context,
    *,
    smtp: str,
    once: bool,
    connections: int,
    timeout: float,
    starttls: bool,
    batch: int,
    idle: float,
    metrics_port: int | None,
) -> None:
    """Hand due messages over to an SMTP server, in a loop (a worker process).

    SIGTERM or Ctrl-C finishes the batch in hand, records it and exits 0.
    """
    from broadcast_adapters.metrics import Metrics
    from broadcast_adapters.smtp import SmtpTransport

    host, port = _smtp_address(smtp)
    settings = _settings(ctx)
    _log_setup()
    metrics = Metrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
        log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
    with (
        open_service(settings, _url(settings), need_key=True) as svc,
        SmtpTransport(
            host, port, connections=connections, timeout=timeout, starttls=starttls
        ) as transport,
        stop_on_signals() as stop,
    ):
        log.info("dispatching to %s:%d", host, port)
        run_dispatcher(
            svc,
            transport,
            stop=stop,
            once=once,
            batch=batch,
            idle_seconds=idle,
            metrics=metrics,
        )


@cli.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="Seconds between polls (SQLite; PostgreSQL is woken by notifications).",
)
@click.pass_context
def follow(ctx: click.Context, interval: float) -> None:
    """Keep the projections up to date as events are recorded (a worker process)."""
    settings = _settings(ctx)
    url = _url(settings)
    # Opening checks the store and gives a one-line error when it is not one.
    open_service(settings, url).close()
    _log_setup()
    with stop_on_signals() as stop:
        follow_store(url, stop=stop, poll_interval=interval)


def local_operator(svc: BroadcastService, user: str) -> Any:
    """The ``serve`` command's actor: the local operator with every role on what it opens.

    ``serve`` listens on 127.0.0.1 for the person at this machine, as the other
    commands act for them; a host puts its own login in ``create_app``.
    """

    def actor_for(request: Any) -> Actor:
        params = request.path_params
        if "inbox_id" in params:
            return Actor(user, inbox_roles={params["inbox_id"]: InboxRole.ADMIN})
        if "broadcast_id" in params:
            try:
                return operator_for(user, svc, UUID(params["broadcast_id"]))
            except (ValueError, UnknownBroadcast):
                return Actor(user)
        return Actor(user)

    return actor_for


def serve_app(svc: BroadcastService, *, user: str, host: str, port: int, banner: list[str]) -> None:
    """Run the web app on uvicorn until SIGTERM or Ctrl-C, printing ``banner`` once it listens.

    ``{port}`` in a banner line is replaced by the port bound (useful with port 0).
    """
    import uvicorn

    from broadcast_adapters.web import create_app

    app = create_app(svc, actor_for=local_operator(svc, user), secret_key=secrets.token_bytes(32))
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="off")
    )

    async def announce() -> None:
        # Printed once uvicorn listens, so a URL shown is a URL that answers.
        while not server.started:
            await asyncio.sleep(0.05)
        bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
        for line in banner:
            click.echo(line.replace("{port}", str(bound)))
        sys.stdout.flush()

    async def run() -> None:
        task = asyncio.create_task(announce())
        try:
            await server.serve()
        finally:
            task.cancel()

    # uvicorn handles SIGTERM/SIGINT itself while serving and raises the signal again
    # once it has shut down; that second delivery lands in these handlers, so a
    # stop asked by the service manager ends in exit 0, as for the other workers.
    with stop_on_signals():
        asyncio.run(run())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option("--inbox", default=None, help="The inbox whose list the printed URL opens.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, inbox: str | None) -> None:
    """Serve the results screen, webhooks, /healthz and /metrics (uvicorn).

    The screen acts for --user as the local operator; SIGTERM or Ctrl-C stops it.
    """
    settings = _settings(ctx)
    _log_setup()
    with open_service(settings, _url(settings), need_key=True) as svc:
        where = f"http://{host}:{{port}}"
        banner = [f"Serving {_url(settings)} on {where}"]
        if inbox:
            banner.append(f"Open {where}/inboxes/{inbox}/broadcasts")
        serve_app(svc, user=settings.user, host=host, port=port, banner=banner)


# --- rebuild and verify -------------------------------------------------------------------


@cli.command()
@click.pass_context
def rebuild(ctx: click.Context) -> None:
    """Drop every projection and replay the whole event log into them."""
    settings = _settings(ctx)
    with open_service(settings, _url(settings)) as svc, progress_bar(_stderr(), "events") as bar:
        task = bar.add_task("Rebuilding", total=None)

        def progress(position: int, last: int) -> None:
            bar.update(task, completed=position, total=last)

        position = svc.rebuild_projections(on_progress=progress)
        bar.update(task, completed=position, total=max(position, 1))
    _stdout().print(f"Rebuilt the projections from {position:,} events")


@cli.command()
@click.pass_context
def verify(ctx: click.Context) -> None:
    """Replay the log into a scratch copy and compare it with the live projections.

    Exits 1 and prints every difference when they disagree (run `rebuild` to repair).
    """
    settings = _settings(ctx)
    with open_service(settings, _url(settings), read_only=True) as svc:
        diffs = svc.verify_projections()
    if report_differences(diffs, _stdout()):
        ctx.exit(1)


# --- demo --------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--recipients",
    type=click.IntRange(min=1, max=1_000_000),
    default=2_000,
    show_default=True,
    help="How many recipients the demo broadcast has.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the CSV files [default: the database's folder].",
)
@click.option(
    "--connections",
    type=click.IntRange(min=1, max=32),
    default=4,
    show_default=True,
    help="SMTP connections to the local server.",
)
@click.option(
    "--serve",
    "serve_after",
    is_flag=True,
    help="At the end, serve the results screen on 127.0.0.1 and print its URL (Ctrl-C stops).",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8000,
    show_default=True,
    help="Port for --serve (0: any free port).",
)
@click.pass_context
def demo(
    ctx: click.Context,
    *,
    recipients: int,
    out_dir: Path | None,
    connections: int,
    serve_after: bool,
    port: int,
) -> None:
    """The whole product in one run, against a local SMTP server it starts.

    A broadcast of N recipients is sent, some rejected, some deferred and
    retried; failure reports come back (one twice, one too late); the status
    bar, the CSV exports and the acknowledgement follow, and the projections
    are verified against the event log (exit 1 on any difference).
    """
    settings = _settings(ctx)
    if settings.db is None:
        folder = Path(tempfile.mkdtemp(prefix="broadcast-demo-"))
        url = f"sqlite:///{folder / 'broadcasts.db'}"
    else:
        url = settings.db
        db = sqlite_path(url)
        if db is not None and db.exists():
            raise CliError(
                f"{db} already exists: the demo starts from an empty store; "
                "give a new file, or leave --db out to use a temporary folder"
            )
    db = sqlite_path(url)
    target = out_dir or (db.parent if db is not None else Path())
    ok = run_demo(
        settings=settings,
        url=url,
        recipients=recipients,
        out_dir=target,
        connections=connections,
        out=_stdout(),
        err=_stderr(),
    )
    if not ok:
        ctx.exit(1)
    if serve_after:
        _log_setup()
        with open_service(settings, url, need_key=True) as svc:
            where = "http://127.0.0.1:{port}"
            banner = [
                f"Results screen: {where}/broadcasts/{ok.broadcast_id}",
                f"All broadcasts: {where}/inboxes/{INBOX}/broadcasts",
                "Press Ctrl-C to stop.",
            ]
            serve_app(svc, user=settings.user, host="127.0.0.1", port=port, banner=banner)


def main() -> None:
    """The console script's entry point."""
    cli(prog_name="broadcast-domain")


if __name__ == "__main__":  # pragma: no cover
    main()
