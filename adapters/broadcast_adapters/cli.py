"""The ``broadcast-domain`` command: demo, status, export, import-csv, ingest, rebuild, verify.

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

import contextlib
import getpass
import io
import os
import secrets
import sqlite3
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import unquote
from uuid import UUID
from zoneinfo import ZoneInfo

import attrs
import click
from rich.console import Console
from rich.table import Table

from broadcast_adapters.console import progress_bar, status_table, usage_line
from broadcast_adapters.storage.marker import (
    read_only_sqlite_url,
    require_postgres_store,
    require_sqlite_store,
)
from broadcast_domain import (
    Actor,
    AddressBookRole,
    BroadcastError,
    BroadcastService,
    InboxRole,
)
from broadcast_domain.application.memory_views import InMemoryViewStore
from broadcast_domain.ports import BounceSource

__all__ = ["cli", "main", "operator_for"]

DEFAULT_DB = "sqlite:///broadcasts.db"
DEFAULT_RETURN_PATH = "bounces@localhost"
KEY_SUFFIX = ".key"
_MIN_KEY_BYTES = 16


class CliError(click.ClickException):
    """A user's mistake the command explains in one line (exit 1)."""


@attrs.frozen
class Settings:
    """The group options every command reads."""

    db: str | None
    signing_key: str | None
    return_path: str
    user: str


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # No login name (a container without a passwd entry).
        return "operator"


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other stores)."""
    if not url.lower().startswith("sqlite://"):
        return None
    path = unquote(url.split("://", 1)[1])
    path = path[1:] if path.startswith("/") else path
    return Path(path) if path else None


def key_file(url: str) -> Path | None:
    """Where the signing key of a SQLite store is kept: ``<database file>.key``."""
    db = sqlite_path(url)
    return None if db is None else db.with_name(db.name + KEY_SUFFIX)


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise CliError(f"the signing key in {where} is not hexadecimal") from None
    if len(key) < _MIN_KEY_BYTES:
        raise CliError(
            f"the signing key in {where} has {len(key)} bytes; it needs at least "
            f"{_MIN_KEY_BYTES} (e.g. python3 -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return key


def _read_key_file(path: Path) -> bytes:
    """The key in ``path``, refused when group or others may read it."""
    mode = path.stat().st_mode
    if mode & 0o077:
        # Whoever reads the key can forge bounce reports for every delivery.
        raise CliError(
            f"the key file {path} is readable by group or others (mode {mode & 0o777:o}); "
            f"run: chmod 600 {path}"
        )
    return _parse_key(path.read_text(encoding="ascii", errors="replace"), str(path))


def signing_key(settings: Settings, url: str, *, need: bool, create: bool = False) -> bytes:
    """The VERP signing key: the option, else the key file beside a SQLite database.

    ``create`` writes a fresh key file when there is none (the demo does);
    ``need`` is False for commands that neither send nor read bounces: they
    get a throwaway key because the service always wants one, and never read
    the key file (an unreadable or loose one does not stop them).
    """
    if settings.signing_key:
        return _parse_key(settings.signing_key, "--signing-key / BROADCAST_SIGNING_KEY")
    if not need and not create:
        return secrets.token_bytes(32)
    path = key_file(url)
    if path is not None and path.is_file():
        return _read_key_file(path)
    if path is not None and create:
        key = secrets.token_bytes(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only: whoever holds the key can forge bounce reports.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key.hex() + "\n")
        return key
    if need and not url.lower().startswith("memory://"):
        where = f" or put it in {path}" if path is not None else ""
        raise CliError(
            "no signing key: give --signing-key HEX or set BROADCAST_SIGNING_KEY"
            f"{where} (the key your application signs VERP return paths with)"
        )
    return secrets.token_bytes(32)


def open_service(
    settings: Settings,
    url: str,
    *,
    need_key: bool = False,
    create: bool = False,
    read_only: bool = False,
    replay_if_behind: bool = False,
    clock: Callable[[], datetime] | None = None,
) -> BroadcastService:
    """Open the store; a SQLite file that is not an existing store is refused unless ``create``.

    ``read_only`` opens a SQLite store with SQLite's ``mode=ro``: nothing can be
    written, so projections behind the log cannot be caught up in the file; with
    ``replay_if_behind`` they are then replayed from the log into memory
    instead (right, but as slow as a rebuild), otherwise it is an error.
    """
    db = sqlite_path(url)
    if db is not None and not create:
        # Looked at read-only first: a missing, empty or foreign file is refused
        # before anything could create a table in it.
        require_sqlite_store(db)
    if url.lower().startswith(("postgresql://", "postgres://")) and not create:
        require_postgres_store(url)
    if db is not None and create:
        db.parent.mkdir(parents=True, exist_ok=True)
    key = signing_key(settings, url, need=need_key, create=create)
    open_url = read_only_sqlite_url(db) if db is not None and read_only else url
    try:
        svc = _open(open_url, settings, key, clock)
    except BroadcastError:
        raise
    except (sqlite3.Error, OSError) as exc:
        raise CliError(f"cannot open {url}: {exc}") from None
    except Exception as exc:
        # The event store's own errors (eventsourcing's) are not public names.
        raise CliError(f"cannot open {url}: {exc}") from None
    try:
        svc.catch_up()
    except BroadcastError:
        svc.close()
        raise
    except sqlite3.OperationalError as exc:
        svc.close()
        if read_only and "readonly" in str(exc):
            if replay_if_behind:
                return _replayed(open_url, settings, key, clock)
            raise CliError(
                f"the projections of {db} are behind its event log and this command opens "
                "the store read-only: let the projection follower or your application "
                "catch them up, then run it again"
            ) from None
        raise CliError(f"{url} is not a broadcast-domain store: {exc}") from None
    except Exception as exc:
        svc.close()
        raise CliError(f"{url} is not a broadcast-domain store: {exc}") from None
    return svc


def _open(
    url: str,
    settings: Settings,
    key: bytes,
    clock: Callable[[], datetime] | None,
    view_store: InMemoryViewStore | None = None,
) -> BroadcastService:
    return BroadcastService.open(
        url, return_path=settings.return_path, signing_key=key, clock=clock, view_store=view_store
    )


def _replayed(
    url: str, settings: Settings, key: bytes, clock: Callable[[], datetime] | None
) -> BroadcastService:
    """The read-only store with its projections replayed into memory from the log."""
    click.echo(
        "Note: the stored projections are behind the event log; replaying the log in memory",
        err=True,
    )
    svc = _open(url, settings, key, clock, view_store=InMemoryViewStore())
    try:
        svc.catch_up()
    except BaseException:
        svc.close()
        raise
    return svc


def operator_for(user: str, svc: BroadcastService, broadcast_id: UUID) -> Actor:
    """The CLI's actor for a broadcast: ADMIN of its inbox, OWNER of its address book.

    The command line runs on the machine that holds the store, so it is the
    local operator with every role; a host application passes its users' real
    roles instead.
    """
    b = svc.broadcast(broadcast_id)
    books = {b.source_ref: AddressBookRole.OWNER} if b.source_kind == "address_book" else {}
    return Actor(user, inbox_roles={b.inbox_id: InboxRole.ADMIN}, address_book_roles=books)


def account_zone(svc: BroadcastService, account_id: str) -> ZoneInfo:
    """The account's time zone (UTC when it was never configured)."""
    account = svc.account(account_id)
    return ZoneInfo(account.timezone if account is not None else "UTC")


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
    default=_default_user,
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


