"""The result export's shortcuts decide as the full checks they skip."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broadcast_adapters.csv_io import _FORMULA_LEADS, is_formula_cell

_LEADS = st.sampled_from([*sorted(_FORMULA_LEADS), "a", "1", " ", "'", "姓"])


@given(lead=st.lists(_LEADS, max_size=4).map("".join), rest=st.text(max_size=8))
def test_a_cell_is_checked_for_a_formula_whenever_it_could_be_one(lead: str, rest: str) -> None:
    """Every cell is_formula_cell flags starts with one of the characters the export checks."""
    cell = lead + rest
    if is_formula_cell(cell):
        assert cell[:1] in _FORMULA_LEADS
