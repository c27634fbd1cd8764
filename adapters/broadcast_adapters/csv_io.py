"""Recipient CSV import and result CSV export: the one module that uses :mod:`csv`.

:class:`CsvCodec` implements :class:`broadcast_domain.ports.CsvCodec`.

Import (:meth:`CsvCodec.parse_recipients`) turns the bytes of a user's file into
contacts plus a list of per-row problems, or raises
:class:`~broadcast_domain.errors.CsvImportError` when the file as a whole cannot
be trusted. Export (:meth:`CsvCodec.write_rows`) streams already formatted rows
to a binary file in RFC 4180 form, neutralising cells a spreadsheet would run
as a formula.
"""

from __future__ import annotations

import codecs
import csv  # noqa: TID251 - this is the module the ban points to
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, BinaryIO, Final, NoReturn, Protocol

import attrs
from email_validator import EmailNotValidError, validate_email

from broadcast_domain.domain.values import Contact, normalise_address
from broadcast_domain.errors import CsvExportError, CsvImportError, InvalidInput
from broadcast_domain.ports import CsvProblem, ImportedCsv

__all__ = ["EXPORT_ENCODINGS", "HEADER_ALIASES", "CsvCodec", "is_formula_cell"]

# --------------------------------------------------------------------------- import

_LAST, _FIRST, _ADDRESS, _COMPANY = "last_name", "first_name", "address", "company"

HEADER_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    _LAST: ("姓", "last_name", "last name", "lastname", "family_name", "family name", "surname"),
    _FIRST: ("名", "first_name", "first name", "firstname", "given_name", "given name"),
    _ADDRESS: (
        "宛先",
        "メールアドレス",
        "メール",
        "email",
        "e-mail",
        "email address",
        "e-mail address",
        "mail",
        "mail address",
        "address",
    ),
    _COMPANY: ("会社名", "会社", "company", "company name", "company_name"),
}
"""Accepted header names per field, as documented; matching ignores case, width,
surrounding spaces and the separators space, ``_`` and ``-``."""

# What a header cell is compared as: "E-Mail", "ｅｍａｉｌ" and " email " are one name.
_SEPARATORS = str.maketrans("", "", " _-")
_INVISIBLE = str.maketrans("", "", "\ufeff\u200b")  # a doubled BOM, a zero-width space


def _header_key(name: str) -> str:
    folded = unicodedata.normalize("NFKC", name.translate(_INVISIBLE)).strip().casefold()
    return folded.translate(_SEPARATORS)


_HEADER_LOOKUP: Final[dict[str, str]] = {
    _header_key(alias): field for field, aliases in HEADER_ALIASES.items() for alias in aliases
}

# Japanese users often type an address in full-width letters (ｙａｍａｄａ＠ｅｘａｍｐｌｅ．ｊｐ);
# only that block (and the ideographic space) is folded to ASCII, so that genuine
# internationalised addresses are not rewritten by a wider NFKC.
_FULLWIDTH_ASCII = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

_UTF8_BOM = codecs.BOM_UTF8

# How many non-ASCII characters must decode as UTF-8 before a bad byte for the file
# to count as damaged UTF-8 rather than CP932 (whose text almost never starts as
# valid UTF-8: its double-byte characters mostly begin with UTF-8 continuation bytes).
_UTF8_EVIDENCE: Final = 4


class _Rfc4180(csv.Dialect):
    """Comma separated, double-quote quoted, CRLF ended; strict so broken quoting is seen."""

    delimiter = ","
    quotechar = '"'
    doublequote = True
    skipinitialspace = False
    lineterminator = "\r\n"
    quoting = csv.QUOTE_MINIMAL
    strict = True


def _line_of(data: bytes, offset: int) -> int:
    """The 1-based physical line holding byte ``offset`` (CRLF, LF or CR end a line)."""
    head = data[:offset]
    return head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1