def show_status(
    svc: BroadcastService, bid: UUID, out: Console, *, month_of: datetime | None = None
) -> None:
    """Print the status table of ``bid`` and the send count of the month of ``month_of``.

    ``month_of`` defaults to now; the month is the account's (its time zone).
    """
    b = svc.broadcast(bid)
    zone = account_zone(svc, b.account_id)
    summary = svc.summary(bid)
    out.print(status_table(summary, title=f"{b.subject} ({bid})", zone=zone))
    moment = (month_of or svc.now()).astimezone(zone)
    usage = svc.monthly_usage(b.account_id, year=moment.year, month=moment.month)
    out.print(f"Monthly count: {usage_line(usage)}")


# --- export ------------------------------------------------------------------------------


class _CountingFile(io.RawIOBase):
    """Passes bytes to a file and reports each line end written (CSV rows, roughly).

    A quoted cell holding a line break counts twice; the bar is corrected to
    the exact row count when the export returns.
    """

    def __init__(self, target: BinaryIO, on_lines: Callable[[int], None]) -> None:
        super().__init__()
        self._target = target
        self._on_lines = on_lines

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._target.write(chunk)
        if lines := chunk.count(b"\n"):
            self._on_lines(lines)
        return len(chunk)

    def flush(self) -> None:
        self._target.flush()


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


