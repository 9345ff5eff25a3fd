"""Policy what-if on the demo's stored cases (the rest: tests/unit/policies/test_policy_ops.py)."""

from __future__ import annotations

import pytest

from hitl_gate.app.cli import main
from hitl_gate.core.home import HitlPaths
from tests.unit.policies.test_policy_ops import V2


def test_cli_whatif_on_stored_demo_cases(
    demo_home: HitlPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--home", str(demo_home.home), "policy", "whatif", str(V2), "--from", "2018-03-01",
          "--to", "2018-03-05"])  # fmt: skip
    out = capsys.readouterr().out
    assert "Route transitions" in out and "qa_review" in out
    matrix = out.split("Route transitions")[1]
    # Raising the decline cut-off moves some declines to review, none to approval.
    decline_row = next(line for line in matrix.splitlines() if line.startswith("│ auto_decline"))
    cells = [c.strip() for c in decline_row.strip("│").split("┆")]
    assert cells[1] == "0"  # auto_decline -> auto_approve
    assert "cases change route" in out
