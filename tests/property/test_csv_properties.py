"""Properties of the CSV codec: import never fails but with CsvImportError, exports read back."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcast_adapters.csv_io import CsvCodec
from broadcast_domain.domain.values import Contact, normalise_address
from broadcast_domain.errors import CsvExportError, CsvImportError
from broadcast_domain.ports import ImportedCsv

CODEC = CsvCodec()
HEADER = ("姓", "名", "宛先", "会社名")
FORMULA_START = "=+-@\t\r"
FIELD_LIMIT = 131_072  # csv.field_size_limit() default; the import refuses longer fields

# An independent oracle for the CP932 look-alikes the export substitutes.
LOOKALIKES = str.maketrans(
    {"\u301c": "\uff5e", "\u2016": "\u2225", "\u2212": "\uff0d", "\u2014": "\u2015"}
    | {"\u00a2": "\uffe0", "\u00a3": "\uffe1", "\u00ac": "\uffe2"}
)


def parse(data: bytes, *, max_rows: int = 10_000) -> ImportedCsv:
    return CODEC.parse_recipients(data, max_rows=max_rows, max_bytes=10_000_000)


def attempt_parse(data: bytes, *, max_rows: int = 10_000) -> ImportedCsv | CsvImportError:
    """The result, or the CsvImportError raised; any other exception propagates."""
    try:
        return parse(data, max_rows=max_rows)
    except CsvImportError as error:
        return error


def export(rows: list[list[str]], header: tuple[str, ...], encoding: str) -> bytes:
    out = io.BytesIO()
    assert CODEC.write_rows(rows, out, header=header, encoding=encoding) == len(rows)
    return out.getvalue()


def read_rfc4180(text: str) -> list[list[str]]:
    """A minimal reader of what RFC 4180 allows: CRLF records, quoted fields, doubled quotes."""
    records: list[list[str]] = []
    fields: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == '"':
            value: list[str] = []
            i += 1
            while True:
                end = text.index('"', i)
                value.append(text[i:end])
                if text.startswith('""', end):
                    value.append('"')
                    i = end + 2
                else:
                    i = end + 1
                    break
            field = "".join(value)
        else:
            ends = [p for p in (text.find(",", i), text.find("\r\n", i)) if p >= 0]
            end = min(ends)
            field = text[i:end]
            i = end
        fields.append(field)
        if text.startswith(",", i):
            i += 1
        else:
            assert text.startswith("\r\n", i), f"junk after a field at {i}"
            records.append(fields)
            fields = []
            i += 2
    return records


# Signs a spreadsheet runs, full-width too, and what it may skip in front of them.
SIGNS = "=+-@\uff1d\uff0b\uff0d\uff20"
INVISIBLE = "\u00a0\u3000\u200b\u200c\u200d\u2060\ufeff"


def neutralised(cell: str) -> str:
    runs = bool(cell[:1]) and cell[0] in FORMULA_START
    bare = cell.lstrip(INVISIBLE)
    runs = runs or (bool(bare[:1]) and bare[0] in SIGNS)
    return "'" + cell if runs else cell


def check_result(result: ImportedCsv, data: bytes) -> None:
    """Invariants of any successful import."""
    physical_lines = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") + 1
    assert all(2 <= p.line <= physical_lines for p in result.problems)
    keys = [normalise_address(c.address) for c in result.contacts]
    assert len(keys) == len(set(keys))
    assert result.duplicates <= len(result.problems)


# ----------------------------------------------------------------------------- never crashes


@settings(max_examples=300)
@given(st.binary(max_size=3000))
def test_random_bytes_give_a_result_or_csv_import_error(data: bytes) -> None:
    """Arbitrary bytes never raise anything but CsvImportError."""
    outcome = attempt_parse(data)
    if isinstance(outcome, CsvImportError):
        assert str(outcome)
    else:
        check_result(outcome, data)


TOKENS = [*'abc@.,"\r\n \t=-+_xy1', "姓", "名", "宛先", "email", "山田", "＠", "ｱ", "\x00", "〜"]
CSVISH = st.lists(st.sampled_from(TOKENS), max_size=200).map("".join)
HEADERS = st.sampled_from(["", "宛先\r\n", "姓,名,宛先,会社名\r\n", "email,name\n", "E-Mail\r"])


@settings(max_examples=300)
@given(HEADERS, CSVISH, st.sampled_from(["utf-8", "utf-8-sig", "cp932"]))
def test_random_text_in_each_encoding_gives_a_result_or_csv_import_error(
    header: str, body: str, encoding: str
) -> None:
    """CSV-like text in UTF-8, UTF-8 with BOM or CP932 never raises anything but CsvImportError."""
    data = (header + body).encode(encoding, errors="replace")
    outcome = attempt_parse(data, max_rows=50)
    if isinstance(outcome, CsvImportError):
        assert str(outcome)
    else:
        check_result(outcome, data)


# ----------------------------------------------------------------------------- round trip

NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")),
    max_size=30,
)
ADDRESSES = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[A-Za-z0-9]{1,12}([._+-][a-z0-9]{1,6})?", fullmatch=True),
    st.from_regex(r"[a-z0-9]{1,12}(-[a-z0-9]{1,5})?", fullmatch=True),
    st.sampled_from(["jp", "co.jp", "com", "org"]),
)
CONTACTS = st.builds(Contact, address=ADDRESSES, last_name=NAMES, first_name=NAMES, company=NAMES)


def as_read_back(value: str) -> str:
    """What the import yields for a value the export wrote: neutralised, then trimmed."""
    return neutralised(value).strip()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(CONTACTS, min_size=1, max_size=20, unique_by=lambda c: c.address.casefold()))
def test_exported_contacts_parse_back_to_the_same_contacts(contacts: list[Contact]) -> None:
    """write_rows (UTF-8 with BOM, 姓,名,宛先,会社名) then parse gives the contacts back."""
    rows = [[c.last_name, c.first_name, c.address, c.company] for c in contacts]
    result = parse(export(rows, HEADER, "utf-8-sig"))
    assert result.problems == ()
    assert result.contacts == tuple(
        Contact(
            c.address,
            last_name=as_read_back(c.last_name),
            first_name=as_read_back(c.first_name),
            company=as_read_back(c.company),
        )
        for c in contacts
    )


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=FIELD_LIMIT - 50, max_value=FIELD_LIMIT + 50), st.sampled_from("x山"))
def test_huge_fields_round_trip_up_to_the_field_limit_and_are_fatal_beyond(
    size: int, char: str
) -> None:
    """A field up to the csv field limit reads back whole; a longer one is a fatal error."""
    data = export([["山田", "太郎", "big@example.jp", char * size]], HEADER, "utf-8-sig")
    outcome = attempt_parse(data)
    if isinstance(outcome, CsvImportError):
        assert size > FIELD_LIMIT
        assert outcome.line == 2
    else:
        assert size <= FIELD_LIMIT
        assert outcome.contacts[0].company == char * size


# ----------------------------------------------------------------------------- export

CELLS = st.text(max_size=40) | st.sampled_from(["=1+1", "+81", "-", "@x", "\tx", "\rx", "'=x"])
ROWS = st.lists(st.lists(CELLS, min_size=3, max_size=3), max_size=30)


@settings(max_examples=200)
@given(ROWS)
def test_utf8_export_reads_back_as_the_neutralised_rows(rows: list[list[str]]) -> None:
    """Any text exports; an RFC 4180 reader gets the header and every cell, formulas quoted."""
    data = export(rows, ("a", "=b", "c"), "utf-8-sig")
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\xef\xbb\xbf") == 1 + sum(c.count("\ufeff") for r in rows for c in r)
    read = read_rfc4180(data[3:].decode("utf-8"))
    assert read == [["a", "=b", "c"]] + [[neutralised(c) for c in row] for row in rows]


def first_unencodable(rows: list[list[str]]) -> tuple[int, int] | None:
    for number, row in enumerate(rows, start=1):
        for column, cell in enumerate(row):
            try:
                cell.translate(LOOKALIKES).encode("cp932")
            except UnicodeEncodeError:
                return number, column
    return None


@settings(max_examples=200)
@given(ROWS)
def test_cp932_export_reads_back_or_names_the_first_unencodable_cell(
    rows: list[list[str]],
) -> None:
    """CP932 output decodes to the rows, or the error names the first bad row and column."""
    header = ("x", "y", "z")
    bad = first_unencodable(rows)
    out = io.BytesIO()
    error: CsvExportError | None = None
    try:
        count = CODEC.write_rows(rows, out, header=header, encoding="cp932")
    except CsvExportError as raised:
        error = raised
    if error is not None:
        assert bad is not None
        assert (error.row, error.column) == (bad[0], header[bad[1]])
        written = read_rfc4180(out.getvalue().decode("cp932"))
        assert len(written) == bad[0]  # the header and every row before the bad one
    else:
        assert bad is None
        assert count == len(rows)
        read = read_rfc4180(out.getvalue().decode("cp932"))
        expected = [[neutralised(c).translate(LOOKALIKES) for c in row] for row in rows]
        assert read == [list(header), *expected]
