"""Careless and hostile CSV: the row limit stops reading where it is reached; a file that
is UTF-8 and then CP932 is refused with where it changes; formula signs written full-width
or behind invisible characters are neutralised like plain ones."""

from __future__ import annotations

import io
import tracemalloc

import hypothesis.strategies as st
import pytest
from hypothesis import given

from broadcast_adapters.csv_io import CsvCodec, is_formula_cell
from broadcast_domain import CsvImportError

CODEC = CsvCodec()
BIG = 50_000_000

# --------------------------------------------------------------------------- the row limit


@given(
    limit=st.integers(min_value=1, max_value=40),
    extra=st.integers(min_value=1, max_value=40),
    blank_every=st.integers(min_value=0, max_value=5),
)
def test_the_row_limit_names_the_first_row_over_it_and_reads_no_further(
    limit: int, extra: int, blank_every: int
) -> None:
    """With more than ``limit`` data rows the error names the line of row limit+1, even when
    what follows it could not be read at all (an unterminated quote, a NUL-free mess): the
    reader stopped there."""
    lines = ["email"]
    for i in range(limit + 1):
        if blank_every and i % blank_every == 0:
            lines.append("")  # blank lines are not rows
        lines.append(f"user{i}@example.com")
    over_line = len(lines)  # the physical line of row limit+1 (1-based)
    lines += ['"never closed'] + [f"x{i}@example.com" for i in range(extra)]
    data = "\r\n".join(lines).encode()
    with pytest.raises(CsvImportError, match="more than the limit") as caught:
        CODEC.parse_recipients(data, max_rows=limit, max_bytes=BIG)
    assert caught.value.line == over_line


@given(limit=st.integers(min_value=1, max_value=30), rows=st.integers(min_value=1, max_value=30))
def test_files_within_the_limit_import_every_row(limit: int, rows: int) -> None:
    """Exactly ``limit`` rows or fewer import; one more is refused."""
    data = ("email\r\n" + "".join(f"u{i}@example.com\r\n" for i in range(rows))).encode()
    if rows <= limit:
        assert len(CODEC.parse_recipients(data, max_rows=limit, max_bytes=BIG).contacts) == rows
    else:
        with pytest.raises(CsvImportError):
            CODEC.parse_recipients(data, max_rows=limit, max_bytes=BIG)


def test_a_million_row_file_is_refused_with_memory_bounded_by_the_file_not_the_rows() -> None:
    """Refusing a 1,000,000-row file at a 1,000-row limit allocates at most a few times the
    file's own size (the decoded text), not a record per row (370 MB before)."""
    data = ("email\n" + "".join(f"user{i}@example.com\n" for i in range(1_000_000))).encode()
    tracemalloc.start()
    try:
        with pytest.raises(CsvImportError, match="more than the limit"):
            CODEC.parse_recipients(data, max_rows=1_000, max_bytes=BIG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(data), (peak, len(data))


# --------------------------------------------------------------------------- mixed encodings

JAPANESE = st.text(alphabet="山田太郎佐藤鈴木高橋花子あいうえおカタカナー", min_size=1, max_size=6)
ASCII_NAME = st.from_regex(r"[a-z]{1,8}", fullmatch=True)


@given(
    utf8_names=st.lists(JAPANESE, min_size=1, max_size=4),
    cp932_names=st.lists(JAPANESE, min_size=1, max_size=4),
    ascii_rows=st.integers(min_value=0, max_value=3),
)
def test_utf8_then_cp932_is_refused_naming_the_line_and_byte_where_it_changes(
    utf8_names: list[str], cp932_names: list[str], ascii_rows: int
) -> None:
    """Rows in UTF-8 (a few Japanese names) followed by rows in CP932 are refused, naming the
    line and the byte offset of the first byte that is not UTF-8; nothing is guessed."""
    head = "姓,宛先\r\n" + "".join(f"x,a{i}@example.com\r\n" for i in range(ascii_rows))
    first = head + "".join(f"{n},u{i}@example.com\r\n" for i, n in enumerate(utf8_names))
    rest = "".join(f"{n},c{i}@example.com\r\n" for i, n in enumerate(cp932_names))
    data = first.encode("utf-8") + rest.encode("cp932")
    change = len(first.encode("utf-8"))
    with pytest.raises(CsvImportError, match="mixes encodings") as caught:
        CODEC.parse_recipients(data, max_rows=1000, max_bytes=BIG)
    line = first.count("\r\n") + 1
    assert caught.value.line == line
    assert f"byte offset {change}" in str(caught.value)


@given(names=st.lists(JAPANESE, min_size=1, max_size=6))
def test_a_whole_cp932_or_utf8_file_still_reads(names: list[str]) -> None:
    """Files in one encoding (CP932 with kana and common kanji, or UTF-8) read as their text."""
    text = "姓,宛先\r\n" + "".join(f"{n},p{i}@example.com\r\n" for i, n in enumerate(names))
    for encoding in ("cp932", "utf-8", "utf-8-sig"):
        imported = CODEC.parse_recipients(text.encode(encoding), max_rows=1000, max_bytes=BIG)
        assert [c.last_name for c in imported.contacts] == names


# --------------------------------------------------------------------------- formula cells

SIGNS = "=+-@\uff1d\uff0b\uff0d\uff20"
INVISIBLE = "\u00a0\u3000\u200b\u200c\u200d\u2060\ufeff"


@given(
    lead=st.text(alphabet=INVISIBLE, max_size=3),
    sign=st.sampled_from(SIGNS),
    rest=st.text(max_size=10),
)
def test_a_sign_behind_invisible_characters_or_full_width_is_neutralised(
    lead: str, sign: str, rest: str
) -> None:
    """Cells like '＝1+1', NBSP+'=', ideographic space+'@', ZWSP+'-', BOM+'=' are written with
    a leading apostrophe, and the rest of the cell is kept as it was."""
    cell = lead + sign + rest
    assert is_formula_cell(cell)
    out = io.BytesIO()
    CODEC.write_rows([[cell]], out, header=["c"], encoding="utf-8-sig")
    written = out.getvalue().decode("utf-8-sig").split("\r\n")[1]
    assert written.lstrip('"').startswith("'" + lead + sign)


@given(st.text(max_size=12))
def test_only_cells_a_spreadsheet_could_run_are_neutralised(cell: str) -> None:
    """A cell is neutralised iff it starts with tab/CR or, after invisible characters, with a
    sign (ASCII or full-width); every other cell is written unchanged."""
    bare = cell.lstrip(INVISIBLE)
    runs = (cell[:1] != "" and cell[0] in "\t\r") or (bare[:1] != "" and bare[0] in SIGNS)
    assert is_formula_cell(cell) is runs
