"""Recipient CSV import: encodings, headers, per-row problems with line numbers, fatal files."""

from __future__ import annotations

import pytest

from broadcast_adapters.csv_io import CsvCodec
from broadcast_domain.domain.values import Contact
from broadcast_domain.errors import CsvImportError, InvalidInput
from broadcast_domain.ports import CsvProblem, ImportedCsv

JA_FILE = (
    "姓,名,宛先,会社名\r\n"
    "山田,太郎,taro@example.jp,株式会社ACME\r\n"
    "佐藤,花子,hanako@example.co.jp,髙橋商店\r\n"
)
JA_CONTACTS = (
    Contact("taro@example.jp", last_name="山田", first_name="太郎", company="株式会社ACME"),
    Contact("hanako@example.co.jp", last_name="佐藤", first_name="花子", company="髙橋商店"),
)


def parse(data: bytes | str, *, max_rows: int = 1000, max_bytes: int = 1_000_000) -> ImportedCsv:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return CsvCodec().parse_recipients(raw, max_rows=max_rows, max_bytes=max_bytes)


def fatal(data: bytes | str, **limits: int) -> CsvImportError:
    with pytest.raises(CsvImportError) as caught:
        parse(data, **limits)
    return caught.value


# ----------------------------------------------------------------------------- encodings


def test_utf8_file_with_japanese_headers_gives_its_contacts() -> None:
    """A plain UTF-8 file with 姓/名/宛先/会社名 yields every contact, in file order."""
    result = parse(JA_FILE.encode("utf-8"))
    assert result == ImportedCsv(contacts=JA_CONTACTS, problems=(), duplicates=0)


def test_utf8_file_with_bom_gives_the_same_contacts() -> None:
    """A byte order mark is not part of the first header name."""
    assert parse(b"\xef\xbb\xbf" + JA_FILE.encode("utf-8")).contacts == JA_CONTACTS


def test_cp932_file_is_detected_and_decoded() -> None:
    """A Shift_JIS (CP932) file, including the CP932-only 髙 and ①, reads as the same text."""
    text = JA_FILE + "鈴木,①,one@example.jp,㈱テスト\r\n"
    data = text.encode("cp932")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    result = parse(data)
    assert result.contacts == (
        *JA_CONTACTS,
        Contact("one@example.jp", last_name="鈴木", first_name="①", company="㈱テスト"),
    )


def test_bom_file_that_is_not_utf8_is_fatal_with_its_line() -> None:
    """A file claiming UTF-8 by its BOM but holding other bytes is rejected, naming the line."""
    data = "email\r\na@example.jp\r\n山田@example.jp\r\n".encode("cp932")
    error = fatal(b"\xef\xbb\xbf" + data)
    assert error.line == 3
    assert "line 3" in str(error)


# ----------------------------------------------------------------------------- headers


def test_english_headers_in_any_spelling_and_order_are_recognised() -> None:
    """Case, width, surrounding spaces and _/-/space separators do not matter in headers."""
    data = " Company , E-Mail,FIRST_NAME,last name\nACME,alice@example.com,Alice,Smith\n"
    assert parse(data).contacts == (
        Contact("alice@example.com", last_name="Smith", first_name="Alice", company="ACME"),
    )


@pytest.mark.parametrize(
    "address_header",
    ["宛先", "メールアドレス", "ﾒｰﾙｱﾄﾞﾚｽ", "email", "Ｅｍａｉｌ", "e-mail", "mail", "Address"],
)
def test_every_documented_address_header_is_accepted(address_header: str) -> None:
    """Each accepted name for the address column, full-width or half-width, finds it."""
    result = parse(f"{address_header}\r\nx@example.com\r\n")
    assert result.contacts == (Contact("x@example.com"),)


def test_columns_in_another_order_with_unknown_columns_are_mapped_and_listed() -> None:
    """Known columns are found wherever they are; unknown ones are ignored and named."""
    data = "電話番号,会社名,宛先,備考,名,姓\n03-0000,ACME,k@example.jp,memo,健,加藤\n"
    result = parse(data)
    assert result.contacts == (
        Contact("k@example.jp", last_name="加藤", first_name="健", company="ACME"),
    )
    assert result.ignored_columns == ("電話番号", "備考")
    assert result.problems == ()


def test_only_an_address_column_is_required() -> None:
    """Missing name and company columns give empty strings."""
    assert parse("email\nsolo@example.org\n").contacts == (Contact("solo@example.org"),)


# ----------------------------------------------------------------------------- rows


