"""Protected attributes never reach a reviewer unless their role is explicitly granted them."""

from __future__ import annotations

import polars as pl

from hitl_gate.review.export.masking import apply_masking, hide_protected
from hitl_gate.review.settings import MaskRule

CASES = pl.DataFrame(
    {"case_id": ["a", "b"], "race": ["x", "y"], "zip3": ["100", "101"], "income": [1.0, 2.0]}
)


def test_a_protected_column_a_masking_file_forgot_is_dropped() -> None:
    rules = hide_protected({"income": MaskRule(method="drop")}, ["race", "zip3"])
    masked, dropped = apply_masking(CASES, rules, b"k" * 32, protected=["case_id"], domain="d")
    assert masked.columns == ["case_id"]
    assert sorted(dropped) == ["income", "race", "zip3"]


def test_an_explicit_grant_shows_it() -> None:
    rules = hide_protected({"race": MaskRule(method="show")}, ["race", "zip3"])
    masked, _ = apply_masking(CASES, rules, b"k" * 32, protected=["case_id"], domain="d")
    assert masked.columns == ["case_id", "race", "income"]