def _decode(data: bytes) -> str:
    """The text of the file; raise if it is not text in a supported encoding."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CsvImportError(
            "the file is UTF-16 encoded; save it as CSV in UTF-8 or Shift_JIS (CP932)", line=1
        )
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise CsvImportError(
            "the file is an Excel workbook (or another zip/OLE file), not CSV; "
            "save it as 'CSV UTF-8' or 'CSV' from the spreadsheet",
            line=1,
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        line = _line_of(data, nul)
        raise CsvImportError(
            f"not a CSV file: a NUL byte at line {line} (binary data or UTF-16); "
            "save the file as CSV in UTF-8 or Shift_JIS (CP932)",
            line=line,
        )
    if data.startswith(_UTF8_BOM):
        try:
            return data[len(_UTF8_BOM) :].decode("utf-8")
        except UnicodeDecodeError as exc:
            line = _line_of(data, exc.start + len(_UTF8_BOM))
            raise CsvImportError(
                f"the file starts with a UTF-8 byte order mark but byte "
                f"0x{data[exc.start + len(_UTF8_BOM)]:02x} at line {line} is not UTF-8",
                line=line,
            ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        # Several valid multi-byte UTF-8 characters before the bad byte mean a damaged
        # UTF-8 file: read as CP932 it would import garbled names without a word.
        prefix = data[: utf8_error.start].decode("utf-8")
        # A character of three UTF-8 bytes or more (kana, kanji, full-width forms)
        # is what Japanese UTF-8 text is made of; CP932 text rarely forms one by
        # accident (its half-width kana do form two-byte ones, so those count
        # only in numbers). Either way the file is UTF-8 and then something else:
        # mixed, refused rather than guessed.
        wide = next((i for i, char in enumerate(prefix) if char >= "\u0800"), None)
        if wide is not None or sum(1 for char in prefix if char > "\x7f") >= _UTF8_EVIDENCE:
            line = _line_of(data, utf8_error.start)
            first = (
                wide if wide is not None else next(i for i, c in enumerate(prefix) if c > "\x7f")
            )
            first_offset = len(prefix[:first].encode("utf-8"))
            raise CsvImportError(
                f"the file mixes encodings: it is UTF-8 up to line {line} (UTF-8 text from "
                f"line {_line_of(data, first_offset)}, byte offset {first_offset}), where byte "
                f"0x{data[utf8_error.start]:02x} at byte offset {utf8_error.start} is not "
                "UTF-8 (Shift_JIS/CP932?); save the whole file "
                "again in one encoding",
                line=line,
            ) from None
        try:
            return data.decode("cp932")
        except UnicodeDecodeError as cp932_error:
            # The encoding that read further is the likelier one: point at its failure.
            utf8_line = _line_of(data, utf8_error.start)
            cp932_line = _line_of(data, cp932_error.start)
            raise CsvImportError(
                "not a text file in a supported encoding: it is neither UTF-8 (byte "
                f"0x{data[utf8_error.start]:02x} at line {utf8_line}) nor Shift_JIS/CP932 "
                f"(byte 0x{data[cp932_error.start]:02x} at line {cp932_line}); "
                "save it as CSV in UTF-8 or Shift_JIS",
                line=max(utf8_line, cp932_line),
            ) from None


@attrs.frozen
class _Columns:
    """Where each known field sits in a row, from the header."""

    width: int
    positions: dict[str, int]
    labels: dict[str, str]
    ignored: tuple[str, ...]


def _accepted_names() -> str:
    return "; ".join(f"{field}: {', '.join(aliases)}" for field, aliases in HEADER_ALIASES.items())


def _read_header(cells: list[str], line: int) -> _Columns:
    positions: dict[str, int] = {}
    labels: dict[str, str] = {}
    ignored: list[str] = []
    for index, cell in enumerate(cells):
        field = _HEADER_LOOKUP.get(_header_key(cell))
        if field is None:
            if cell.strip():
                ignored.append(cell.strip())
            continue
        if field in positions:
            raise CsvImportError(
                f"line {line}: columns {positions[field] + 1} ({labels[field]!r}) and "
                f"{index + 1} ({cell.strip()!r}) both name the {field} column; keep one",
                line=line,
            )
        positions[field] = index
        labels[field] = cell.strip()
    if _ADDRESS not in positions:
        found = ", ".join(repr(c) for c in cells)
        hint = ""
        if any("@" in c for c in cells):
            hint = " The first line looks like data: add a header line."
        elif len(cells) == 1 and any(sep in cells[0] for sep in ("\t", ";")):
            hint = " The file seems to use tabs or semicolons; columns must be comma-separated."
        raise CsvImportError(
            f"line {line}: no address column. Headers found: {found}. "
            f"Accepted names: {_accepted_names()}.{hint}",
            line=line,
        )
    return _Columns(len(cells), positions, labels, tuple(ignored))


# Unicode category Cc is exactly these two ranges; a regex scans far faster than a loop.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _control_character(text: str) -> str | None:
    found = _CONTROL.search(text)
    return None if found is None else found.group()


@attrs.frozen
class _Record:
    line: int
    cells: list[str]


_PHYSICAL_LINE: Final = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _records(text: str) -> Iterator[_Record]:
    """Records with the physical line each starts on; csv errors become CsvImportError."""
    # Physical lines, made one at a time and with their CR/LF kept (as csv's docs
    # require), split where StringIO(newline="") would split them; a StringIO
    # would copy the whole text at four bytes a character before the row limit
    # could stop anything.
    lines = (m.group() for m in _PHYSICAL_LINE.finditer(text))
    reader = csv.reader(lines, dialect=_Rfc4180)
    previous_end = 0
    while True:
        start = previous_end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            where = f"line {start}"
            if reader.line_num > start:
                where = f"the record starting at line {start} (lines {start}-{reader.line_num})"
            detail = str(exc)
            if "unexpected end of data" in detail:
                detail = "a quoted field is never closed (a missing '\"')"
            elif "field larger than field limit" in detail:
                detail = f"a field is longer than {csv.field_size_limit()} characters"
            raise CsvImportError(
                f"not a valid CSV file: {where}: {detail}; nothing was imported", line=start
            ) from None
        previous_end = reader.line_num
        yield _Record(start, cells)


def _is_blank(cells: list[str]) -> bool:
    return all(not c.strip() for c in cells)


class CsvCodec:
    """Reads recipient CSV files and writes result CSV files (see the module docstring).

    Import rules (:meth:`parse_recipients`):

    - The encoding is UTF-8 with a byte order mark, else strict UTF-8, else CP932
      (Windows Shift_JIS). UTF-16 files, Excel workbooks, files with NUL bytes and
      bytes neither encoding can read are fatal, and so is a file that is valid
      UTF-8 (with at least four non-ASCII characters) up to a bad byte: reading
      such a damaged UTF-8 file as CP932 would import garbled names.
    - The first non-blank line is the header. Headers match ``HEADER_ALIASES``
      after NFKC, case folding and dropping spaces, ``_``, ``-``, a stray BOM and
      zero-width spaces. An address
      column is required; two columns naming the same field are fatal. Other
      columns are ignored and listed in ``ImportedCsv.ignored_columns``.
    - Blank lines, and lines whose cells are all empty (``,,,`` from a
      spreadsheet), are skipped and are not rows.
    - Per-row problems (the row is left out, the others kept), each with the
      physical line the record starts on (the header is line 1 when the file
      starts with it): a field count different from the header's; an empty
      address; an address ``email_validator`` rejects (its reason is quoted);
      a control character (Unicode category Cc, including tab and newline) inside
      the last name, first name or company (surrounding whitespace, even a
      newline, is trimmed first); a duplicate address (compared
      case-insensitively after the validator's normalisation; the first
      occurrence is kept, the problem names its line, and it counts in
      ``duplicates``).
    - Addresses get full-width ASCII folded to ASCII, then the validator's
      normalised form is stored. Names and company are trimmed and otherwise
      kept as written, including leading ``=``/``+``/``-``/``@``: neutralising
      formulas is the export's job.
    - Fatal (``CsvImportError``, nothing returned), checked in this order and
      before any address is validated: more than ``max_bytes`` bytes; not text
      (see above); malformed CSV anywhere in the file (a quote never closed,
      text after a closing quote, a field longer than
      :func:`csv.field_size_limit`), because record boundaries can no longer be
      trusted; an empty file; no address column (the message lists the headers
      found and the accepted names); a header with no data rows (an empty
      recipient list is not a useful import); more than ``max_rows`` data rows
      (bad rows and duplicates count, blank lines do not).
    - A file whose every row is bad is not fatal: it gives no contacts and one
      problem per row, so the user can see what to fix.

    Export rules (:meth:`write_rows`): see that method.
    """

    def parse_recipients(self, data: bytes, *, max_rows: int, max_bytes: int) -> ImportedCsv:
        """Parse a recipient file; raise CsvImportError for a fatal problem."""
        if max_rows < 1 or max_bytes < 1:
            raise InvalidInput(
                f"max_rows and max_bytes must be positive, got {max_rows} and {max_bytes}",
                field="max_rows" if max_rows < 1 else "max_bytes",
            )
        if len(data) > max_bytes:
            raise CsvImportError(
                f"the file is {len(data):,} bytes, more than the limit of {max_bytes:,} bytes; "
                "split it into smaller files"
            )
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(
                f"data must be the file's bytes, got {type(data).__name__}", field="data"
            )
        data = bytes(data)
        # Every record is read before any address is validated, so that a broken or
        # oversized file fails fast; the list holds at most max_rows records.
        records = (r for r in _records(_decode(data)) if not _is_blank(r.cells))
        header = next(records, None)
        if header is None:
            raise CsvImportError("the file is empty: it needs a header line and data rows")
        columns = _read_header(header.cells, header.line)
        body: list[_Record] = []
        for record in records:
            if len(body) == max_rows:
                # Reading stops here: the rest of the file is never split into rows.
                raise CsvImportError(
                    f"the file has more than the limit of {max_rows:,} data rows "
                    f"(line {record.line} is row {max_rows + 1:,}); split it into smaller files",
                    line=record.line,
                )
            body.append(record)
        if not body:
            raise CsvImportError(
                f"the file has a header (line {header.line}) but no data rows", line=header.line
            )

        contacts: list[Contact] = []
        problems: list[CsvProblem] = []
        first_seen: dict[str, int] = {}
        duplicates = 0
        for record in body:
            contact, reason = self._contact(record.cells, columns)
            if contact is None:
                problems.append(CsvProblem(record.line, reason))
                continue
            key = normalise_address(contact.address)
            first = first_seen.get(key)
            if first is not None:
                duplicates += 1
                problems.append(
                    CsvProblem(
                        record.line,
                        f"duplicate address {contact.address}: already on line {first}; "
                        "this row was left out",
                    )
                )
                continue
            first_seen[key] = record.line
            contacts.append(contact)
        return ImportedCsv(
            contacts=tuple(contacts),
            problems=tuple(problems),
            duplicates=duplicates,
            ignored_columns=columns.ignored,
        )

    @staticmethod
    def _contact(cells: list[str], columns: _Columns) -> tuple[Contact | None, str]:
        """The row's contact, or None and the reason it is bad."""
        if len(cells) != columns.width:
            return None, f"the row has {len(cells)} fields but the header has {columns.width}"
        values: dict[str, str] = {}
        for field, index in columns.positions.items():
            value = cells[index].strip()
            if field != _ADDRESS:
                bad = _control_character(value)
                if bad is not None:
                    return None, (
                        f"column {columns.labels[field]!r} contains a control character "
                        f"(U+{ord(bad):04X})"
                    )
            values[field] = value
        raw = values[_ADDRESS].translate(_FULLWIDTH_ASCII).strip()
        if not raw:
            return None, f"the address (column {columns.labels[_ADDRESS]!r}) is empty"
        try:
            address = validate_email(raw, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            return None, f"invalid address {raw!r}: {exc}"
        return (
            Contact(
                address,
                last_name=values.get(_LAST, ""),
                first_name=values.get(_FIRST, ""),
                company=values.get(_COMPANY, ""),
            ),
            "",
        )

    # ----------------------------------------------------------------------- export

    def write_rows(
        self,
        rows: Iterable[Sequence[str]],
        out: BinaryIO,
        *,
        header: Sequence[str],
        encoding: str = "utf-8-sig",
    ) -> int:
        """Stream ``header`` then ``rows`` to ``out`` as RFC 4180 CSV; return the data rows written.

        - Lines end with CRLF; a field is quoted only when it holds a comma, a
          quote, CR or LF; quotes are doubled.
        - ``encoding``: ``"utf-8-sig"`` (a byte order mark, written once, so Excel
          reads UTF-8), ``"utf-8"``, or ``"cp932"``; ``"shift_jis"``, ``"sjis"``,
          ``"ms932"`` and ``"windows-31j"`` are taken as CP932, which is what
          Windows and Excel mean by Shift_JIS. Case and ``_``/``-`` do not
          matter. Anything else is ``InvalidInput``, before anything is written.
        - For CP932 the characters whose JIS and Microsoft Unicode mappings differ
          (WAVE DASH 〜 U+301C, DOUBLE VERTICAL LINE U+2016, MINUS SIGN U+2212,
          EM DASH U+2014, ¢ £ ¬) are written as the CP932 character that looks
          the same; they read back as their full-width forms (～ ∥ － ― ￠ ￡ ￢).
        - A character the encoding cannot hold raises ``CsvExportError`` naming
          the row (1 is the first data row; 0 is the header), the column header
          and the character. Nothing of that row is written; rows before it have
          been written already and stay in ``out`` (a caller that needs all or
          nothing writes to a temporary file first).
        - Data cells starting with ``=``, ``+``, ``-``, ``@``, tab or CR get a
          leading ``'`` so a spreadsheet shows them as text (OWASP CSV injection
          advice). Header cells are written as given.
        - Every row must have as many cells as the header (``InvalidInput``
          otherwise). Rows are formatted and encoded in chunks of
          ``_CHUNK_ROWS`` rows: memory does not grow with the row count.
        """
        codec, bom = _export_codec(encoding)
        export = _Export(out, codec, tuple(header))
        if bom:
            out.write(_UTF8_BOM)
        export.write_header()
        chunk: list[Sequence[str]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= _CHUNK_ROWS:
                export.write_chunk(chunk)
                chunk = []
        if chunk:
            export.write_chunk(chunk)
        return export.written


# --------------------------------------------------------------------------- export helpers

_CHUNK_ROWS: Final = 1024
_FORMULA_START: Final = "=+-@\t\r"
# Spreadsheets also run a formula written with full-width signs (they fold
# them), and some skip invisible or special spaces in front of the sign.
_FULLWIDTH_FORMULA: Final = "\uff1d\uff0b\uff0d\uff20"  # ＝＋－＠
_INVISIBLE_LEAD: Final = "\u00a0\u3000\u200b\u200c\u200d\u2060\ufeff"


_FORMULA_LEADS: Final = frozenset(_FORMULA_START + _FULLWIDTH_FORMULA + _INVISIBLE_LEAD)
"""Every first character of a cell :func:`is_formula_cell` is True for."""


def is_formula_cell(cell: str) -> bool:
    """True when a spreadsheet could run ``cell`` as a formula (so it is neutralised)."""
    if not cell:
        return False
    if cell[0] in _FORMULA_START or cell[0] in _FULLWIDTH_FORMULA:
        return True
    rest = cell.lstrip(_INVISIBLE_LEAD)
    return rest != cell and bool(rest) and (rest[0] in "=+-@" or rest[0] in _FULLWIDTH_FORMULA)


EXPORT_ENCODINGS: Final[dict[str, tuple[str, bool]]] = {
    "utf-8-sig": ("utf-8", True),
    "utf-8": ("utf-8", False),
    "cp932": ("cp932", False),
    "shift-jis": ("cp932", False),
    "sjis": ("cp932", False),
    "ms932": ("cp932", False),
    "windows-31j": ("cp932", False),
}
"""Export encoding names (lower case, ``_`` read as ``-``) -> (Python codec, whether a
byte order mark is written first)."""

_SPELLINGS: Final = {"utf8": "utf-8", "utf8-sig": "utf-8-sig", "shiftjis": "shift-jis"}

_ERRORS_HANDLER: Final = "broadcast_adapters.cp932_lookalikes"

# Characters whose Shift_JIS (JIS) and CP932 (Microsoft) Unicode mappings differ:
# text from a Mac or the web carries the JIS code points, Excel needs CP932 bytes.
_CP932_LOOKALIKES: Final = {
    "\u301c": "\uff5e",  # WAVE DASH -> FULLWIDTH TILDE
    "\u2016": "\u2225",  # DOUBLE VERTICAL LINE -> PARALLEL TO
    "\u2212": "\uff0d",  # MINUS SIGN -> FULLWIDTH HYPHEN-MINUS
    "\u2014": "\u2015",  # EM DASH -> HORIZONTAL BAR
    "\u00a2": "\uffe0",  # CENT SIGN -> FULLWIDTH CENT SIGN
    "\u00a3": "\uffe1",  # POUND SIGN -> FULLWIDTH POUND SIGN
    "\u00ac": "\uffe2",  # NOT SIGN -> FULLWIDTH NOT SIGN
}


def _cp932_lookalikes(exc: UnicodeError) -> tuple[bytes, int]:
    """Codec error handler: encode a look-alike, or re-raise for a truly missing character.

    Being an error handler, it costs nothing while every character encodes.
    """
    if not isinstance(exc, UnicodeEncodeError) or exc.encoding != "cp932":
        raise exc
    substitute = _CP932_LOOKALIKES.get(exc.object[exc.start])
    if substitute is None:
        raise exc
    return substitute.encode("cp932"), exc.start + 1


codecs.register_error(_ERRORS_HANDLER, _cp932_lookalikes)


def _export_codec(encoding: str) -> tuple[str, bool]:
    key = encoding.strip().lower().replace("_", "-")
    try:
        return EXPORT_ENCODINGS[_SPELLINGS.get(key, key)]
    except KeyError:
        raise InvalidInput(
            f"unsupported CSV encoding {encoding!r}; use 'utf-8-sig' (the default), "
            "'utf-8' or 'cp932' (Shift_JIS)",
            field="encoding",
        ) from None


class _RowWriter(Protocol):
    """What is used of csv.writer's result (the csv module names no public type for it)."""

    def writerow(self, row: Iterable[str], /) -> Any: ...

    def writerows(self, rows: Iterable[Iterable[str]], /) -> None: ...


class _Export:
    """One export in progress: csv.writer output collected per chunk, encoded, written."""

    def __init__(self, out: BinaryIO, codec: str, header: tuple[str, ...]) -> None:
        self._out = out
        self._codec = codec
        self._header = header
        self._parts: list[str] = []
        # csv.writer only needs an object with .write; list.append collects pieces cheaply.
        self._writer: _RowWriter = csv.writer(_Sink(self._parts.append), dialect=_Rfc4180)
        self.written = 0

    def write_header(self) -> None:
        self._writer.writerow(self._header)
        try:
            self._out.write(self._take())
        except UnicodeEncodeError:
            self._raise_unencodable(self._header, 0)

    def write_chunk(self, chunk: Sequence[Sequence[str]]) -> None:
        self._writer.writerows(map(self._neutralise, chunk))
        try:
            encoded = self._take()
        except UnicodeEncodeError:
            self._parts.clear()
            self._write_one_by_one(chunk)
        else:
            self._out.write(encoded)
            self.written += len(chunk)

    def _write_one_by_one(self, chunk: Sequence[Sequence[str]]) -> None:
        # The slow path, only for a chunk that holds a bad character: the rows
        # before it are written and the error names the exact row.
        for row in chunk:
            self._writer.writerow(self._neutralise(row))
            try:
                encoded = self._take()
            except UnicodeEncodeError:
                self._raise_unencodable(row, self.written + 1)
            self._out.write(encoded)
            self.written += 1

    def _take(self) -> bytes:
        text = "".join(self._parts)
        self._parts.clear()
        return text.encode(self._codec, errors=_ERRORS_HANDLER)

    def _neutralise(self, row: Sequence[str]) -> list[str]:
        if len(row) != len(self._header):
            raise InvalidInput(
                f"result row {self.written + 1} has {len(row)} cells but the header has "
                f"{len(self._header)}",
                field="rows",
            )
        # Most cells start with none of the characters a formula can start with:
        # one set lookup each instead of a call (is_formula_cell is True only then).
        suspect = _FORMULA_LEADS
        return [("'" + c) if c[:1] in suspect and is_formula_cell(c) else c for c in row]

    def _raise_unencodable(self, row: Sequence[str], number: int) -> NoReturn:
        self._parts.clear()
        for column, cell in zip(self._header, row, strict=True):
            try:
                cell.encode(self._codec, errors=_ERRORS_HANDLER)
            except UnicodeEncodeError as exc:
                char = cell[exc.start]
                where = "the header" if number == 0 else f"row {number} (1 = first data row)"
                label = "CP932 (Shift_JIS)" if self._codec == "cp932" else "UTF-8"
                raise CsvExportError(
                    f"{where}, column {column!r}: the character {char!r} (U+{ord(char):04X}) "
                    f"cannot be written in {label}; export as UTF-8 instead, or change "
                    "that value",
                    row=number,
                    column=column,
                ) from None
        raise AssertionError("a row failed to encode although each of its cells encodes")


@attrs.define
class _Sink:
    """A file-like target for csv.writer that hands each written piece to a callable."""

    write: Callable[[str], object]