def test_each_bad_row_is_reported_with_its_physical_line_and_good_rows_are_kept() -> None:
    """Line numbers count physical lines, including blank ones and newlines inside quotes."""
    data = (
        "姓,名,宛先,備考\r\n"  # 1
        "山田,太郎,taro@example.jp,\r\n"  # 2
        "\r\n"  # 3 (blank: skipped)
        '佐藤,花子,hanako@example.jp,"複数行の\r\nメモ"\r\n'  # 4-5 (one record, good)
        "鈴木,一郎,,-\r\n"  # 6 empty address
        "田中,二郎,not-an-address,-\r\n"  # 7 invalid address
        "伊藤,三郎,saburo@example.jp\r\n"  # 8 too few fields
        '"渡\n辺",四郎,shiro@example.jp,-\r\n'  # 9-10 control character in a name
        "中村,五郎,goro@example.jp,-,extra\r\n"  # 11 too many fields
        "小林,六郎,rokuro@example.jp,-\r\n"  # 12
    )
    result = parse(data)
    assert [c.address for c in result.contacts] == [
        "taro@example.jp",
        "hanako@example.jp",
        "rokuro@example.jp",
    ]
    assert result.contacts[1].first_name == "花子"
    assert [p.line for p in result.problems] == [6, 7, 8, 9, 11]
    reasons = [p.reason for p in result.problems]
    assert "address" in reasons[0]
    assert "empty" in reasons[0]
    assert "'not-an-address'" in reasons[1]
    assert "@-sign" in reasons[1]
    assert "3 fields" in reasons[2]
    assert "header has 4" in reasons[2]
    assert "'姓'" in reasons[3]
    assert "U+000A" in reasons[3]
    assert "5 fields" in reasons[4]
    assert result.duplicates == 0


@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
def test_line_numbers_hold_for_every_line_ending(newline: str) -> None:
    """CRLF, LF and lone CR files number their lines the same way."""
    lines = [
        "宛先,名,備考",
        "a@example.jp,一,",
        "",
        "bad,二,",
        'c@example.jp,三,"x',
        'y"',
        "bad2,四,",
    ]
    result = parse(newline.join(lines) + newline)
    assert [p.line for p in result.problems] == [4, 7]
    assert [c.address for c in result.contacts] == ["a@example.jp", "c@example.jp"]


def test_duplicates_are_folded_case_insensitively_keeping_the_first() -> None:
    """Each repeat of an address is left out, reported against the first line, and counted."""
    data = (
        "宛先,姓\n"
        "Taro@Example.jp,最初\n"
        "other@example.jp,他\n"
        "taro@example.JP,二番目\n"
        "TARO@EXAMPLE.JP,三番目\n"
    )
    result = parse(data)
    assert result.contacts == (
        Contact("Taro@example.jp", last_name="最初"),
        Contact("other@example.jp", last_name="他"),
    )
    assert result.duplicates == 2
    assert [p.line for p in result.problems] == [4, 5]
    assert all("line 2" in p.reason and "duplicate" in p.reason for p in result.problems)


def test_full_width_addresses_and_padding_are_normalised() -> None:
    """Full-width ASCII in an address is folded, spaces trimmed, the domain lower-cased."""
    data = "宛先,姓\n　ｙａｍａｄａ＠ＥＸＡＭＰＬＥ．ｊｐ　, 山田 \n"
    assert parse(data).contacts == (Contact("yamada@example.jp", last_name="山田"),)


def test_formula_like_cells_are_kept_as_data_on_import() -> None:
    """Import does not alter cells starting with = + - @: that is the export's job."""
    data = 'email,姓,名,company\nf@example.com,=1+1,-x,"@SUM(A1)"\n'
    assert parse(data).contacts == (
        Contact("f@example.com", last_name="=1+1", first_name="-x", company="@SUM(A1)"),
    )


def test_rows_of_empty_cells_are_skipped_like_blank_lines() -> None:
    """A spreadsheet's ',,,' rows are neither contacts nor problems."""
    result = parse("宛先,姓\n,\n a@example.jp ,姓\n , \n")
    assert result.contacts == (Contact("a@example.jp", last_name="姓"),)
    assert result.problems == ()


def test_a_file_whose_every_row_is_bad_is_not_fatal() -> None:
    """The user gets one problem per row and no contacts, to fix the file."""
    result = parse("宛先\nnope\nalso-nope\n")
    assert result.contacts == ()
    assert result.problems == (
        CsvProblem(2, result.problems[0].reason),
        CsvProblem(3, result.problems[1].reason),
    )
    assert "'nope'" in result.problems[0].reason


def test_exactly_max_rows_data_rows_are_accepted() -> None:
    """The row limit is inclusive; blank lines do not count towards it."""
    data = "宛先\n\na@example.jp\n\nb@example.jp\n"
    assert len(parse(data, max_rows=2).contacts) == 2


# ----------------------------------------------------------------------------- fatal files


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\r\n\r\n", b" , \n\n"])
def test_an_empty_file_is_fatal(data: bytes) -> None:
    """No header at all: nothing to import."""
    assert "empty" in str(fatal(data))


