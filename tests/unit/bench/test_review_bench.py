"""The review benchmark runs end to end at a small size (no timing is asserted)."""

from __future__ import annotations

import sys

import pytest


def test_review_bench_smoke(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from bench import review

    monkeypatch.setattr(sys, "argv", ["bench.review", "--rows", "300", "--repeats", "1"])
    review.main()
    out = capsys.readouterr().out
    assert "rows: 300" in out and "ratio intake / baseline" in out
