"""Bounce sources over local mail folders: a Maildir and an mbox file.

Both implement ``broadcast_domain.ports.BounceSource``. A message is marked
done only after its events are committed, so a process that dies midway loses
nothing (the message is yielded again and ingestion is idempotent) and never
sees a done message again:

* Maildir: done means moved from ``new/`` (or left in ``cur/``) with the ``S``
  (seen) flag; a message in ``cur/`` without ``S`` is still to do. A message
  set aside goes to ``.failed/`` beside ``new/`` and ``cur/`` (with a
  ``.reason`` file next to it), never deleted.
* mbox: the file is never rewritten. Done keys (the SHA-256 of each message's
  bytes, so keys survive other programs appending to the file) are kept in a
  sidecar ``<mbox>.done`` file, one key a line, replaced atomically. A message
  set aside is copied into the sidecar ``<mbox>.failed`` mbox and marked done.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from broadcast_domain.errors import InvalidInput
from broadcast_domain.ports import IncomingBounce

__all__ = ["MaildirSource", "MboxSource"]

_INFO_SEP = ":2,"


def _fsync_dir(folder: Path) -> None:
    # A rename is durable only once its directory entry is; Windows has no
    # directory handles, where the rename itself is the best we can do.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _safe_reason(reason: str) -> bytes:
    return (reason.replace("\r", " ").replace("\n", " ").strip() + "\n").encode("utf-8")


class MaildirSource:
    """A Maildir of bounce messages; keys are the messages' unique names."""

    __slots__ = ("_path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        folder = Path(path)
        if not (folder / "new").is_dir() or not (folder / "cur").is_dir():
            raise InvalidInput(
                f"{folder} is not a Maildir: it needs new/ and cur/ folders", field="path"
            )
        self._path = folder
        (folder / "tmp").mkdir(exist_ok=True)

    @property
    def path(self) -> Path:
        """The Maildir folder."""
        return self._path

    @staticmethod
    def _unique(name: str) -> str:
        return name.split(_INFO_SEP, 1)[0]

    @staticmethod
    def _flags(name: str) -> str:
        _, sep, info = name.partition(_INFO_SEP)
        return info if sep else ""

    def _pending(self) -> list[Path]:
        found: list[Path] = []
        for sub in ("new", "cur"):
            for entry in sorted((self._path / sub).iterdir()):
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                if sub == "cur" and "S" in self._flags(entry.name):
                    continue
                found.append(entry)
        return found

    def _locate(self, key: str) -> Path | None:
        for sub in ("new", "cur"):
            folder = self._path / sub
            for entry in folder.iterdir():
                if self._unique(entry.name) == key:
                    return entry
        return None

    def __iter__(self) -> Iterator[IncomingBounce]:
        """Messages in ``new/`` and unseen ones in ``cur/``, oldest name first."""
        for entry in self._pending():
            try:
                raw = entry.read_bytes()
            except FileNotFoundError:
                # Another consumer took it between listing and reading.
                continue
            yield IncomingBounce(key=self._unique(entry.name), raw=raw)

    def mark_done(self, key: str) -> None:
        """Move the message to ``cur/`` with the ``S`` flag; idempotent."""
        entry = self._locate(key)
        if entry is None:
            raise InvalidInput(f"no message {key!r} in Maildir {self._path}", field="key")
        flags = self._flags(entry.name)
        if entry.parent.name == "cur" and "S" in flags:
            return
        new_flags = "".join(sorted(set(flags) | {"S"}))
        target = self._path / "cur" / f"{key}{_INFO_SEP}{new_flags}"
        os.replace(entry, target)
        _fsync_dir(target.parent)

    def set_aside(self, key: str, reason: str) -> None:
        """Move the message into ``.failed/`` with a ``.reason`` note; never delete it."""
        entry = self._locate(key)
        if entry is None:
            raise InvalidInput(f"no message {key!r} in Maildir {self._path}", field="key")
        failed = self._path / ".failed"
        failed.mkdir(exist_ok=True)
        _atomic_write(failed / f"{key}.reason", _safe_reason(reason))
        os.replace(entry, failed / entry.name)
        _fsync_dir(failed)
        _fsync_dir(entry.parent)


# An mbox "From " separator line (mboxrd/mboxo): "From " at the start of a line.
_FROM_LINE = re.compile(rb"^From ", re.MULTILINE)


class MboxSource:
    """An mbox file of bounce messages; keys are SHA-256 digests of the messages."""

    __slots__ = ("_done", "_done_path", "_failed_path", "_path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        file = Path(path)
        if not file.is_file():
            raise InvalidInput(f"{file} is not an mbox file", field="path")
        self._path = file
        self._done_path = file.with_name(file.name + ".done")
        self._failed_path = file.with_name(file.name + ".failed")
        self._done = self._load_done()

    @property
    def path(self) -> Path:
        """The mbox file."""
        return self._path

    def _load_done(self) -> set[str]:
        try:
            text = self._done_path.read_text("ascii")
        except FileNotFoundError:
            return set()
        return {line.strip() for line in text.splitlines() if line.strip()}

    def _messages(self) -> Iterator[tuple[str, bytes]]:
        data = self._path.read_bytes()
        starts = [m.start() for m in _FROM_LINE.finditer(data)]
        if not starts or starts[0] != 0:
            if data.strip():
                raise InvalidInput(
                    f"{self._path} is not an mbox file: it must begin with a 'From ' line",
                    field="path",
                )
            return
        seen: dict[str, int] = {}
        for index, start in enumerate(starts):
            end = starts[index + 1] if index + 1 < len(starts) else len(data)
            chunk = data[start:end]
            _, _, message = chunk.partition(b"\n")
            message = message.removesuffix(b"\n")
            # mboxrd quoting: ">From " at a line start stood for "From ".
            message = re.sub(rb"^>(>*From )", rb"\1", message, flags=re.MULTILINE)
            digest = hashlib.sha256(message).hexdigest()
            # Identical copies of one message get distinct keys in file order.
            count = seen.get(digest, 0)
            seen[digest] = count + 1
            yield (digest if count == 0 else f"{digest}-{count}"), message

    def __iter__(self) -> Iterator[IncomingBounce]:
        """Messages whose key is not in the done file, in file order."""
        for key, raw in self._messages():
            if key not in self._done:
                yield IncomingBounce(key=key, raw=raw)

    def _save_done(self, done: set[str]) -> None:
        _atomic_write(self._done_path, "".join(f"{k}\n" for k in sorted(done)).encode("ascii"))
        self._done = done

    def mark_done(self, key: str) -> None:
        """Record the key in the done file (rewritten atomically); idempotent."""
        if key in self._done:
            return
        if not re.fullmatch(r"[0-9a-f]{64}(?:-\d+)?", key):
            raise InvalidInput(f"{key!r} is not a key of mbox {self._path}", field="key")
        self._save_done(self._done | {key})

    def set_aside(self, key: str, reason: str) -> None:
        """Append the message to ``<mbox>.failed`` with its reason, then mark it done."""
        raw = next((msg for candidate, msg in self._messages() if candidate == key), None)
        if raw is None:
            raise InvalidInput(f"no message {key!r} in mbox {self._path}", field="key")
        quoted = re.sub(rb"^(>*From )", rb">\1", raw, flags=re.MULTILINE)
        note = b"X-Set-Aside-Reason: " + _safe_reason(reason)
        entry = b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n" + note + quoted + b"\n\n"
        with self._failed_path.open("ab") as handle:
            handle.write(entry)
            handle.flush()
            os.fsync(handle.fileno())
        # Copied first, then marked: a crash in between leaves a duplicate
        # copy aside, never a lost message.
        self._save_done(self._done | {key})