def test_a_header_without_data_rows_is_fatal() -> None:
    """A header alone (blank lines after it aside) is an empty recipient list, and says so."""
    error = fatal("姓,名,宛先\r\n\r\n")
    assert error.line == 1
    assert "no data rows" in str(error)


def test_a_missing_address_column_names_the_headers_found_and_those_accepted() -> None:
    """The message lists what the file has and what would have worked."""
    error = fatal("姓,名,電話\n山田,太郎,03\n")
    message = str(error)
    assert error.line == 1
    assert "'姓', '名', '電話'" in message
    assert "宛先" in message
    assert "メールアドレス" in message
    assert "email" in message


def test_a_first_line_that_looks_like_data_gets_a_hint() -> None:
    """A file without a header is told to add one."""
    assert "add a header line" in str(fatal("山田,taro@example.jp\n"))


def test_two_address_columns_are_fatal() -> None:
    """It cannot be guessed which of two address columns is meant."""
    error = fatal("email,宛先\na@example.jp,b@example.jp\n")
    assert "columns 1 ('email') and 2 ('宛先')" in str(error)


def test_nul_bytes_are_fatal_with_their_line() -> None:
    """Binary data is not a CSV file."""
    error = fatal(b"email\na@example.jp\nb\x00c\n")
    assert error.line == 3
    assert "NUL" in str(error)


def test_undecodable_bytes_are_fatal_naming_both_encodings() -> None:
    """Bytes neither UTF-8 nor CP932 can read make the file unreadable."""
    error = fatal(b"email\na@example.jp\n\x81\xff\xfe\n")
    assert error.line == 3
    assert "UTF-8" in str(error)
    assert "CP932" in str(error)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("email\n".encode("utf-16"), "UTF-16"),
        (b"PK\x03\x04\x14\x00\x06\x00", "Excel"),
    ],
)
def test_utf16_files_and_workbooks_are_fatal_and_named(data: bytes, words: str) -> None:
    """Common wrong uploads are recognised and told how to save the file instead."""
    assert words in str(fatal(data))


def test_an_unclosed_quote_is_fatal_with_the_line_where_it_opens() -> None:
    """A quote never closed swallows the rest of the file: nothing is imported."""
    error = fatal('email,姓\na@example.jp,ok\nb@example.jp,"open\nc@example.jp,x\n')
    assert error.line == 3
    assert "never closed" in str(error)


def test_text_after_a_closing_quote_is_fatal_with_its_line() -> None:
    """Malformed quoting means record boundaries cannot be trusted."""
    error = fatal('email,姓\na@example.jp,ok\nb@example.jp,"x"y\n')
    assert error.line == 3


def test_a_field_over_the_csv_field_limit_is_fatal() -> None:
    """A field of 200,000 characters is not a recipient file."""
    error = fatal("email,姓\n" + "a@example.jp," + "x" * 200_000 + "\n")
    assert error.line == 2
    assert "longer than" in str(error)


def test_more_than_max_rows_is_fatal_naming_the_first_line_over() -> None:
    """The limit stops the import before any contact is returned."""
    data = "宛先\n" + "".join(f"u{i}@example.jp\n" for i in range(5))
    error = fatal(data, max_rows=3)
    assert error.line == 5
    assert "more than the limit of 3" in str(error)


def test_more_than_max_bytes_is_fatal() -> None:
    """The size limit is checked on the raw bytes, before any decoding."""
    data = JA_FILE.encode("utf-8")
    assert parse(data, max_bytes=len(data)).contacts == JA_CONTACTS
    assert "more than the limit" in str(fatal(data, max_bytes=len(data) - 1))


def test_invisible_characters_around_a_header_do_not_hide_it() -> None:
    """A doubled byte order mark or a zero-width space does not stop a header matching."""
    data = "\ufeff\ufeffemail\u200b,姓\na@example.jp,山田\n".encode("utf-8-sig")
    assert parse(data).contacts == (Contact("a@example.jp", last_name="山田"),)


def test_text_instead_of_bytes_is_invalid_input() -> None:
    """The codec reads the file's bytes; passing decoded text is a caller error."""
    with pytest.raises(InvalidInput):
        CsvCodec().parse_recipients("email\na@example.jp\n", max_rows=10, max_bytes=100)  # type: ignore[arg-type]


def test_a_damaged_utf8_file_is_fatal_rather_than_read_as_cp932() -> None:
    """UTF-8 Japanese text with one bad byte is refused at that line, not imported garbled."""
    good = "姓,名,宛先\n山田,太郎,a@example.jp\n佐藤,花子,b@example.jp\n".encode()
    error = fatal(good + b"\x82\xa0,x,c@example.jp\n")
    assert error.line == 4
    assert "UTF-8 up to line 4" in str(error)
