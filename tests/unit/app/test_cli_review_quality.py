"""`hitl review quality --from --to` and `hitl review remind` on a small recorded workspace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.database import audit_connection
from hitl_gate.core.home import HitlPaths
from tests.unit.review.supervision_rows import T0, batch, opinion


def test_quality_prints_reviewers_and_pairs(
    hitl_paths: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    with audit_connection(hitl_paths.audit_db) as con:
        batch(con, "b1", "credit_analyst", ["c1", "c2"], "ana")
        opinion(con, "c1", "b1", "ana", "approve", hours=2, suggested="decline")
        opinion(con, "c2", "b1", "ana", "approve", hours=4, suggested="approve")
    main(["--home", str(hitl_paths.home), "--domain", "consumer_credit", "review", "quality",
          "--from", f"{T0:%Y-%m-%d}", "--to", f"{T0:%Y-%m-%d}"])  # fmt: skip
    out = capsys.readouterr().out
    assert "ana" in out and "0.50" in out  # one override out of two suggestions
    assert "no four-eyes pairs in the period" in out


def test_quality_refuses_a_reversed_period(hitl_paths: HitlPaths) -> None:
    with pytest.raises(SystemExit, match="before --from"):
        main(["--home", str(hitl_paths.home), "review", "quality", "--from", "2026-03-05",
              "--to", "2026-03-01"])  # fmt: skip


def test_remind_writes_a_file_once(
    hitl_paths: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    with audit_connection(hitl_paths.audit_db) as con:
        batch(con, "b1", "credit_analyst", ["c1"], "ana", created=now - timedelta(hours=46))
    for _ in range(2):
        main(["--home", str(hitl_paths.home), "--domain", "consumer_credit", "review",
              "remind"])  # fmt: skip
    out = capsys.readouterr().out
    assert out.count("1 reminder(s) sent") == 1 and "0 reminder(s) sent" in out
    assert len(list((hitl_paths.home / "notifications" / "ana").glob("*.txt"))) == 1