def _umask() -> int:
    # The only way to read the umask is to set it; the CLI is single-threaded here.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_path(target: Path) -> Path:
    """The folder to write ``target`` in; CliError unless ``target`` is absent or a regular file.

    The export replaces ``target`` by renaming a finished temporary file onto
    it: over a device, a directory or a symbolic link that would replace the
    thing itself (a link's target would not get the CSV), so those are refused.
    """
    folder = target.parent if str(target.parent) else Path()
    if not folder.is_dir():
        raise CliError(f"cannot write {target}: folder {folder} does not exist")
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return folder
    if stat.S_ISLNK(mode):
        raise CliError(
            f"{target} is a symbolic link; give the path of a regular file (nothing written)"
        )
    if not stat.S_ISREG(mode):
        kind = (
            "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device, pipe or socket)"
        )
        raise CliError(f"{target} is {kind}; give the path of a regular file (nothing written)")
    return folder


def export_csv(
    svc: BroadcastService,
    bid: UUID,
    target: Path,
    *,
    actor: Actor,
    errors_only: bool,
    encoding: str,
    headers: str,
    console: Console,
) -> int:
    """Export to ``target`` through a temporary file, with a progress bar; return the rows.

    The file appears only when the export succeeded: a row CP932 cannot hold
    leaves no half-written file behind.
    """
    folder = check_output_path(target)
    summary = svc.summary(bid)
    total = summary.unacknowledged_errors if errors_only else summary.recipients
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        # mkstemp makes the file 0600; an export is an ordinary file (0644 under
        # the usual umask), as any other program would write it.
        os.fchmod(fd, 0o666 & ~_umask())
        with progress_bar(console, "rows") as bar, os.fdopen(fd, "wb") as raw:
            task = bar.add_task("Exporting" if not errors_only else "Exporting errors", total=total)
            header_line = [True]

            def lines(n: int) -> None:
                if header_line[0]:
                    header_line[0] = False
                    n -= 1
                bar.advance(task, n)

            counting = cast(BinaryIO, _CountingFile(raw, lines))
            export = svc.export_unacknowledged_errors_csv if errors_only else svc.export_results_csv
            rows = export(bid, counting, actor=actor, encoding=encoding, headers=headers)
            bar.update(task, completed=rows, total=max(rows, total))
        check_output_path(target)  # again: the path may have changed while exporting
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return rows


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
@click.pass_context
def ingest(ctx: click.Context, maildir: Path | None, mbox: Path | None) -> None:
    """Record the bounce messages of a Maildir or an mbox; print the outcomes."""
    from broadcast_adapters.bounces.sources import MaildirSource, MboxSource

    if (maildir is None) == (mbox is None):
        raise click.UsageError("give exactly one of --maildir PATH or --mbox PATH")
    settings = _settings(ctx)
    source: BounceSource = (
        MaildirSource(maildir) if maildir is not None else MboxSource(cast(Path, mbox))
    )
    total = _counted(source)
    with (
        open_service(settings, _url(settings), need_key=True) as svc,
        progress_bar(_stderr(), "msg") as bar,
    ):
        task = bar.add_task("Ingesting", total=total)

        def progress(counts: dict[str, int]) -> None:
            bar.update(task, completed=counts.get("messages", 0))

        counts = svc.ingest(source, on_progress=progress)
        bar.update(task, completed=counts.get("messages", total))
    out = _stdout()
    table = Table(title="Outcomes", title_justify="left")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for kind, count in sorted(counts.items()):
        table.add_row(kind, f"{count:,}")
    out.print(table)


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


def report_differences(diffs: Sequence[str], out: Console) -> bool:
    """Print the verification result; True when the projections differ from the log."""
    if not diffs:
        out.print("Projections match the event log.")
        return False
    out.print(f"{len(diffs)} differences between the projections and the event log:")
    for line in diffs:
        out.print(f"  {line}", markup=False)
    out.print("Run 'broadcast-domain rebuild' to replay the projections from the log.")
    return True


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
@click.pass_context
def demo(ctx: click.Context, recipients: int, out_dir: Path | None, connections: int) -> None:
    """The whole product in one run, against a local SMTP server it starts.

    A broadcast of N recipients is sent, some rejected, some deferred and
    retried; failure reports come back (one twice, one too late); the status
    bar, the CSV exports and the acknowledgement follow, and the projections
    are verified against the event log (exit 1 on any difference).
    """
    from broadcast_adapters.demo import run_demo

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


def main() -> None:
    """The console script's entry point."""
    cli(prog_name="broadcast-domain")


if __name__ == "__main__":  # pragma: no cover
    main()
