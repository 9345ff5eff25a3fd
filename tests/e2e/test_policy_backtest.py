"""Shadow routing beside live routing on the demo, and a backtest over its records
(the units: tests/unit/policies/test_policy_backtest.py)."""

from __future__ import annotations

from typing import Any

import pytest

SHADOW_DAY = "2018-01-12"


V2 = "policies/consumer_credit/v2.yaml"


@pytest.mark.e2e
def test_shadow_runs_beside_live_routing_and_backtest_reads_records(
    demo_home: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from hitl_gate.app.cli import main
    from hitl_gate.core.database import audit_connection, query_frame
    from hitl_gate.core.domain import PROJECT_ROOT

    home = ["--home", str(demo_home.home)]
    candidate = str(PROJECT_ROOT / V2)
    live_sql = (
        "SELECT case_id, route, route_reason_code, rules_fired, review_deferred FROM decisions "
        "WHERE domain = 'consumer_credit' AND partition_date = ? ORDER BY case_id"
    )
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        before = query_frame(con, live_sql, [SHADOW_DAY])
    main([*home, "policy", "shadow", "set", candidate, "--by", "ann", "--reason", "trial"])
    try:
        main([*home, "run", "--partition", SHADOW_DAY])
    finally:
        main([*home, "policy", "shadow", "clear", "--by", "ann"])
    with audit_connection(demo_home.audit_db, read_only=True) as con:
        after = query_frame(con, live_sql, [SHADOW_DAY])
        shadow = query_frame(
            con,
            "SELECT case_id, policy_version, live_route, live_policy_version FROM "
            "shadow_decisions WHERE partition_date = ? ORDER BY case_id",
            [SHADOW_DAY],
        )
    assert after.equals(before), "the shadow policy changed a live decision"
    assert shadow["case_id"].to_list() == before["case_id"].to_list()
    assert shadow["live_route"].to_list() == before["route"].to_list()
    assert set(shadow["policy_version"]) == {"consumer_credit-v2"}
    assert set(shadow["live_policy_version"]) == {"consumer_credit-v1"}
    capsys.readouterr()
    main([*home, "policy", "shadow", "report", "--partition", SHADOW_DAY])
    report = capsys.readouterr().out
    assert f"shadow consumer_credit-v2 on {before.height} live cases" in report
    main([*home, "policy", "backtest", candidate, "--from", "2018-01-01", "--to", "2018-01-31"])
    out = capsys.readouterr().out
    assert "backtest of consumer_credit-v2 on" in out and "rows: recorded route" in out
    assert "would be auto-approved" in out and "newly auto-approved by candidate" in out
