"""What the ``broadcast-domain`` commands and the demo share: settings, the store, output.

Kept apart from ``cli.py`` (the click commands) so that the demo and the worker
commands use the same helpers without importing the command module itself.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import os
import secrets
import sqlite3
import stat
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

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_RETURN_PATH",
    "CliError",
    "Settings",
    "account_zone",
    "export_csv",
    "key_file",
    "open_service",
    "operator_for",
    "report_differences",
    "show_status",
    "signing_key",
    "sqlite_path",
]

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


def default_user() -> str:
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
