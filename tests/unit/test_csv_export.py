"""Result CSV export: exact bytes, quoting, formula neutralisation, encodings, streaming."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from broadcast_adapters.csv_io import CsvCodec
from broadcast_domain.errors import CsvExportError, InvalidInput

HEADER = ["状況", "姓", "宛先", "詳細メッセージ"]


def export(
    rows: list[list[str]], *, encoding: str = "utf-8-sig", header: list[str] = HEADER
) -> tuple[int, bytes]:
    out = io.BytesIO()
    count = CsvCodec().write_rows(rows, out, header=header, encoding=encoding)
    return count, out.getvalue()


def test_small_export_has_exact_bytes() -> None:
    """BOM once, header as given, CRLF ends, minimal quoting, doubled quotes, neutralised cells."""
    rows = [
        ["配信成功", "山田", "taro@example.jp", "250 2.0.0 OK"],
        ["配信エラー", '=HYPERLINK("x")', "a@example.jp", "550 5.1.1, user unknown"],
        ["配信エラー", "+81", "b@example.jp", "line1\nline2"],
        ["予約済み", "-1", "@c", "\tTAB"],
        ["予約済み", "", "d@example.jp", "\rCR"],
    ]
    count, data = export(rows)
    expected = (
        "\ufeff状況,姓,宛先,詳細メッセージ\r\n"
        "配信成功,山田,taro@example.jp,250 2.0.0 OK\r\n"
        '配信エラー,"\'=HYPERLINK(""x"")",a@example.jp,"550 5.1.1, user unknown"\r\n'
        '配信エラー,\'+81,b@example.jp,"line1\nline2"\r\n'
        "予約済み,'-1,'@c,'\tTAB\r\n"
        '予約済み,,d@example.jp,"\'\rCR"\r\n'
    ).encode("utf-8")
    assert count == 5
    assert data == expected


def test_formula_characters_after_the_first_are_left_alone() -> None:
    """Only a leading formula character makes a cell risky."""
    _, data = export([["a=b", "1+1", "x@y", "a-b"]], encoding="utf-8")
    assert data.endswith(b"a=b,1+1,x@y,a-b\r\n")


def test_header_cells_are_not_neutralised() -> None:
    """The header is the caller's own text and is written as given."""
    _, data = export([], header=["=status", "-x"], encoding="utf-8")
    assert data == b"=status,-x\r\n"


def test_utf8_export_has_no_bom_and_an_empty_export_has_only_the_header() -> None:
    """'utf-8' writes no byte order mark; zero rows gives the header and returns 0."""
    count, data = export([], encoding="utf-8")
    assert count == 0
    assert data == "状況,姓,宛先,詳細メッセージ\r\n".encode()


@pytest.mark.parametrize("encoding", ["cp932", "CP932", "shift_jis", "Shift-JIS", "sjis", "ms932"])
def test_cp932_export_decodes_back_to_the_same_text(encoding: str) -> None:
    """CP932 and its Shift_JIS aliases write bytes that CP932 reads back exactly."""
    rows = [
        ["配信成功", "髙橋", "t@example.jp", "①㈱"],
        ["配信エラー", "ｶﾅ", "k@example.jp", "５５０"],
    ]
    count, data = export(rows, encoding=encoding)
    assert count == 2
    assert data.decode("cp932") == (
        "状況,姓,宛先,詳細メッセージ\r\n"
        "配信成功,髙橋,t@example.jp,①㈱\r\n"
        "配信エラー,ｶﾅ,k@example.jp,５５０\r\n"
    )


def test_jis_mapped_lookalikes_are_written_as_their_cp932_characters() -> None:
    """WAVE DASH and MINUS SIGN (JIS mappings) become CP932's ～ and －, never an error."""
    _, data = export(
        [["a", "10〜20", "x@example.jp", "\u2212\u2016\u2014\u00a2\u00a3\u00ac"]], encoding="cp932"
    )
    assert data.decode("cp932").splitlines()[1] == "a,10～20,x@example.jp,－∥―￠￡￢"


def test_a_character_cp932_cannot_hold_names_row_column_and_character() -> None:
    """The error gives the 1-based data row, the column header and the character."""
    rows = [
        ["配信成功", "山田", "a@example.jp", "ok"],
        ["配信成功", "Zoë 😀", "b@example.jp", "ok"],
    ]
    out = io.BytesIO()
    with pytest.raises(CsvExportError) as caught:
        CsvCodec().write_rows(rows, out, header=HEADER, encoding="cp932")
    error = caught.value
    assert (error.row, error.column) == (2, "姓")
    assert "row 2" in str(error)
    assert "'姓'" in str(error)
    assert "U+00EB" in str(error)
    assert (
        out.getvalue().decode("cp932")
        == "状況,姓,宛先,詳細メッセージ\r\n配信成功,山田,a@example.jp,ok\r\n"
    )


def test_an_unencodable_header_is_reported_as_row_zero() -> None:
    """The header is row 0 in an export error."""
    with pytest.raises(CsvExportError) as caught:
        export([], header=["状況", "✓"], encoding="cp932")
    assert (caught.value.row, caught.value.column) == (0, "✓")
    assert "the header" in str(caught.value)


def test_a_lone_surrogate_cannot_be_written_in_utf8_either() -> None:
    """Text that is not valid Unicode is an export error naming its row, not garbage bytes."""
    with pytest.raises(CsvExportError) as caught:
        export([["a", "b", "c", "d"], ["a", "b", "c", "bad\ud800"]], encoding="utf-8-sig")
    assert (caught.value.row, caught.value.column) == (2, "詳細メッセージ")


def numbered_rows(count: int, *, bad_at: int | None = None) -> Iterator[list[str]]:
    for number in range(1, count + 1):
        name = "Zoë" if number == bad_at else "山田"
        yield ["配信成功", name, f"u{number}@example.jp", f"row {number}"]


def test_an_error_deep_in_a_stream_leaves_every_earlier_row_written() -> None:
    """Rows go out in chunks; the rows before a bad one, even in its chunk, are written."""
    out = io.BytesIO()
    with pytest.raises(CsvExportError) as caught:
        CsvCodec().write_rows(
            numbered_rows(5000, bad_at=2500), out, header=HEADER, encoding="cp932"
        )
    assert caught.value.row == 2500
    lines = out.getvalue().decode("cp932").split("\r\n")
    assert lines[-1] == ""
    assert len(lines) == 1 + 2499 + 1
    assert lines[-2] == "配信成功,山田,u2499@example.jp,row 2499"


class RecordingFile(io.BytesIO):
    """A binary file that remembers the size of each write."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sizes.append(len(data))
        return super().write(bytes(data))


def test_rows_are_streamed_in_bounded_writes_while_the_input_is_still_being_read() -> None:
    """Bytes reach the file before the rows run out, and no write grows with the row count."""
    out = RecordingFile()
    seen_when_half_read: list[int] = []

    def rows() -> Iterator[list[str]]:
        for number, row in enumerate(numbered_rows(40_000), start=1):
            if number == 20_000:
                seen_when_half_read.append(len(out.getvalue()))
            yield row

    count = CsvCodec().write_rows(rows(), out, header=HEADER, encoding="utf-8-sig")
    total = len(out.getvalue())
    assert count == 40_000
    assert out.getvalue().count(b"\r\n") == 40_001
    assert seen_when_half_read[0] > total // 3
    assert max(out.sizes) < total // 20


def test_an_unsupported_encoding_is_invalid_input_and_writes_nothing() -> None:
    """Only UTF-8 (with or without BOM) and CP932 are offered."""
    out = io.BytesIO()
    with pytest.raises(InvalidInput) as caught:
        CsvCodec().write_rows([], out, header=HEADER, encoding="latin-1")
    assert caught.value.field == "encoding"
    assert out.getvalue() == b""


def test_a_row_with_the_wrong_number_of_cells_is_invalid_input() -> None:
    """Cells must line up with the header."""
    with pytest.raises(InvalidInput, match="3 cells but the header has 4"):
        export([["a", "b", "c"]])
